"""The fake upstream in its own process, scripted per model, with call counts on request.

    python -m benchmarks.upstream '{"gpt-4.1-mini": {"fast_ms": 20, "slow_ms": 2000, "share": 0.05}}'

Prints `READY <base_url>`, then answers one line on stdout for each line read on stdin: `counts`
gives the upstream's call count per model as JSON; `reset` restarts every model's call index, so
the next run sees the same latency pattern from its start (and sets the latency scale back to 1);
`scale <factor>` multiplies every latency from now on (an upstream that becomes slower for
everyone). Each command answers with the counts. Closing stdin stops the server, so a crashed
benchmark never leaves it behind. Per model (all keys optional):

* `fast_ms`, `slow_ms`, `share`, `seed`: latency `slow_ms` for a `share` of calls, `fast_ms` for the
  rest; which calls are slow is fixed by call index (one in each block of `1 / share`, at a position
  drawn from `random.Random(seed)`, see `tail_latency`), so every run and every strategy sees the
  same pattern;
* `by_request`: look that pattern up by the request's number instead of the call index: the number
  after the last `#` of the request's last message (`request_number`), so request `n` is slow for
  every setting that sends it, whether it reaches this model first or as its k-th hedge;
* `status`: answer every call with this HTTP status (e.g. 503 for a deployment that is down);
* `hang`: never answer (a deployment that accepts connections and then hangs).

A separate process, because the fake upstream in a thread of the benchmark would compete with the
client for the GIL and one of the two cores, and that would be measured as client overhead.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.common import parser
from lucky_litellm.testing import Behavior, FakeUpstream

PATTERN_LENGTH = 100_000


def tail_latency(fast_ms: float, slow_ms: float, share: float, seed: int) -> Callable[[int], float]:
    """Call index -> latency in ms: `slow_ms` for a `share` of the calls, else `fast_ms`.

    Stratified: one call in each block of `1 / share` calls (20 for 5 %) is slow, at a seeded
    position within its block. A hedge model sees only a few dozen calls in a run, and with
    independent draws those can hold 4 slow calls in 21 (seed 1 did) instead of about 1: every
    hedged setting's p99 was then the 2 s tail, whatever its delay. Blocks keep any stretch of
    calls close to its share, so the figures measure the strategy, not the seed."""
    rng = random.Random(seed)
    block = max(1, round(1 / share))
    pattern: list[float] = []
    while len(pattern) < PATTERN_LENGTH:
        slow = rng.randrange(block)
        pattern.extend(slow_ms if position == slow else fast_ms for position in range(block))
    return lambda index: pattern[index % len(pattern)]


def request_number(body: Mapping[str, Any]) -> int | None:
    """`n` of a request whose last message ends with `#n` (see `by_request`), else None."""
    try:
        content = body["messages"][-1]["content"]
        return int(content.rsplit("#", 1)[1])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


SCALE = [1.0]
"""The current latency factor (`scale <factor>`), read by every model's latency function."""


def behavior(spec: Mapping[str, Any]) -> Behavior:
    fast = float(spec.get("fast_ms", 0.0))
    base: Callable[[int], float] = lambda index: fast  # noqa: E731
    if spec.get("share"):
        base = tail_latency(fast, float(spec["slow_ms"]), float(spec["share"]), int(spec.get("seed", 0)))
    by_request = None
    if spec.get("by_request"):

        def by_request(index: int, body: Mapping[str, Any]) -> float:
            number = request_number(body)
            return base(index if number is None else number) * SCALE[0]

    return Behavior(
        content="Paris.",
        latency_fn=lambda index: base(index) * SCALE[0],
        latency_of_request=by_request,
        status=int(spec.get("status", 200)),
        hang=bool(spec.get("hang", False)),
    )


def main(argv: list[str] | None = None) -> None:
    cli = parser("benchmarks.upstream", __doc__, quick=False)
    cli.add_argument("models", nargs="?", default="{}", help="JSON: model -> behaviour spec")
    models: dict[str, Any] = json.loads(cli.parse_args(argv).models)
    with FakeUpstream(max_recorded_calls=10) as upstream:
        for model, spec in models.items():
            upstream.script(model, behavior(spec))
        print(f"READY {upstream.base_url}", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                SCALE[0] = 1.0
                for model, spec in models.items():
                    upstream.script(model, behavior(spec))
            elif command.startswith("scale "):
                SCALE[0] = float(command.split()[1])
            counts = {model: upstream.call_count(model) for model in models}
            print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
