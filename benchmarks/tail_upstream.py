"""The fake upstream with a heavy tail, in its own process: `python -m benchmarks.tail_upstream`.

Every model answers in FAST ms, except a SHARE of calls (a seeded pattern per model) taking SLOW
ms. Prints `READY <base_url>` and serves until terminated.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Callable

from lucky_litellm.testing import Behavior, FakeUpstream


def latency_fn(seed: int, fast_ms: float, slow_ms: float, share: float) -> Callable[[int], float]:
    rng = random.Random(seed)
    pattern = [slow_ms if rng.random() < share else fast_ms for _ in range(100_000)]
    return lambda index: pattern[index % len(pattern)]


def main() -> None:
    fast_ms, slow_ms, share = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    models = sys.argv[4:]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeUpstream(max_recorded_calls=10) as upstream:
        for seed, model in enumerate(models):
            upstream.script(
                model, Behavior(content="Paris", latency_fn=latency_fn(seed, fast_ms, slow_ms, share))
            )
        print(f"READY {upstream.base_url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
