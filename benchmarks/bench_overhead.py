"""What lucky_litellm costs on top of litellm, measured as users run it: no `gc.freeze()`.

Every variant answers through litellm's own `mock_response` (the whole of litellm's CPU path,
no network: a micro-benchmark of the layers, not of a provider), and all of them run in one
process, in interleaved rounds (ABC CBA ...), at concurrency 1 and 50:

* ``first``: ``complete("openai/gpt-4.1-mini")`` against raw ``acompletion`` and ``Router``;
* ``first_notel``: the same without an OpenTelemetry SDK installed;
* ``fallback``: a 2-model ``fallback`` whose first model answers, against a ``Router`` with
  ``fallbacks``;
* ``race``: a 2-model ``race`` (two litellm calls, one answer), against
  ``Router.abatch_completion_fastest_response``;
* ``budget``: ``first`` for a user with a ``costLimit`` on the memory store (estimate, reserve,
  settle, alerts).

Ours runs with telemetry on (OpenTelemetry SDK tracer and meter providers, spans batched into an
exporter that drops them, metrics aggregated): the configuration the cost tracing is for.
`first_notel` shows the same call for a user who installed no SDK.

Reported per concurrency: requests/s and CPU µs per call (process time / calls, all threads:
litellm runs its sync core in a worker thread) for each variant; ratios to raw as the median of
the per-round ratios. `race` makes two litellm calls to answer one request, so its ratio is to
half of raw. "CPU added" is what a variant's process time per call exceeds that of the raw
litellm calls it makes (one; two for a race).

The garbage collector's passes per generation during each variant's rounds, and their time, are
reported next to them (`gc.callbacks`): at c=50 most of what separates ours from raw is how
often the collector runs over litellm's objects (README, Performance).

Then `benchmarks.profile_breakdown` itemises what those added microseconds are spent on.

    python -m benchmarks.bench_overhead [--quick] [--freeze] [--no-breakdown] [--markdown]

`--markdown` also prints the tables of the README's Performance section.

`--freeze` repeats the matrix after `gc.freeze()` and reports both, to show how much of the gap
is garbage collection rescanning litellm's import-time heap (which no user's process freezes).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
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
    quiet_litellm,
    stop_children_on_signals,
    throughput,
)

PRIMARY, BACKUP = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"
API_BASE = "http://127.0.0.1:9/v1"  # never contacted: mock_response answers before any I/O
MOCK_TEXT = "Paris."
MOCK: dict[str, Any] = {"mock_response": MOCK_TEXT}
CONCURRENCIES = (1, 50)
COST_LIMIT_USD = 1_000_000.0

# (row, variant, baseline, halve the baseline?, target or None)
TARGETS: tuple[tuple[str, str, str, bool, float | None], ...] = (
    ("first: ours/raw", "ours_first", "raw", False, 0.92),
    ("first: Router/raw", "router_first", "raw", False, None),
    ("first, no OTel SDK: ours/raw", "ours_first_notel", "raw", False, None),
    ("fallback, first answers: ours/raw", "ours_fallback", "raw", False, 0.90),
    ("fallback: Router/raw", "router_fallback", "raw", False, None),
    ("race of 2: ours/(raw/2)", "ours_race", "raw", True, 0.90),
    ("race of 2: Router/(raw/2)", "router_race", "raw", True, None),
    ("costLimit user, memory store: ours/raw", "ours_budget", "raw", False, 0.88),
)
LITELLM_CALLS = {"ours_race": 2, "router_race": 2}
"""litellm calls per request where it is not one."""
CPU_ADDED_TARGET_US = 100.0
"""CPU added per call by `first` with telemetry on, in µs."""
REQUESTS, ROUNDS = {1: 32, 50: 75}, 10
"""Calls per measurement at each concurrency, and interleaved rounds (the ratio is their median)."""
REQUESTS_QUICK, ROUNDS_QUICK = {1: 20, 50: 50}, 4
WARM_UP = 60
"""Calls per variant before measuring (20 at a time)."""


def telemetry_on() -> Any:
    """A `Telemetry` on the OpenTelemetry SDK, as a traced deployment runs it (exports dropped)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from lucky_litellm.telemetry import Telemetry

    class _Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))
    return Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
    )


def telemetry_off() -> Any:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from lucky_litellm.telemetry import Telemetry

    return Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())


