"""End to end: calls through litellm to a fake upstream, telemetry exported over OTLP/HTTP to a real
receiver, and what the receiver decoded checked against what happened.

OpenTelemetry's global providers can be set only once per process, so each test gets its own
providers from `configure(..., set_global=False)` (the same SDK/exporter setup the CLI installs)
and hands them to `Telemetry(tracer_provider=..., meter_provider=...)`: tests stay independent and
order-free. The global path (`configure()` with `set_global=True`, used by `--otlp`) is exercised
once, in a child interpreter, where setting globals cannot leak into other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from lucky_litellm import Models, routing_of
from lucky_litellm.telemetry import DURATION_BUCKETS, Telemetry, TelemetrySetup, configure
from lucky_litellm.testing import Behavior, FakeUpstream
from lucky_litellm.testing.otlp_receiver import OtlpReceiver, ReceivedSpan

SECRET = "sk-test-planted-secret-123456"
MESSAGES = [{"role": "user", "content": "Which river is longest?"}]
MINI_PRICE = (0.4e-6, 1.6e-6)  # gpt-4.1-mini, USD per input / output token
NANO_PRICE = (0.1e-6, 0.4e-6)


@dataclass
class Pipeline:
    receiver: OtlpReceiver
    setup: TelemetrySetup
    upstream: FakeUpstream
    models: Models

    def flush(self) -> None:
        assert self.setup.force_flush()

    def trace_of(
        self, root_name: str = "lucky.complete", count: int = 1
    ) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
        """The root span and its children, once the receiver has the root and `count` children."""
        self.flush()
        [root] = self.receiver.wait_for_spans(1, where=lambda s: s.name == root_name)
        children = self.receiver.wait_for_spans(count, where=lambda s: s.parent_span_id == root.span_id)
        return root, children


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with OtlpReceiver() as receiver, FakeUpstream() as upstream:
        setup = configure(
            otlp_endpoint=receiver.endpoint,
            service_name="lucky-test",
            export_interval_ms=60_000,  # metrics are exported by force_flush, not by the timer
            set_global=False,
        )
        telemetry = Telemetry(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
        models = Models(
            {"providers": {"openai": {"apiBase": upstream.base_url, "apiKeyEnv": "OPENAI_API_KEY"}}},
            environ={"OPENAI_API_KEY": SECRET},
            telemetry=telemetry,
        )
        models.load_user_config(
            "u1",
            {
                "experiments": {
                    "fast": {"strategy": "race", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]},
                    "safe": {
                        "strategy": "fallback",
                        "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"],
                    },
                    "vote": {
                        "strategy": "consensus",
                        "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4o-mini"],
                    },
                },
                "defaults": {"costLimit": 1.0},
            },
        )
        try:
            yield Pipeline(receiver, setup, upstream, models)
        finally:
            setup.shutdown()


def _by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}


def _assert_inside(child: ReceivedSpan, parent: ReceivedSpan) -> None:
    assert child.trace_id == parent.trace_id
    assert parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns


async def test_race_trace_arrives_with_tree_outcomes_costs_and_durations(pipeline: Pipeline) -> None:
    pipeline.upstream.script(
        "gpt-4.1-mini", Behavior(content="The Nile", latency_ms=50, prompt_tokens=100, completion_tokens=10)
    )
    pipeline.upstream.script("gpt-4.1-nano", Behavior(content="Amazon", latency_ms=3_000))
    response = await pipeline.models.complete("user:u1:fast", MESSAGES, user_id="u1")

    root, children = pipeline.trace_of(count=2)
    assert root.parent_span_id is None
    assert root.kind == "INTERNAL"
    assert root.resource["service.name"] == "lucky-test"
    assert root.scope == "lucky_litellm"
    assert {k: root.attributes[k] for k in ("lucky.spec", "lucky.strategy", "lucky.experiment")} == {
        "lucky.spec": "user:u1:fast",
        "lucky.strategy": "race",
        "lucky.experiment": "fast",
    }
    assert root.attributes["lucky.rollout.path"] == "registry"
    assert root.attributes["lucky.winner"] == "openai/gpt-4.1-mini"
    assert root.attributes["lucky.models"] == ("openai/gpt-4.1-mini", "openai/gpt-4.1-nano")

    spans = _by_name(children)
    winner, loser = spans["chat openai/gpt-4.1-mini"], spans["chat openai/gpt-4.1-nano"]
    for child in (winner, loser):
        assert child.kind == "CLIENT"
        _assert_inside(child, root)
    assert winner.attributes["lucky.attempt.outcome"] == "won"
    assert winner.attributes["gen_ai.usage.input_tokens"] == 100
    assert winner.attributes["gen_ai.usage.output_tokens"] == 10
    expected_cost = 100 * MINI_PRICE[0] + 10 * MINI_PRICE[1]
    assert winner.attributes["lucky.cost.usd"] == pytest.approx(expected_cost)
    assert root.attributes["lucky.cost.usd"] == pytest.approx(expected_cost)
    assert routing_of(response).cost_usd == pytest.approx(expected_cost)
    assert loser.attributes["lucky.attempt.outcome"] == "cancelled"
    assert loser.status_code == "UNSET"
    assert 0.05 <= winner.duration_s < 2.0
    assert loser.duration_s < 2.0  # cut short when the winner answered, not after its 3 s
    assert root.duration_s >= winner.duration_s


async def test_fallback_trace_shows_the_failure_then_the_winner(pipeline: Pipeline) -> None:
    pipeline.upstream.script(
        "gpt-4.1-mini", Behavior(status=400, error_message="model overloaded with nonsense")
    )
    pipeline.upstream.script(
        "gpt-4.1-nano", Behavior(content="The Nile", prompt_tokens=40, completion_tokens=5)
    )
    await pipeline.models.complete("user:u1:safe", MESSAGES)

    root, children = pipeline.trace_of(count=2)
    spans = _by_name(children)
    failed, won = spans["chat openai/gpt-4.1-mini"], spans["chat openai/gpt-4.1-nano"]
    assert failed.attributes["lucky.attempt.outcome"] == "failed"
    assert failed.attributes["error.type"] == "BadRequestError"
    assert failed.status_code == "ERROR"
    [exception] = [e for e in failed.events if e.name == "exception"]
    assert "model overloaded with nonsense" in exception.attributes["exception.message"]
    assert failed.attributes["lucky.cost.usd"] == 0.0
    assert won.attributes["lucky.attempt.outcome"] == "won"
    assert won.attributes["lucky.cost.usd"] == pytest.approx(40 * NANO_PRICE[0] + 5 * NANO_PRICE[1])
    assert failed.end_ns <= won.start_ns  # fallback runs them one after the other
    assert root.status_code == "UNSET"
    assert root.attributes["lucky.attempts"] == 2


async def test_consensus_trace_has_every_vote_and_the_agreement(pipeline: Pipeline) -> None:
    for model, answer, latency in (
        ("gpt-4.1-mini", "Nile", 10),
        ("gpt-4.1-nano", "nile.", 80),
        ("gpt-4o-mini", "Amazon", 40),
    ):
        pipeline.upstream.script(
            model, Behavior(content=answer, latency_ms=latency, prompt_tokens=10, completion_tokens=1)
        )
    response = await pipeline.models.complete("user:u1:vote", MESSAGES)

    root, children = pipeline.trace_of(count=3)
    outcomes = {span.name: span.attributes["lucky.attempt.outcome"] for span in children}
    assert outcomes == {
        "chat openai/gpt-4.1-mini": "won",
        "chat openai/gpt-4.1-nano": "won",
        "chat openai/gpt-4o-mini": "lost",
    }
    assert root.attributes["lucky.consensus.agreement"] == pytest.approx(2 / 3)
    total = sum(span.attributes["lucky.cost.usd"] for span in children)
    assert total > 0
    assert root.attributes["lucky.cost.usd"] == pytest.approx(total)
    assert routing_of(response).cost_usd == pytest.approx(total)
    # each attempt span ends when its own answer came, not when the vote was counted
    spans = _by_name(children)
    assert spans["chat openai/gpt-4.1-mini"].end_ns < spans["chat openai/gpt-4.1-nano"].end_ns
    for span in children:
        _assert_inside(span, root)


async def test_metrics_arrive_with_semconv_names_buckets_and_labels(pipeline: Pipeline) -> None:
    pipeline.upstream.script(
        "gpt-4.1-mini", Behavior(content="Nile", latency_ms=20, prompt_tokens=100, completion_tokens=10)
    )
    pipeline.upstream.script(
        "gpt-4.1-nano", Behavior(content="Nile", latency_ms=2_000, prompt_tokens=100, completion_tokens=10)
    )
    first = await pipeline.models.complete("user:u1:fast", MESSAGES, user_id="u1")
    second = await pipeline.models.complete("openai/gpt-4.1-mini", MESSAGES, user_id="u1")
    pipeline.flush()

    duration = pipeline.receiver.wait_for_metric("gen_ai.client.operation.duration")
    assert duration.kind == "histogram"
    assert duration.unit == "s"
    points = {
        (
            p.attributes["gen_ai.request.model"],
            p.attributes["lucky.strategy"],
            p.attributes["lucky.attempt.outcome"],
        ): p
        for p in duration.points
    }
    assert set(points) == {
        ("gpt-4.1-mini", "race", "won"),
        ("gpt-4.1-nano", "race", "cancelled"),
        ("gpt-4.1-mini", "first", "won"),
    }
    race_win = points["gpt-4.1-mini", "race", "won"]
    assert race_win.explicit_bounds == DURATION_BUCKETS
    assert race_win.count == 1
    assert 0.02 <= race_win.sum < 1.5

    tokens = pipeline.receiver.wait_for_metric("gen_ai.client.token.usage")
    by_type: dict[str, int] = {}
    for p in tokens.points:
        by_type[p.attributes["gen_ai.token.type"]] = by_type.get(p.attributes["gen_ai.token.type"], 0) + int(
            p.sum or 0
        )
    assert by_type == {"input": 200, "output": 20}

    cost = pipeline.receiver.wait_for_metric("lucky.cost.usd")
    assert cost.kind == "sum" and cost.is_monotonic
    total = sum(p.value or 0.0 for p in cost.points)
    assert total == pytest.approx(routing_of(first).cost_usd + routing_of(second).cost_usd)
    assert total == pytest.approx(2 * (100 * MINI_PRICE[0] + 10 * MINI_PRICE[1]))

    for metric in (duration, tokens, cost):
        for point in metric.points:
            assert "u1" not in point.attributes.values()
            assert {"gen_ai.provider.name", "gen_ai.request.model", "lucky.strategy"} <= set(point.attributes)


def test_receiver_decodes_gzip_encoded_exports() -> None:
    with OtlpReceiver() as receiver:
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces", compression=Compression.Gzip)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("t").start_as_current_span("outer"):
            provider.get_tracer("t").start_span("inner").end()
        provider.shutdown()
        spans = _by_name(receiver.wait_for_spans(2))
        assert spans["inner"].parent_span_id == spans["outer"].span_id
        assert receiver.requests[0] == ("/v1/traces", "gzip")
        assert receiver.errors == []


def test_configure_installs_global_providers_used_by_models(tmp_path: Any) -> None:
    """`configure()` as the CLI calls it, in a fresh interpreter: Models built afterwards (and before)
    export through the global providers without being handed any."""
    with OtlpReceiver() as receiver:
        script = textwrap.dedent(
            f"""
            import asyncio
            from lucky_litellm import Models
            from lucky_litellm.telemetry import configure

            before = Models(environ={{"OPENAI_API_KEY": "{SECRET}"}})   # created before configure()
            setup = configure(otlp_endpoint="{receiver.endpoint}", service_name="lucky-global")
            after = Models(environ={{"OPENAI_API_KEY": "{SECRET}"}})

            async def main():
                for models in (before, after):
                    await models.complete("openai/gpt-4.1-mini", [{{"role": "user", "content": "hi"}}],
                                          mock_response="hello")
            asyncio.run(main())
            setup.shutdown()
            """
        )
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        roots = receiver.wait_for_spans(2, where=lambda s: s.name == "lucky.complete")
        assert {root.resource["service.name"] for root in roots} == {"lucky-global"}
        receiver.wait_for_spans(2, where=lambda s: s.name == "chat openai/gpt-4.1-mini")
        assert receiver.wait_for_metric("lucky.cost.usd").points
        assert SECRET not in repr(receiver.spans) + repr(receiver.metrics)
