"""What the guarded rollout costs per rollout call, side by side in one process.

Both rollout paths answer ``openai/gpt-4.1-mini`` through litellm's `mock_response`, telemetry on,
in interleaved rounds at concurrency 50:

* ``*_before``: the path as it ran before the guard existed (the same calls, no guard check);
* ``*_no_guard``: `Rollout.registry_complete` / `legacy_complete` with no guard running: the
  request path checks one attribute (target: within 2 % of before, i.e. noise);
* ``*_guarded``: the same with a guard running (a memory store: each call is queued and counted,
  the decision runs at most every 0.25 s; reported).

Ratios are throughput ratios from this process's CPU time per call, the median of per-round ratios
(see `common`).

    python -m benchmarks.bench_guard [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
from typing import Any

from benchmarks.bench_overhead import MOCK, PRIMARY, build_models, telemetry_on
from benchmarks.common import (
    Call,
    interleaved,
    paired_ratio,
    parser,
    quiet_litellm,
    stop_children_on_signals,
    throughput,
)

NO_GUARD_TARGET = 0.98

WARMUP = 30
SIZES = (50, 6)
"""(calls per variant per round, rounds) at concurrency 50."""
QUICK_SIZES = (20, 2)
CONCURRENCY = 50


def variants() -> dict[str, Call]:
    from lucky_litellm.guard.control import start_guard
    from lucky_litellm.rollout import Rollout

    plain = Rollout(build_models(telemetry_on()))
    guarded = Rollout(build_models(telemetry_on()))
    start_guard({"stages": [50, 100], "minCalls": 100_000_000}, models=guarded.models)
    models = plain.models
    messages = [{"role": "user", "content": "hi"}]

    async def registry_before() -> Any:
        plan = models.resolve(models.registry_spec(PRIMARY), user_id=None)
        return await models.run_plan(plan, messages, rollout_path="registry", **MOCK)

    async def registry_no_guard() -> Any:
        return await plain.registry_complete(PRIMARY, messages, **MOCK)

    async def registry_guarded() -> Any:
        return await guarded.registry_complete(PRIMARY, messages, **MOCK)

    async def legacy_before() -> Any:
        return await plain._legacy_call(PRIMARY, messages, None, None, dict(MOCK))

    async def legacy_no_guard() -> Any:
        return await plain.legacy_complete(PRIMARY, messages, **MOCK)

    async def legacy_guarded() -> Any:
        return await guarded.legacy_complete(PRIMARY, messages, **MOCK)

    return {
        "registry_before": registry_before,
        "registry_no_guard": registry_no_guard,
        "registry_guarded": registry_guarded,
        "legacy_before": legacy_before,
        "legacy_no_guard": legacy_no_guard,
        "legacy_guarded": legacy_guarded,
    }


async def _run(quick: bool) -> dict[str, Any]:
    quiet_litellm()
    calls = variants()
    for call in calls.values():
        await throughput(call, WARMUP, 20)
    n, rounds = QUICK_SIZES if quick else SIZES
    gc.collect()
    gc.freeze()  # litellm's import-time heap out of the collector's sight (see bench_overhead)
    try:

        async def measure(call: Call) -> Any:
            return await throughput(call, n, CONCURRENCY)

        results = await interleaved(calls, measure, rounds)
    finally:
        gc.unfreeze()
    cpu = {name: [load.cpu_us_per_request for load in loads] for name, loads in results.items()}
    out: dict[str, Any] = {
        "calls_per_round": n,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "cpu_us_per_call": {name: round(statistics.median(v), 1) for name, v in cpu.items()},
    }
    for path in ("registry", "legacy"):
        before = cpu[f"{path}_before"]
        out[f"{path}: no_guard/before"] = round(paired_ratio(before, cpu[f"{path}_no_guard"]), 3)
        out[f"{path}: guarded/before"] = round(paired_ratio(before, cpu[f"{path}_guarded"]), 3)
    return out


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The `make bench` table rows."""
    out: list[tuple[str, str, str, bool | None]] = []
    for path in ("registry", "legacy"):
        ratio = result[f"{path}: no_guard/before"]
        met = ratio >= NO_GUARD_TARGET
        out.append((f"{path} path, no guard running / before the guard", f"{ratio:.3f}", ">= 0.98", met))
        guarded = result[f"{path}: guarded/before"]
        out.append((f"  {path} path, guard recording / before", f"{guarded:.3f}", "report", None))
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark (`make bench` row); see the module docstring for what is measured."""
    return asyncio.run(_run(quick))


def main(argv: list[str]) -> int:
    args = parser("benchmarks.bench_guard", __doc__).parse_args(argv)
    with stop_children_on_signals():
        print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