def build_models(telemetry: Any) -> Any:
    """The registry every `ours_*` variant uses: one provider, a fallback, a race, a budgeted user."""
    from lucky_litellm import Models

    models = Models(
        {"providers": {"openai": {"apiBase": API_BASE}}, "defaults": {"retries": 0}},
        environ={"OPENAI_API_KEY": KEY},
        telemetry=telemetry,
    )
    models.load_user_config(
        "bench",
        {
            "experiments": {
                "fb": {"strategy": "fallback", "providers": [PRIMARY, BACKUP]},
                "race": {"strategy": "race", "providers": [PRIMARY, BACKUP]},
            }
        },
    )
    models.load_user_config(
        "budget",
        {
            "defaults": {"costLimit": COST_LIMIT_USD},
            "experiments": {"one": {"strategy": "first", "providers": [PRIMARY]}},
        },
    )
    return models


def variants() -> dict[str, Call]:
    import litellm

    models = build_models(telemetry_on())
    plain = build_models(telemetry_off())
    deployment = {"api_base": API_BASE, "api_key": KEY}
    router = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {"model": PRIMARY, **deployment}},
            {"model_name": "backup", "litellm_params": {"model": BACKUP, **deployment}},
        ],
        num_retries=0,
    )
    router_fb = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {"model": PRIMARY, **deployment}},
            {"model_name": "backup", "litellm_params": {"model": BACKUP, **deployment}},
        ],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
    )
    messages: Any = MESSAGES

    async def raw() -> Any:
        return await litellm.acompletion(
            model=PRIMARY, messages=messages, api_base=API_BASE, api_key=KEY, max_retries=0, **MOCK
        )

    async def router_first() -> Any:
        return await router.acompletion(model="primary", messages=messages, mock_response=MOCK_TEXT)

    async def router_fallback() -> Any:
        return await router_fb.acompletion(model="primary", messages=messages, mock_response=MOCK_TEXT)

    async def router_race() -> Any:
        return await router.abatch_completion_fastest_response(
            model="primary,backup", messages=messages, mock_response=MOCK_TEXT
        )

    async def ours_first() -> Any:
        return await models.complete(PRIMARY, MESSAGES, **MOCK)

    async def ours_first_notel() -> Any:
        return await plain.complete(PRIMARY, MESSAGES, **MOCK)

    async def ours_fallback() -> Any:
        return await models.complete("user:bench:fb", MESSAGES, **MOCK)

    async def ours_race() -> Any:
        return await models.complete("user:bench:race", MESSAGES, **MOCK)

    async def ours_budget() -> Any:
        return await models.complete("user:budget:one", MESSAGES, **MOCK)

    return {
        "raw": raw,
        "ours_first": ours_first,
        "router_first": router_first,
        "ours_first_notel": ours_first_notel,
        "ours_fallback": ours_fallback,
        "router_fallback": router_fallback,
        "ours_race": ours_race,
        "router_race": router_race,
        "ours_budget": ours_budget,
    }


