"""Tail latency with hedging: `first` vs `race` vs hedged race on a heavy-tailed upstream.

Two models, each answering in 20 ms except for 5 % of its calls, which take 2 s. Which calls are
slow is fixed per model by call index (one in each block of 20, at a seeded position:
`benchmarks.upstream.tail_latency`), and the index restarts for each strategy, so every strategy
and every run meets the same slow calls.
The upstream runs in its own process and counts the calls it receives: "extra requests" is
upstream calls per request minus one, hedges that were cancelled
after reaching the upstream included.

`hedgeAfter` is the p95 of the *fast path* of `first` measured under the same load (the overall
p95 is the 2 s tail itself, where a hedge would come too late to help): the hedge fires only
when the primary is slower than 95 % of its normal answers.

Requests come from a fixed number of concurrent callers (closed loop). The client's own CPU cost
per litellm call (several ms on this machine) makes queueing part of every figure, which is why
the fast-path p50 sits above the upstream's 20 ms; all three strategies run under the same load.

    python -m benchmarks.bench_hedging [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from benchmarks.common import (
    KEY,
    MESSAGES,
    Progress,
    ScriptedUpstream,
    parser,
    percentile,
    quiet_litellm,
    scripted_upstream,
    stop_children_on_signals,
)

FAST_MS, SLOW_MS, SLOW_SHARE = 20.0, 2000.0, 0.05
MODELS = ("gpt-4.1-mini", "gpt-4.1-nano")
PLAIN = "gpt-4o-mini"
"""Always fast: the warm-up's model (a warm-up on a tailed one waits out its 2 s calls)."""
CONCURRENCY = 8
REQUESTS = 400
"""Per strategy: 20 slow calls of `first`, so its p99 (the 4th slowest) is the tail itself, and
~40 hedges. 600 took half as long again, for p99s within a few ms of these."""


async def _measure(upstream: ScriptedUpstream, strategy: dict[str, Any], requests: int) -> dict[str, Any]:
    from lucky_litellm import Models

    models = Models(
        {"providers": {"openai": {"apiBase": upstream.base_url}}, "defaults": {"retries": 0}},
        environ={"OPENAI_API_KEY": KEY},
    )
    models.load_user_config("bench", {"experiments": {"x": strategy}})
    times: list[float] = []
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await models.complete("user:bench:x", MESSAGES)
            times.append((time.perf_counter() - started) * 1000)

    before = upstream.reset()  # every strategy meets the same slow calls
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    await asyncio.sleep(0.05)  # cancelled losers' requests reach the upstream's counters
    after = upstream.counts()
    calls = sum(after[m] - before[m] for m in after)
    fast = [t for t in times if t < SLOW_MS / 2] or [0.0]
    return {
        "requests": requests,
        "p50_ms": round(percentile(times, 0.5), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "p99_ms": round(percentile(times, 0.99), 1),
        "p999_ms": round(percentile(times, 0.999), 1),
        "max_ms": round(max(times), 1),
        "upstream_calls": calls,
        "extra_requests": round(calls / requests - 1, 3),
        "fast_path_p95_ms": round(percentile(fast, 0.95), 1),
    }


async def _run(quick: bool) -> dict[str, Any]:
    quiet_litellm()
    step = Progress("hedging")
    requests = 200 if quick else REQUESTS
    a, b = (f"openai/{model}" for model in MODELS)
    script: dict[str, Any] = {
        model: {"fast_ms": FAST_MS, "slow_ms": SLOW_MS, "share": SLOW_SHARE, "seed": seed}
        for seed, model in enumerate(MODELS)
    }
    script[PLAIN] = {"fast_ms": FAST_MS}
    with scripted_upstream(script) as upstream:
        # warm-up: litellm's clients, caches, connections (the same provider and api base)
        await _measure(upstream, {"strategy": "first", "providers": [f"openai/{PLAIN}"]}, 40)
        first = {"strategy": "first", "providers": [a]}
        result: dict[str, Any] = {"first": await _measure(upstream, first, requests)}
        hedge_after = result["first"]["fast_path_p95_ms"]
        step(f"first: p99 {result['first']['p99_ms']} ms; hedgeAfter {hedge_after} ms")
        race = {"strategy": "race", "providers": [a, b]}
        result["race"] = await _measure(upstream, race, requests)
        step(f"race: p99 {result['race']['p99_ms']} ms")
        result["hedged"] = await _measure(upstream, {**race, "hedgeAfter": hedge_after}, requests)
        step(f"hedged race: p99 {result['hedged']['p99_ms']} ms")
    result.update(
        concurrency=CONCURRENCY,
        upstream={"fast_ms": FAST_MS, "slow_ms": SLOW_MS, "slow_share": SLOW_SHARE},
        hedge_after_ms=hedge_after,
        p99_cut_hedged=round(result["first"]["p99_ms"] / result["hedged"]["p99_ms"], 1),
    )
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; see the module docstring for what is measured."""
    return asyncio.run(_run(quick))


def main(argv: list[str]) -> int:
    args = parser("benchmarks.bench_hedging", __doc__).parse_args(argv)
    with stop_children_on_signals():
        print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
