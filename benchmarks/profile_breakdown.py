"""Where lucky_litellm's own microseconds per call go: a profile of 10,000 calls, itemised.

`litellm.acompletion` is replaced by a stub that makes one trip through the event loop and
returns a prebuilt `ModelResponse` (from a real `mock_response` call), so the profile holds
exactly the code lucky_litellm runs around a call, telemetry on (OpenTelemetry SDK), one call at
a time. pyinstrument samples the stack (async mode off: a sample is the code that was really
running, never time spent awaiting); each sample is billed to the innermost frame on its stack
that belongs to a category below, so the OpenTelemetry SDK called from `telemetry.py` counts as
telemetry, litellm's cost map read from the pricing code counts as pricing, and so on. Time on
lucky_litellm frames outside every category is "request flow" (strategy, kwargs, deadline).

The table is meant for finding the next regression by reading it: a category that grows is
where to look, and `python -m benchmarks.profile_breakdown --html out.html` writes the full tree.

    python -m benchmarks.profile_breakdown [--calls N] [--html out.html]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import MESSAGES, parser, quiet_litellm, stop_children_on_signals

_SDK = "OpenTelemetry SDK"
CATEGORIES: tuple[str, ...] = (
    "plan lookup",
    "lease",
    "telemetry",
    _SDK,
    "pricing",
    "routing record",
    "retry wrapper",
    "request flow",
)
"""Categories billed; "request flow" is lucky_litellm code in none of the others, and the
OpenTelemetry SDK (whoever called it: in practice lucky's telemetry) is shown inside telemetry."""

_PLAN = {"resolve", "_resolve", "parse_spec", "_expand", "target_for", "legacy_target"}
_PRICING = {
    "estimate_prompt_tokens",
    "estimate_cost",
    "_estimates",
    "response_cost",
    "cost_from_tokens",
    "model_price",
    "_within_cost",
    "prompt_tokens",
    "count_prompt_tokens",
}
_LEASE = {"_reserve", "reserve_spend", "settle_spend", "add_spend", "spent", "acquire", "release"}
_ROUTING = {"attach_routing", "new_attempt", "record_response", "usage_of"}
_PACKAGE_CATEGORY = {"telemetry": "telemetry", "state": "lease"}
"""Sub-packages of lucky_litellm billed as a whole."""
_MODULE_CATEGORY = {
    "telemetry.py": "telemetry",
    "alerts.py": "telemetry",
    "retry.py": "retry wrapper",
    "limits.py": "lease",
    "flags_store.py": "lease",
    "lease.py": "lease",
    "pricing.py": "pricing",
    "routing.py": "routing record",
    "stats.py": "routing record",
}


def category_of(file_path: str | None, function: str, class_name: str | None = None) -> str | None:
    """The category a frame belongs to, or None (then it inherits its caller's)."""
    path = (file_path or "").replace("\\", "/")
    if "/opentelemetry/" in path:  # the SDK's own work (spans, attribute cleaning, aggregation)
        return _SDK
    if "/lucky_litellm/" not in path:
        # pyinstrument names a dataclass __init__ after its class, not its module
        if class_name in ("Routing", "Attempt") and function == "__init__":
            return "routing record"
        if path.endswith("/litellm/main.py") and function == "acompletion":
            return "litellm (stubbed)"
        return None
    package, module = path.rsplit("/lucky_litellm/", 1)[-1].rpartition("/")[::2]
    if package in _PACKAGE_CATEGORY:
        return _PACKAGE_CATEGORY[package]
    if class_name == "Lease":  # engine.py: the slot, the budget, the settling; not the strategy it runs
        return "request flow" if function == "execute" else "lease"
    if function in _PLAN:
        return "plan lookup"
    if function in _PRICING:
        return "pricing"
    if "lease" in function.lower() or function in _LEASE:
        return "lease"
    if function in _ROUTING:
        return "routing record"
    if class_name == "RetryPolicy" or module == "retry.py":
        return "retry wrapper"
    if module in _MODULE_CATEGORY:
        return _MODULE_CATEGORY[module]
    if "telemetry" in function.lower() or "span" in function.lower() or "trace" in function.lower():
        return "telemetry"
    return "request flow"


def _attribute(frame: Any, inherited: str | None, totals: dict[str, float]) -> None:
    own = category_of(frame.file_path, frame.function, getattr(frame, "class_name", None)) or inherited
    child_time = sum(child.time for child in frame.children)
    self_time = max(frame.time - child_time, 0.0)
    key = own or "outside lucky_litellm (event loop, benchmark)"
    totals[key] = totals.get(key, 0.0) + self_time
    for child in frame.children:
        _attribute(child, own, totals)


async def cpu_us_per_call(call: Callable[[], Any], calls: int) -> float:
    """Process CPU time per call, unprofiled."""
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def _profiled_calls(
    call: Callable[[], Any], baseline: Callable[[], Any], calls: int, html: str | None
) -> dict[str, Any]:
    """Shares of the profile per category, scaled to the unprofiled CPU time the calls add.

    A profiler's own cost inflates every frame it sees (pyinstrument roughly 4x here), so its
    absolute times are not what a user pays; the shares are. Unprofiled CPU per call, minus the
    same for the stub alone, is what lucky_litellm adds, and is split by those shares."""
    from pyinstrument import Profiler

    sample = min(max(calls // 10, 200), 500)
    rounds = [
        (await cpu_us_per_call(call, sample), await cpu_us_per_call(baseline, sample)) for _ in range(5)
    ]
    added_us = statistics.median(ours - stub for ours, stub in rounds)
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    for _ in range(calls):
        await call()
    profiler.stop()
    if html:
        with open(html, "w") as out:
            out.write(profiler.output_html())
    root = profiler.last_session.root_frame() if profiler.last_session else None
    totals: dict[str, float] = {}
    if root is not None:
        _attribute(root, None, totals)
    ours = sum(totals.get(name, 0.0) for name in CATEGORIES) or 1.0
    return {
        "added_cpu_us": round(added_us, 1),
        "us_per_call": {name: round(totals.get(name, 0.0) / ours * added_us, 1) for name in CATEGORIES},
        "profiled_us_per_call": {name: round(seconds / calls * 1e6, 1) for name, seconds in totals.items()},
    }


def sdk_floor_us(telemetry: Any, calls: int = 2_000) -> float:
    """CPU µs the OpenTelemetry SDK alone takes for what one `first` call records: the request
    span and the attempt span (started with their attributes, given the end attributes, ended)
    and three metric points (duration, input and output tokens), with label sets of the sizes a
    call really has, through the same providers. What lucky's telemetry cannot go below without
    recording less."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer, duration, tokens = telemetry._tracer, telemetry._duration, telemetry._tokens
    model = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4.1-mini",
        "server.address": "127.0.0.1",
        "server.port": 9,
    }
    request_start = {
        "lucky.spec": "openai/gpt-4.1-mini",
        "lucky.strategy": "first",
        "lucky.rollout.path": "registry",
    }
    request_end = {
        "lucky.models": ["openai/gpt-4.1-mini"],
        "lucky.cost.usd": 1e-5,
        "lucky.attempts": 1,
        "lucky.winner": "x",
    }
    attempt_start = {**model, "lucky.model": "openai/gpt-4.1-mini"}
    attempt_end = {
        "lucky.attempt.outcome": "won",
        "lucky.cost.usd": 1e-5,
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.model": "gpt-4.1-mini",
        "gen_ai.usage.input_tokens": 14,
        "gen_ai.usage.output_tokens": 2,
    }
    labels = {**model, "lucky.strategy": "first", "gen_ai.response.model": "gpt-4.1-mini"}
    outcome = {**labels, "lucky.attempt.outcome": "won"}
    inputs, outputs = {**labels, "gen_ai.token.type": "input"}, {**labels, "gen_ai.token.type": "output"}

    def one() -> None:
        request = tracer.start_span("lucky.complete", kind=SpanKind.INTERNAL, attributes=request_start)
        context = trace.set_span_in_context(request)
        attempt = tracer.start_span(
            "chat gpt-4.1-mini", context=context, kind=SpanKind.CLIENT, attributes=attempt_start
        )
        attempt.set_attributes(attempt_end)
        attempt.end()
        duration.record(0.01, outcome)
        tokens.record(14, inputs)
        tokens.record(2, outputs)
        request.set_attributes(request_end)
        request.end()

    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(calls // 5):
            one()
        rounds.append((time.process_time() - started) / (calls // 5) * 1e6)
    return round(statistics.median(rounds), 1)


async def breakdown(calls: int = 10_000, html: str | None = None) -> dict[str, Any]:
    """µs per call by category for `first` (a profile of `calls` calls), a 2-model `race` and
    `first` by a `costLimit` user (a quarter as many each: enough samples for their shares, and
    the benchmark keeps to its time budget)."""
    import litellm

    from benchmarks.bench_overhead import MOCK, PRIMARY, build_models, telemetry_on

    quiet_litellm()
    telemetry = telemetry_on()
    models = build_models(telemetry)
    real = litellm.acompletion
    response = await real(model=PRIMARY, messages=MESSAGES, **MOCK)

    async def stub(**_: Any) -> Any:
        await asyncio.sleep(0)  # one trip through the event loop, as any real call makes
        return response

    async def baseline() -> Any:
        return await stub()

    scenarios = {
        "first": lambda: models.complete(PRIMARY, MESSAGES),
        "race of 2": lambda: models.complete("user:bench:race", MESSAGES),
        "costLimit user": lambda: models.complete("user:budget:one", MESSAGES),
    }
    litellm.acompletion = stub
    try:
        counts = {name: calls if name == "first" else max(calls // 4, 200) for name in scenarios}
        out: dict[str, Any] = {"calls": counts, "scenarios": {}}
        for name, call in scenarios.items():
            for _ in range(300):  # warm-up: plan cache, lru caches, first-call imports
                await call()
            out["scenarios"][name] = await _profiled_calls(
                call, baseline, counts[name], html if name == "first" else None
            )
    finally:
        litellm.acompletion = real
    out["sdk_floor_us"] = sdk_floor_us(telemetry)
    return out


def _cells(result: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[float]]]]:
    scenarios: dict[str, dict[str, Any]] = result["scenarios"]
    names = list(scenarios)
    table: list[tuple[str, list[float]]] = []
    for category in CATEGORIES:
        values = [s["us_per_call"].get(category, 0.0) for s in scenarios.values()]
        if category == "telemetry":  # lucky's telemetry code and the SDK it calls
            sdk = [s["us_per_call"].get(_SDK, 0.0) for s in scenarios.values()]
            table.append(("telemetry (all)", [round(a + b, 1) for a, b in zip(values, sdk, strict=True)]))
            table.append(("telemetry, of which OpenTelemetry SDK", sdk))
        elif category != _SDK:
            table.append((category, values))
    table.append(("total added (unprofiled CPU)", [s["added_cpu_us"] for s in scenarios.values()]))
    if "sdk_floor_us" in result:  # the same for every scenario's first attempt; shown under first
        table.append(("OTel SDK floor of one first call (2 spans, 3 points)", [result["sdk_floor_us"]]))
    return names, table


def format_table(result: dict[str, Any]) -> str:
    """The breakdown as a text table: one row per category, one column per scenario."""
    names, table = _cells(result)
    title = "CPU µs per call by category"
    lines = [f"{title:<48}" + "".join(f"{n:>16}" for n in names)]
    lines += [f"{category:<48}" + "".join(f"{v:>16.1f}" for v in values) for category, values in table]
    lines.append(f"(pyinstrument profiles of {_counts(result)} calls)")
    return "\n".join(lines)


def _counts(result: dict[str, Any]) -> str:
    counts = result["calls"]
    if isinstance(counts, int):
        return f"{counts:,}"
    return ", ".join(f"{n:,} {name}" for name, n in counts.items())


def markdown_table(result: dict[str, Any]) -> str:
    """The same table in Markdown (for the README)."""
    names, table = _cells(result)
    lines = ["| CPU µs per call | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [
        f"| {category} | "
        + " | ".join([f"{v:.1f}" for v in values] + ["-"] * (len(names) - len(values)))
        + " |"
        for category, values in table
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    cli = parser("benchmarks.profile_breakdown", __doc__, quick=False)
    cli.add_argument("--calls", type=int, default=10_000, metavar="N", help="calls profiled (default 10000)")
    cli.add_argument("--html", metavar="PATH", help="also write a pyinstrument HTML report there")
    args = cli.parse_args(argv)
    with stop_children_on_signals():
        result = asyncio.run(breakdown(args.calls, args.html))
    print(format_table(result))
    print()
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
