"""`hedgeAfter: auto` against a sweep of fixed `hedgeAfter`s, on a heavy tail, then on a slowdown.

Two models on the fake upstream (its own process, over HTTP), each answering in 60 ms except for
5 % of its calls, which take 2 s (a seeded pattern by call index, restarted for every run, so every
setting meets the same slow calls). A race of the two, first model first, from a fixed number of
concurrent callers.

* **Sweep.** The fixed delays tried are the p50/p80/p90/p95/p99 of the fast path (a `first` call to
  a model without a tail, under the same load): what someone tuning `hedgeAfter` by hand would try.
  The *best fixed* setting is the one with the lowest p99 among those within the 10 % extra-request
  budget (a fixed delay with more extra requests is not a fair comparison: `race` without any
  delay has the lowest p99 of all, at 100 % extra requests). `auto` (p95 of the model's own
  answers, default budget) runs with the same requests after a warm-up that fills its window.
* **Slowdown.** Halfway through a run every latency of the upstream doubles. The best fixed
  setting then hedges nearly every call of the second half; `auto` follows the model's latency,
  and its budget caps the hedges while its window catches up.

"Extra requests" are the upstream's own call counts per request minus one (hedges that were
cancelled after reaching the upstream included).

    python -m benchmarks.bench_adaptive_hedging [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from benchmarks.common import KEY, MESSAGES, ScriptedUpstream, percentile, quiet_litellm, scripted_upstream

FAST_MS, SLOW_MS, SLOW_SHARE = 60.0, 2000.0, 0.05
MODELS = ("gpt-4.1-mini", "gpt-4.1-nano")
PLAIN = "gpt-4o-mini"
"""A model without a tail: its `first` latencies are the fast path the sweep is built from."""
CONCURRENCY = 16
BUDGET = 0.10
SWEEP = (0.8, 0.9, 0.95, 0.99)
HEALTH = {"hedging": {"floor": 1, "initial": 100}}
"""`floor: 1`: the default 50 ms floor is meant for LLMs, not for a fake upstream answering in 60 ms;
`initial: 100`: the warm-up fills the window anyway."""


def _models(upstream: ScriptedUpstream) -> Any:
    from lucky_litellm import Models

    config = {"providers": {"openai": {"apiBase": upstream.base_url}}, "defaults": {"retries": 0}}
    return Models({**config, "health": HEALTH}, environ={"OPENAI_API_KEY": KEY})


async def _load(
    models: Any, spec: str, requests: int, upstream: ScriptedUpstream | None = None, slow_down_at: int = 0
) -> tuple[list[float], dict[str, int] | None]:
    """`requests` calls from CONCURRENCY callers; latencies in ms. With `slow_down_at`, the
    upstream's latencies double once that many requests have started (its counts then returned)."""
    from lucky_litellm import routing_of

    times: list[float] = []
    started = 0
    at_switch: dict[str, int] | None = None
    hedges = [0, 0, 0]  # fired, refused, fired by requests started after the slowdown
    delays: list[float] = []

    async def caller() -> None:
        nonlocal started, at_switch
        while started < requests:
            started += 1
            late = bool(slow_down_at) and started >= slow_down_at
            if upstream is not None and started == slow_down_at:
                at_switch = upstream.scale(2.0)
            begin = time.perf_counter()
            routing = routing_of(await models.complete(spec, MESSAGES))
            times.append((time.perf_counter() - begin) * 1000)
            hedges[0] += routing.hedges
            hedges[1] += routing.hedges_refused
            hedges[2] += routing.hedges if late else 0
            if routing.hedge_delay_ms is not None:
                delays.append(routing.hedge_delay_ms)

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    _HEDGES[:] = hedges
    _DELAYS[:] = delays
    return times, at_switch


_HEDGES = [0, 0, 0]
"""Hedges fired and refused by the budget in the last `_load` (from the routing records)."""
_DELAYS: list[float] = []
"""The hedge delays the requests of the last `_load` waited (`routing.hedge_delay_ms`)."""


def _calls(counts: dict[str, int]) -> int:
    return sum(counts[m] for m in MODELS)


