"""Budgeted throughput: the spend ledger in memory against the shared one in Redis.

Every request of a user with a `costLimit` reserves its worst-case cost before calling and
settles after. With Redis that reservation is one Lua script awaited through `redis.asyncio`
(the event loop keeps serving other requests meanwhile) and the settlement goes out with the
next reservation or the syncer thread, so the goal is Redis ≥ 0.8× the memory store's
throughput. Measured at concurrency 50 through `Models.complete` twice: on `mock_response`
(litellm's CPU path only, the harshest case for any added I/O) and through HTTP to the fake
upstream (in its own process). Redis runs as the README documents for budgets (append-only
file, fsync on every write), on a free local port.

Ratios are medians of per-round ratios over interleaved rounds (see `common`).

    python -m benchmarks.bench_state [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
from typing import Any

from benchmarks.common import (
    KEY,
    MESSAGES,
    Call,
    Load,
    Progress,
    interleaved,
    paired_ratio,
    parser,
    stop_children_on_signals,
    throughput,
    upstream_process,
)

MODEL = "openai/gpt-4.1-mini"
CONCURRENCY = 50
MOCK_BASE = "http://127.0.0.1:9/v1"  # never contacted: mock_response answers before any I/O
WARMUP = 50
"""Requests per variant before measuring: clients, connections, Lua scripts, first-call imports."""
SIZES = (150, 7)
"""(requests per variant per round, rounds) for each of mock and http: ~14 s on 2 quiet cores.
The median of 7 paired rounds of 200 (4 waves of 50) landed where 7 rounds of 1000 did (per-round
ratios spread by +-10 % on a quiet machine), in a third of the time. Rounds of 150 (3 waves) keep
the 7 rounds in the time 5 rounds of 200 took: at load 6, 5 rounds of 200 gave a median of 0.73
(rounds spread 2x, the CPU ratio 1.16); shorter rounds sit closer in time, so a neighbour's burst
moves both of a pair, and it takes 4 bad rounds of 7 to move the median."""
QUICK_SIZES = (150, 3)


def _variants(api_base: str, redis_url: str, mock: bool) -> tuple[dict[str, Call], list[Any]]:
    """The same budgeted user on a memory registry and on a Redis one."""
    from lucky_litellm import Models

    extra: dict[str, Any] = {"mock_response": "Paris."} if mock else {}
    user = {
        "experiments": {"x": {"strategy": "first", "providers": [MODEL]}},
        "defaults": {"costLimit": 1_000_000},
    }
    registries = {}
    for name, url in (("memory", "memory://"), ("redis", redis_url)):
        registries[name] = Models(
            {
                "providers": {"openai": {"apiBase": api_base}},
                "defaults": {"retries": 0},
                "users": {"bench": user},
                "rollout": {"stateUrl": url},
            },
            environ={"OPENAI_API_KEY": KEY},
        )

    def call(models: Any) -> Call:
        async def run() -> Any:
            return await models.complete("user:bench:x", MESSAGES, max_tokens=20, **extra)

        return run

    return {name: call(models) for name, models in registries.items()}, list(registries.values())


async def _throughput(variants: dict[str, Call], requests: int, rounds: int) -> dict[str, Any]:
    for call in variants.values():  # warm-up: clients, connections, scripts, first-call imports
        await throughput(call, WARMUP, 20)
    gc.collect()
    gc.freeze()  # litellm's import-time heap, rescanned by every full collection (see bench_overhead)
    try:
        results: dict[str, list[Load]] = await interleaved(
            variants, lambda call: throughput(call, requests, CONCURRENCY), rounds
        )
    finally:
        gc.unfreeze()
    rps = {name: [load.requests_per_s for load in loads] for name, loads in results.items()}
    cpu = {name: [load.cpu_us_per_request for load in loads] for name, loads in results.items()}
    return {
        "requests_per_s": {name: round(statistics.median(v), 1) for name, v in rps.items()},
        "ratio": round(paired_ratio(rps["redis"], rps["memory"]), 3),
        # this process's CPU time per request (syncer thread included), the cross-check that does
        # not count time the machine gave to other processes (Redis itself among them)
        "cpu_us_per_request": {name: round(statistics.median(v)) for name, v in cpu.items()},
        "cpu_ratio": round(paired_ratio(cpu["memory"], cpu["redis"]), 3),
        "rounds_rps": {name: [round(x) for x in v] for name, v in rps.items()},
    }


async def _run(quick: bool) -> dict[str, Any]:
    from benchmarks.common import quiet_litellm
    from lucky_litellm.testing.redis_server import RedisServer

    quiet_litellm()
    requests, rounds = QUICK_SIZES if quick else SIZES
    out: dict[str, Any] = {"concurrency": CONCURRENCY, "requests": requests, "rounds": rounds}
    step = Progress("state")
    with RedisServer() as server:
        for kind in ("mock", "http"):
            if kind == "mock":
                variants, registries = _variants(MOCK_BASE, server.url, mock=True)
                out[kind] = await _throughput(variants, requests, rounds)
            else:
                with upstream_process() as base_url:
                    variants, registries = _variants(base_url, server.url, mock=False)
                    out[kind] = await _throughput(variants, requests, rounds)
            for models in registries:
                models.state.close()
            step(f"{kind}: Redis / memory {out[kind]['ratio']:.2f}")
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; see the module docstring for what is measured."""
    return asyncio.run(_run(quick))


def main(argv: list[str]) -> int:
    args = parser("benchmarks.bench_state", __doc__).parse_args(argv)
    with stop_children_on_signals():
        print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
