"""Tail latency with hedging: `first` vs `race` vs hedged race on a heavy-tailed upstream.

Both models answer in 20 ms, except 5 % of calls (chosen by a seeded RNG per call index, so every
run sees the same pattern) that take 2 s; the upstream runs in its own process. `hedgeAfter` is
set near the p95 of the fast path as measured under the same load. Extra requests = model calls
beyond one per request. Concurrency is kept low (4) so that litellm's own CPU cost per call
(a few ms) does not turn into queueing that every strategy would pay alike.

    python -m benchmarks.bench_hedging [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from benchmarks.common import KEY, MESSAGES, percentile, quiet_litellm, upstream_process
from lucky_litellm import routing_of

FAST_MS, SLOW_MS, SLOW_SHARE = 20.0, 2000.0, 0.05
MODELS = ("gpt-4.1-mini", "gpt-4.1-nano")


async def _measure(
    api_base: str, strategy: dict[str, Any], requests: int, concurrency: int
) -> dict[str, Any]:
    from lucky_litellm import Models

    models = Models(
        {"providers": {"openai": {"apiBase": api_base}}, "defaults": {"retries": 0}},
        environ={"OPENAI_API_KEY": KEY},
    )
    models.load_user_config("bench", {"experiments": {"x": strategy}})
    semaphore = asyncio.Semaphore(concurrency)
    times: list[float] = []

    async def one() -> None:
        async with semaphore:
            started = time.perf_counter()
            response = await models.complete("user:bench:x", MESSAGES)
            times.append((time.perf_counter() - started) * 1000)
            calls.append(sum(a.outcome != "skipped" for a in routing_of(response).attempts))

    calls: list[int] = []
    await asyncio.gather(*(one() for _ in range(requests)))
    return {
        "p50_ms": round(percentile(times, 0.5), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "p99_ms": round(percentile(times, 0.99), 1),
        "p999_ms": round(percentile(times, 0.999), 1),
        "extra_requests": round(sum(calls) / requests - 1, 3),
        "fast_path_p95_ms": round(percentile([t for t in times if t < SLOW_MS / 2] or [0.0], 0.95), 1),
    }


async def _run(quick: bool) -> dict[str, Any]:
    quiet_litellm()
    requests, concurrency = (300, 4) if quick else (800, 4)
    a, b = (f"openai/{model}" for model in MODELS)
    args = [str(FAST_MS), str(SLOW_MS), str(SLOW_SHARE), *MODELS]
    with upstream_process(*args, module="benchmarks.tail_upstream") as api_base:
        first = {"strategy": "first", "providers": [a]}
        await _measure(api_base, first, 50, concurrency)  # warm-up: litellm's clients and caches
        result: dict[str, Any] = {"first": await _measure(api_base, first, requests, concurrency)}
        # "about p95 of the normal path": the fast 95 % under this very load; the overall p95 is
        # the 2 s tail itself, where a hedge would come too late to help
        hedge_after = result["first"]["fast_path_p95_ms"]
        result["race"] = await _measure(
            api_base, {"strategy": "race", "providers": [a, b]}, requests, concurrency
        )
        hedged = {"strategy": "race", "providers": [a, b], "hedgeAfter": round(hedge_after, 1)}
        result["hedged"] = await _measure(api_base, hedged, requests, concurrency)
    result["hedge_after_ms"] = round(hedge_after, 1)
    result["p99_cut_hedged"] = round(result["first"]["p99_ms"] / result["hedged"]["p99_ms"], 1)
    return result


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
