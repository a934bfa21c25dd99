"""What a finished request leaves behind for the garbage collector.

A reference cycle per request is freed only by the collector, and every collection of the older
generations walks litellm's whole import-time heap: in the overhead benchmark that was tens of
µs of CPU per call, on top of the work itself. These tests run real calls (fake upstream, the
OpenTelemetry SDK recording) and check that none of lucky_litellm's or OpenTelemetry's objects
of a request is left in a cycle.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lucky_litellm import Models
from lucky_litellm.telemetry import Telemetry
from lucky_litellm.testing import FakeUpstream

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

PRIMARY, BACKUP = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def _models(upstream: FakeUpstream) -> Models:
    telemetry = Telemetry(
        tracer_provider=_tracer_provider(),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )
    models = Models(upstream_config(upstream), environ=dict(PLANTED_KEYS), telemetry=telemetry)
    models.load_user_config(
        "u1",
        {
            "defaults": {"costLimit": 100.0},
            "experiments": {
                "fb": {"strategy": "fallback", "providers": [PRIMARY, BACKUP]},
                "race": {"strategy": "race", "providers": [PRIMARY, BACKUP]},
            },
        },
    )
    return models


def _tracer_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return provider


def _ours(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith(("lucky_litellm", "opentelemetry"))


async def _garbage_of(models: Models, spec: str, calls: int = 5) -> list[str]:
    """Types of lucky_litellm / OpenTelemetry objects that only the collector could free."""
    await models.complete(spec, MESSAGES)  # first-call caches and imports out of the way
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(calls):
            await models.complete(spec, MESSAGES)
        gc.collect()
        return sorted({type(obj).__qualname__ for obj in gc.garbage if _ours(obj)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("spec", [PRIMARY, "user:u1:fb", "user:u1:race"], ids=["first", "fallback", "race"])
async def test_a_finished_request_leaves_no_reference_cycle(upstream: FakeUpstream, spec: str) -> None:
    assert await _garbage_of(_models(upstream), spec) == []
