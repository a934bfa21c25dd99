"""The fake upstream with a heavy tail, in its own process: `python -m benchmarks.tail_upstream`.

Every model answers in FAST ms, except a SHARE of calls (a seeded pattern per model) taking SLOW
ms. Prints `READY <base_url>` and serves until terminated.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable

from benchmarks.common import parser
from lucky_litellm.testing import Behavior, FakeUpstream


def latency_fn(seed: int, fast_ms: float, slow_ms: float, share: float) -> Callable[[int], float]:
    rng = random.Random(seed)
    pattern = [slow_ms if rng.random() < share else fast_ms for _ in range(100_000)]
    return lambda index: pattern[index % len(pattern)]


def main(argv: list[str] | None = None) -> None:
    cli = parser("benchmarks.tail_upstream", __doc__, quick=False)
    cli.add_argument("fast_ms", type=float, help="latency of most calls, ms")
    cli.add_argument("slow_ms", type=float, help="latency of the slow share, ms")
    cli.add_argument("share", type=float, help="share of slow calls (0..1)")
    cli.add_argument("models", nargs="*", help="models to serve")
    args = cli.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeUpstream(max_recorded_calls=10) as upstream:
        for seed, model in enumerate(args.models):
            upstream.script(
                model,
                Behavior(
                    content="Paris", latency_fn=latency_fn(seed, args.fast_ms, args.slow_ms, args.share)
                ),
            )
        print(f"READY {upstream.base_url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
