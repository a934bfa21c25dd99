"""Memory over many calls: RSS growth of `Models.complete` with stats and tracing on, every call
from a distinct caller (100,000 callers).

The 100,000 calls go through lucky_litellm's whole path (resolution, strategy, retries, spans into
an OpenTelemetry SDK provider, metrics, stats, routing records) with `litellm.acompletion`
answering from a prebuilt response, so the figure is lucky_litellm's own growth and the run fits
in the time budget (litellm's mock path costs ~2.5 ms a call on this machine). A shorter run
through real `litellm.acompletion(mock_response=...)` shows litellm's growth for comparison. The
two run side by side, each in a fresh interpreter (see `run`).

    python -m benchmarks.bench_memory [--quick]
    python -m benchmarks.bench_memory --part lucky_layer    # one part, in this process
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import sys
from typing import Any

from benchmarks.common import (
    KEY,
    MESSAGES,
    parser,
    quiet_litellm,
    run_json_subprocesses,
    stop_children_on_signals,
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _traced_models() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from lucky_litellm import Models
    from lucky_litellm.telemetry import Telemetry

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))  # as production setups do
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider([InMemoryMetricReader()])
    )
    return Models(
        {"providers": {"openai": {"apiBase": "http://127.0.0.1:9/v1"}}},
        environ={"OPENAI_API_KEY": KEY},
        telemetry=telemetry,
    )


_call_number = itertools.count()


async def _calls(models: Any, count: int, users: int) -> None:
    for _ in range(count):
        caller = next(_call_number) % users
        await models.complete("openai/gpt-4.1-mini", MESSAGES, user_id=f"user-{caller}", mock_response="ok")


async def _growth(
    models: Any, warmup: int, first: int, total: int, users: int = 1000, freeze: bool = False
) -> dict[str, float]:
    await _calls(models, warmup, users)
    gc.collect()
    if freeze:  # litellm's import-time heap out of the collector's sight: ~15 % less CPU a call
        gc.freeze()
    await _calls(models, first - warmup, users)
    gc.collect()
    at_first = _rss_mb()
    await _calls(models, total - first, users)
    gc.collect()
    at_total = _rss_mb()
    return {
        "rss_after_first_mb": round(at_first, 1),
        "rss_at_end_mb": round(at_total, 1),
        "growth_mb": round(at_total - at_first, 1),
        "calls": total,
    }


async def _lucky_layer(quick: bool) -> dict[str, float]:
    import litellm

    models = _traced_models()
    real = litellm.acompletion
    response = await real(model="openai/gpt-4.1-mini", messages=MESSAGES, mock_response="ok")

    async def prebuilt(**_: Any) -> Any:
        await asyncio.sleep(0)  # yield to the loop as real I/O does (the loop tidies its timers there)
        return response

    total = 30_000 if quick else LUCKY_CALLS
    litellm.acompletion = prebuilt
    # every call from a distinct caller: per-caller state (spend, slots, stats, caches) must be
    # bounded; the first sample comes after every bounded table (10,000 users in stats) is full
    return await _growth(models, 2000, total // 5, total, users=total, freeze=True)


async def _through_litellm(quick: bool) -> dict[str, float]:
    return await _growth(_traced_models(), 500, 1500, 3000 if quick else LITELLM_CALLS)


PARTS = {"lucky_layer": _lucky_layer, "through_litellm_mock": _through_litellm}

LUCKY_CALLS = 100_000
LITELLM_CALLS = 5000
"""Through litellm's mock path (~2.5 ms a call) the run is sized to end with the lucky layer's."""


def run(quick: bool = False) -> dict[str, Any]:
    """Both parts side by side, each in a fresh interpreter: RSS is then each part's own (not
    grown into holes earlier benchmarks left in this process's heap), and the two cores halve the
    wall time."""
    flag = ["--quick"] if quick else []
    results = run_json_subprocesses([["benchmarks.bench_memory", "--part", part, *flag] for part in PARTS])
    return dict(zip(PARTS, results, strict=True))


def _part(name: str, quick: bool) -> dict[str, float]:
    quiet_litellm()
    return asyncio.run(PARTS[name](quick))


def main(argv: list[str]) -> int:
    cli = parser("benchmarks.bench_memory", __doc__)
    cli.add_argument("--part", help=argparse.SUPPRESS)  # internal: one measured child process
    args = cli.parse_args(argv)
    if args.part:
        print(json.dumps(_part(args.part, args.quick)))
        return 0
    with stop_children_on_signals():
        print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