async def _measure(
    upstream: ScriptedUpstream, hedge_after: float | str, requests: int, *, slow_down: bool = False
) -> dict[str, Any]:
    models = _models(upstream)
    race = {"strategy": "race", "providers": [f"openai/{m}" for m in MODELS], "hedgeAfter": hedge_after}
    models.load_user_config("bench", {"experiments": {"x": race}})
    await _load(models, "user:bench:x", 40)  # warm-up: connections, and `auto`'s latency window
    before = upstream.reset()  # every setting meets the same slow calls, at the normal latency
    half = requests // 2
    times, at_switch = await _load(models, "user:bench:x", requests, upstream, half if slow_down else 0)
    await asyncio.sleep(0.05)  # cancelled losers' requests reach the upstream's counters
    after = upstream.counts()
    calls = _calls(after) - _calls(before)
    result: dict[str, Any] = {
        "hedge_after": hedge_after,
        "requests": requests,
        "p50_ms": round(percentile(times, 0.5), 1),
        "p99_ms": round(percentile(times, 0.99), 1),
        "extra_requests": round(calls / requests - 1, 3),
        "hedges_fired": _HEDGES[0],
        "hedges_refused": _HEDGES[1],
        "delay_p50_ms": round(percentile(_DELAYS, 0.5), 1) if _DELAYS else None,
    }
    if at_switch is not None:  # per half: hedges fired by the requests started in it
        late = requests - half + 1
        result["extra_first_half"] = round((_HEDGES[0] - _HEDGES[2]) / (requests - late), 3)
        result["extra_second_half"] = round(_HEDGES[2] / late, 3)
    return result


async def _fast_path(upstream: ScriptedUpstream, requests: int) -> list[float]:
    models = _models(upstream)
    await _load(models, f"openai/{PLAIN}", 40)
    times, _ = await _load(models, f"openai/{PLAIN}", requests)
    return times


async def _run(quick: bool) -> dict[str, Any]:
    quiet_litellm()
    requests = 240 if quick else 400
    script: dict[str, Any] = {
        model: {"fast_ms": FAST_MS, "slow_ms": SLOW_MS, "share": SLOW_SHARE, "seed": seed}
        for seed, model in enumerate(MODELS)
    }
    script[PLAIN] = {"fast_ms": FAST_MS}
    started = time.perf_counter()
    with scripted_upstream(script) as upstream:
        fast = await _fast_path(upstream, requests // 2)
        delays = sorted({round(percentile(fast, q), 1) for q in SWEEP})
        sweep = [await _measure(upstream, delay, requests) for delay in delays]
        auto = await _measure(upstream, "auto", requests)
        within = [run for run in sweep if run["extra_requests"] <= BUDGET] or sweep
        best = min(within, key=lambda run: run["p99_ms"])
        slow_auto = await _measure(upstream, "auto", requests, slow_down=True)
        slow_fixed = await _measure(upstream, best["hedge_after"], requests, slow_down=True)
    return {
        "concurrency": CONCURRENCY,
        "upstream": {"fast_ms": FAST_MS, "slow_ms": SLOW_MS, "slow_share": SLOW_SHARE},
        "fast_path_ms": {f"p{q * 100:g}": d for q, d in zip(SWEEP, delays, strict=False)},
        "sweep": sweep,
        "auto": auto,
        "best_fixed": best,
        "p99_auto_over_best_fixed": round(auto["p99_ms"] / best["p99_ms"], 2),
        "slowdown": {"auto": slow_auto, "fixed": slow_fixed},
        "seconds": round(time.perf_counter() - started, 1),
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, met) rows for `benchmarks.run`'s table."""
    auto, best = result["auto"], result["best_fixed"]
    slow_auto, slow_fixed = result["slowdown"]["auto"], result["slowdown"]["fixed"]
    ratio = result["p99_auto_over_best_fixed"]
    out: list[tuple[str, str, str, bool | None]] = [
        (
            "p99 hedgeAfter auto / best fixed (sweep)",
            f"{ratio:.2f}x ({auto['p99_ms']} vs {best['p99_ms']} ms at {best['hedge_after']} ms)",
            "<= 1.2x",
            ratio <= 1.2,
        ),
        ("extra requests, auto", f"{auto['extra_requests']:.1%}", "<= 10%", auto["extra_requests"] <= BUDGET),
        (
            "latency x2 halfway: extra requests, auto",
            f"{slow_auto['extra_requests']:.1%} ({slow_auto['extra_first_half']:.0%} -> "
            f"{slow_auto['extra_second_half']:.0%})",
            "<= 10%",
            slow_auto["extra_requests"] <= BUDGET,
        ),
        (
            "latency x2 halfway: extra requests, fixed",
            f"{slow_fixed['extra_requests']:.1%} ({slow_fixed['extra_first_half']:.0%} -> "
            f"{slow_fixed['extra_second_half']:.0%})",
            "rises",
            slow_fixed["extra_second_half"] > slow_fixed["extra_first_half"],
        ),
    ]
    for run in result["sweep"]:
        out.append(
            (
                f"  fixed {run['hedge_after']} ms: p50 / p99 ms, extra",
                f"{run['p50_ms']} / {run['p99_ms']}, {run['extra_requests']:.0%}",
                "report",
                None,
            )
        )
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; see the module docstring for what is measured."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    outcome = run("--quick" in sys.argv)
    for measure, value, target, _met in rows(outcome):
        print(f"{measure:<45} {value:<40} {target}")
    print(json.dumps(outcome, indent=2))