class GcMeter:
    """Counts the garbage collector's passes per generation and the time they take, through
    `gc.callbacks`: at concurrency a call's objects outlive several young collections and end up
    in the old generation, whose collections rescan litellm's whole import-time heap, so how
    often a variant makes the collector run is a large part of what it costs (see README)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.collections[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._started

    def snapshot(self) -> tuple[int, int, int, float]:
        gen0, gen1, gen2 = self.collections
        return gen0, gen1, gen2, self.seconds


def _gc_summary(before_after: dict[str, list[tuple[int, int, int, float]]], calls: int) -> dict[str, Any]:
    """Per variant: collections per 1,000 calls (generations 0/1/2) and GC µs per call."""
    out: dict[str, Any] = {}
    for name, deltas in before_after.items():
        total = [sum(d[i] for d in deltas) for i in range(4)]
        n = calls * len(deltas)
        out[name] = {
            "per_1000_calls": [round(total[i] * 1000 / n, 1) for i in range(3)],
            "us_per_call": round(total[3] * 1e6 / n, 1),
        }
    return out


def _summary(results: dict[str, list[Load]]) -> dict[str, Any]:
    rps = {name: [load.requests_per_s for load in loads] for name, loads in results.items()}
    cpu = {name: [load.cpu_us_per_request for load in loads] for name, loads in results.items()}
    ratios: dict[str, float] = {}
    cpu_ratios: dict[str, float] = {}
    for row, variant, base, halve, _ in TARGETS:
        scale = 2.0 if halve else 1.0
        ratios[row] = round(paired_ratio(rps[variant], rps[base]) * scale, 3)
        # the same from CPU time: everything here is CPU-bound, and a process's own CPU time is
        # much less moved by other processes' load than its wall-clock throughput
        cpu_ratios[row] = round(paired_ratio(cpu[base], cpu[variant]) * scale, 3)
    cpu_us = {name: round(statistics.median(v), 1) for name, v in cpu.items()}
    # what a variant adds to the litellm calls it makes (race makes two), median over rounds
    added = {
        name: round(
            statistics.median(a - b * LITELLM_CALLS.get(name, 1) for a, b in zip(v, cpu["raw"], strict=True)),
            1,
        )
        for name, v in cpu.items()
        if name != "raw"
    }
    return {
        "requests_per_s": {name: round(statistics.median(v), 1) for name, v in rps.items()},
        "cpu_us_per_call": cpu_us,
        "cpu_added_us_per_call": added,
        "ratio": ratios,
        "cpu_ratio": cpu_ratios,
    }


async def _matrix(calls: dict[str, Call], requests: dict[int, int], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = {id(call): name for name, call in calls.items()}
    with GcMeter() as meter:
        for concurrency in CONCURRENCIES:
            n = requests[concurrency]
            passes: dict[str, list[tuple[int, int, int, float]]] = {name: [] for name in calls}

            async def measure(
                call: Call, c: int = concurrency, n: int = n, passes: dict[str, Any] = passes
            ) -> Load:
                before = meter.snapshot()
                load = await throughput(call, n, c)
                after = meter.snapshot()
                passes[names[id(call)]].append(
                    (after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3])
                )
                return load

            results = await interleaved(calls, measure, rounds)
            out[f"c{concurrency}"] = {
                "requests_per_round": n,
                "rounds": rounds,
                **_summary(results),
                "gc": _gc_summary(passes, n),
            }
    return out


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, met) rows for `make bench`; met None = reported only."""
    out: list[tuple[str, str, str, bool | None]] = []
    for mode in ("nofreeze", "freeze"):
        matrix = result.get(mode)
        if not matrix:
            continue
        suffix = "" if mode == "nofreeze" else ", gc.freeze() (reference only)"
        for concurrency in CONCURRENCIES:
            data = matrix[f"c{concurrency}"]
            for row, _, _, _, target in TARGETS:
                ratio = data["ratio"][row]
                if mode == "freeze" or target is None:
                    out.append((f"{row}, c={concurrency}{suffix}", f"{ratio:.2f}", "report", None))
                else:
                    by_cpu = data.get("cpu_ratio", {}).get(row)
                    shown = f"{ratio:.2f}" if by_cpu is None else f"{ratio:.2f} (CPU time: {by_cpu:.2f})"
                    out.append((f"{row}, c={concurrency}", shown, f">= {target}", ratio >= target))
            added = data["cpu_added_us_per_call"]["ours_first"]
            cpu = data["cpu_us_per_call"]
            out.append(
                (
                    f"CPU added/call, first, telemetry on, c={concurrency}{suffix}",
                    f"{added:.0f} us (raw {cpu['raw']:.0f}, ours {cpu['ours_first']:.0f})",
                    "report" if mode == "freeze" else f"< {CPU_ADDED_TARGET_US:.0f} us",
                    None if mode == "freeze" else added < CPU_ADDED_TARGET_US,
                )
            )
            if mode == "nofreeze":
                for name in ("ours_fallback", "ours_race", "ours_budget", "router_first"):
                    out.append(
                        (
                            f"  CPU added/call, {name}, c={concurrency}",
                            f"{data['cpu_added_us_per_call'][name]:.0f} us",
                            "report",
                            None,
                        )
                    )
                collected = data.get("gc", {})
                for name in ("raw", "ours_first", "ours_first_notel"):
                    if name in collected:
                        entry = collected[name]
                        per = "/".join(f"{x:g}" for x in entry["per_1000_calls"])
                        out.append(
                            (
                                f"  GC passes per 1000 calls (gen 0/1/2), {name}, c={concurrency}",
                                f"{per} ({entry['us_per_call']:.0f} us/call)",
                                "report",
                                None,
                            )
                        )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The README's Performance tables: ratios at c=1 and c=50 next to targets, and CPU per call."""
    matrix = result["nofreeze"]
    c1, c50 = matrix["c1"], matrix["c50"]
    lines = [
        "| no `gc.freeze()`, mock_response | c=1 | c=50 | target | from CPU time, c=1 / c=50 "
        "| litellm Router, c=1 / c=50 |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row, _, _, _, target in TARGETS:
        if "Router" in row:
            continue
        mirror = row.replace(", first answers", "").replace("ours/", "Router/")
        router = mirror if mirror in c1["ratio"] else None
        versus = f"{c1['ratio'][router]:.2f} / {c50['ratio'][router]:.2f}" if router else "-"
        goal = f">= {target}" if target is not None else "-"
        by_cpu = f"{c1['cpu_ratio'][row]:.2f} / {c50['cpu_ratio'][row]:.2f}" if "cpu_ratio" in c1 else "-"
        lines.append(
            f"| {row} | {c1['ratio'][row]:.2f} | {c50['ratio'][row]:.2f} | {goal} | {by_cpu} | {versus} |"
        )
    lines += [
        "",
        "| CPU µs per call (process time / calls) | c=1 | c=50 | added at c=1 / c=50 |",
        "|---|---:|---:|---:|",
    ]
    for name in ("raw", *(v for v in c1["cpu_us_per_call"] if v != "raw")):
        added = (
            "-"
            if name == "raw"
            else f"{c1['cpu_added_us_per_call'][name]:.0f} / {c50['cpu_added_us_per_call'][name]:.0f}"
        )
        lines.append(
            f"| {name} | {c1['cpu_us_per_call'][name]:.0f} | {c50['cpu_us_per_call'][name]:.0f} | {added} |"
        )
    if "gc" in c1:
        lines += [
            "",
            "| garbage collector, per variant | passes per 1000 calls, gen 0/1/2, c=1 | c=50 "
            "| GC µs per call, c=1 / c=50 |",
            "|---|---:|---:|---:|",
        ]
        for name in c1["gc"]:
            one, fifty = c1["gc"][name], c50["gc"][name]
            lines.append(
                f"| {name} | {'/'.join(f'{x:g}' for x in one['per_1000_calls'])} "
                f"| {'/'.join(f'{x:g}' for x in fifty['per_1000_calls'])} "
                f"| {one['us_per_call']:.0f} / {fifty['us_per_call']:.0f} |"
            )
    return "\n".join(lines)


async def _run(quick: bool, freeze: bool, breakdown: bool) -> dict[str, Any]:
    step = Progress("overhead")
    quiet_litellm()
    calls = variants()
    step("litellm imported, variants built")
    for call in calls.values():  # warm-up: clients, caches, first-call imports, logging worker
        await throughput(call, WARM_UP, 20)
    step("warmed up")
    # many short rounds: on a shared machine a neighbour's burst then spoils a few pairs, and
    # the median of per-round ratios ignores them; the sizes keep the whole benchmark within its
    # 60 s budget on 2 quiet cores (~60 s of CPU in all: matrix ~38 s, breakdown ~12 s, import
    # and warm-up ~10 s)
    requests, rounds = (REQUESTS_QUICK, ROUNDS_QUICK) if quick else (REQUESTS, ROUNDS)
    result: dict[str, Any] = {"mock_response": True, "nofreeze": await _matrix(calls, requests, rounds)}
    step("matrix measured")
    if freeze:
        gc.collect()
        gc.freeze()
        try:
            result["freeze"] = await _matrix(calls, requests, rounds)
        finally:
            gc.unfreeze()
        step("matrix after gc.freeze() measured")
    if breakdown:
        from benchmarks import profile_breakdown

        result["breakdown"] = await profile_breakdown.breakdown(1_000 if quick else 10_000)
        step("breakdown profiled")
    return result


def run(quick: bool = False, freeze: bool = False, breakdown: bool = True) -> dict[str, Any]:
    """Run the benchmark; see the module docstring for what is measured."""
    return asyncio.run(_run(quick, freeze, breakdown))


def main(argv: list[str]) -> int:
    cli = parser("benchmarks.bench_overhead", __doc__)
    cli.add_argument("--freeze", action="store_true", help="also the matrix after gc.freeze() (reference)")
    cli.add_argument("--no-breakdown", action="store_true", help="skip the per-layer profile breakdown")
    cli.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    args = cli.parse_args(argv)
    with stop_children_on_signals():
        result = run(args.quick, args.freeze, not args.no_breakdown)
    table = rows(result)
    widths = [max(len(str(row[i])) for row in table) for i in range(3)]
    for measure, value, target, met in table:
        mark = "-" if met is None else ("PASS" if met else "FAIL")
        print(f"{measure:<{widths[0]}}  {value:<{widths[1]}}  {target:<{widths[2]}}  {mark}")
    if "breakdown" in result:
        from benchmarks import profile_breakdown

        print()
        print(profile_breakdown.format_table(result["breakdown"]))
    if args.markdown:
        print()
        print(markdown(result))
        if "breakdown" in result:
            from benchmarks import profile_breakdown

            print()
            print(profile_breakdown.markdown_table(result["breakdown"]))
    print(json.dumps(result, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
