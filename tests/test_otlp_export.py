"""End to end: calls through litellm to a fake upstream, telemetry exported over OTLP/HTTP to a real
receiver, and what the receiver decoded checked against what happened.

OpenTelemetry's global providers can be set only once per process, so each test gets its own
providers from `configure(..., set_global=False)` (the same SDK/exporter setup the CLI installs)
and hands them to `Telemetry(tracer_provider=..., meter_provider=...)`: tests stay independent and
order-free. The global path (`configure()` with `set_global=True`, used by `--otlp`) is exercised
once, in a child interpreter, where setting globals cannot leak into other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_FREQUENCY_PENALTY,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_STOP_SEQUENCES,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_TOKEN_TYPE,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GenAiOperationNameValues,
    GenAiProviderNameValues,
)
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv._incubating.metrics.gen_ai_metrics import (
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
    GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    GEN_AI_CLIENT_TOKEN_USAGE,
)
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT

from lucky_litellm import Models, routing_of
from lucky_litellm.telemetry import (
    CAPTURE_CONTENT_ENV,
    DURATION_BUCKETS,
    Telemetry,
    TelemetrySetup,
    configure,
)
from lucky_litellm.testing import Behavior, FakeUpstream
from lucky_litellm.testing.otlp_receiver import OtlpReceiver, ReceivedPoint, ReceivedSpan

SECRET = "sk-test-planted-secret-123456"
MESSAGES = [{"role": "user", "content": "Which river is longest?"}]
MINI_PRICE = (0.4e-6, 1.6e-6)  # gpt-4.1-mini, USD per input / output token
NANO_PRICE = (0.1e-6, 0.4e-6)
SEMCONV_NAMES = {
    value
    for module in (gen_ai_attributes, gen_ai_metrics, server_attributes, error_attributes)
    for value in vars(module).values()
    if isinstance(value, str)
}


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

    def points(self, name: str) -> list[ReceivedPoint]:
        self.flush()
        return list(self.receiver.wait_for_metric(name).points)


USER_CONFIG = {
    "experiments": {
        "fast": {"strategy": "race", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]},
        "safe": {"strategy": "fallback", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]},
        "vote": {
            "strategy": "consensus",
            "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4o-mini"],
        },
    },
    "defaults": {"costLimit": 1.0},
}


@contextlib.contextmanager
def pipeline_of(capture_content: bool | None = False) -> Iterator[Pipeline]:
    with OtlpReceiver() as receiver, FakeUpstream() as upstream:
        setup = configure(
            otlp_endpoint=receiver.endpoint,
            service_name="lucky-test",
            export_interval_ms=60_000,  # metrics are exported by force_flush, not by the timer
            set_global=False,
        )
        telemetry = Telemetry(
            capture_content=capture_content,
            tracer_provider=setup.tracer_provider,
            meter_provider=setup.meter_provider,
        )
        models = Models(
            {"providers": {"openai": {"apiBase": upstream.base_url, "apiKeyEnv": "OPENAI_API_KEY"}}},
            environ={"OPENAI_API_KEY": SECRET},
            telemetry=telemetry,
        )
        models.load_user_config("u1", USER_CONFIG)
        try:
            yield Pipeline(receiver, setup, upstream, models)
        finally:
            setup.shutdown()


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    with pipeline_of() as built:
        yield built


def _by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}


def _by_model(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    """Attempt spans by the model spec they ran (their names carry only the model name)."""
    return {span.attributes["lucky.model"]: span for span in spans}


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

    spans = _by_model(children)
    winner, loser = spans["openai/gpt-4.1-mini"], spans["openai/gpt-4.1-nano"]
    for child in (winner, loser):
        assert child.kind == "CLIENT"
        _assert_inside(child, root)
    assert winner.attributes["lucky.attempt.outcome"] == "won"
    assert winner.attributes[GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert winner.attributes[GEN_AI_USAGE_OUTPUT_TOKENS] == 10
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
    spans = _by_model(children)
    failed, won = spans["openai/gpt-4.1-mini"], spans["openai/gpt-4.1-nano"]
    assert failed.attributes["lucky.attempt.outcome"] == "failed"
    assert failed.attributes[ERROR_TYPE] == "BadRequestError"
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
    outcomes = {
        model: span.attributes["lucky.attempt.outcome"] for model, span in _by_model(children).items()
    }
    assert outcomes == {
        "openai/gpt-4.1-mini": "won",
        "openai/gpt-4.1-nano": "won",
        "openai/gpt-4o-mini": "lost",
    }
    assert root.attributes["lucky.consensus.agreement"] == pytest.approx(2 / 3)
    total = sum(span.attributes["lucky.cost.usd"] for span in children)
    assert total > 0
    assert root.attributes["lucky.cost.usd"] == pytest.approx(total)
    assert routing_of(response).cost_usd == pytest.approx(total)
    # each attempt span ends when its own answer came, not when the vote was counted
    spans = _by_model(children)
    assert spans["openai/gpt-4.1-mini"].end_ns < spans["openai/gpt-4.1-nano"].end_ns
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

    duration = pipeline.receiver.wait_for_metric(GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.kind == "histogram"
    assert duration.unit == "s"
    points = {
        (
            p.attributes[GEN_AI_REQUEST_MODEL],
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

    tokens = pipeline.receiver.wait_for_metric(GEN_AI_CLIENT_TOKEN_USAGE)
    by_type: dict[str, int] = {}
    for p in tokens.points:
        by_type[p.attributes[GEN_AI_TOKEN_TYPE]] = by_type.get(p.attributes[GEN_AI_TOKEN_TYPE], 0) + int(
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
            assert {GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, "lucky.strategy"} <= set(point.attributes)


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


# -- nesting: lucky's spans are the parents of whatever instruments the call ------------------------


_LITELLM_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


@contextlib.asynccontextmanager
async def litellm_callback(callback: Any) -> AsyncIterator[None]:
    """`callback` in `litellm.callbacks` for the block; afterwards litellm's callback lists are as
    they were (litellm copies callbacks into its internal lists, which a plain restore misses)."""
    await GLOBAL_LOGGING_WORKER.flush()  # earlier calls are logged before the callback joins
    saved = {name: list(getattr(litellm, name)) for name in _LITELLM_CALLBACK_LISTS}
    litellm.callbacks = [*litellm.callbacks, callback]
    try:
        yield
    finally:
        await GLOBAL_LOGGING_WORKER.flush()
        for name, value in saved.items():
            setattr(litellm, name, value)


class _CurrentSpanProbe(CustomLogger):
    """Stands in for instrumentation below lucky (httpx, an SDK): litellm calls it inside the call,
    where it opens a span of its own under whatever is current."""

    def __init__(self, tracer_provider: Any) -> None:
        super().__init__()
        self.tracer = tracer_provider.get_tracer("probe")

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.tracer.start_span("POST /chat/completions").end()


async def test_attempt_span_is_current_while_litellm_runs(pipeline: Pipeline) -> None:
    async with litellm_callback(_CurrentSpanProbe(pipeline.setup.tracer_provider)):
        await pipeline.models.complete("user:u1:safe", MESSAGES)
    _, [attempt] = pipeline.trace_of(count=1)
    [inner] = pipeline.receiver.wait_for_spans(1, where=lambda s: s.name == "POST /chat/completions")
    assert inner.parent_span_id == attempt.span_id
    assert inner.trace_id == attempt.trace_id


def test_lucky_complete_is_current_while_the_strategy_runs() -> None:
    from lucky_litellm.routing import Routing

    with OtlpReceiver() as receiver:
        setup = configure(otlp_endpoint=receiver.endpoint, metrics=False, set_global=False)
        telemetry = Telemetry(tracer_provider=setup.tracer_provider)
        request = telemetry.start_request(Routing(spec="s", strategy="first", models=["openai/gpt-4.1-mini"]))
        with request.use():
            current = otel_trace.get_current_span()
        assert current is request.span
        assert otel_trace.get_current_span() is not request.span
        setup.shutdown()


def _flush_until(pipeline: Pipeline, count: int, where: Any) -> list[ReceivedSpan]:
    """litellm logs from a background task or thread: flush until its spans have arrived."""
    deadline = time.monotonic() + 10
    while True:
        pipeline.flush()
        try:
            return pipeline.receiver.wait_for_spans(count, timeout=0.2, where=where)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


async def test_litellm_otel_callback_nests_under_lucky_and_records_no_content(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """litellm's own otel callback next to lucky (content capture off on both sides by default):
    its spans nest under lucky's attempt spans, it writes nothing onto lucky's spans (so no "ended
    span" warnings either), no prompt or answer text is exported, and lucky says once how to
    configure the two together."""
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig

    caplog.set_level(logging.WARNING)
    otel = OpenTelemetry(
        config=OpenTelemetryConfig(exporter="console"), tracer_provider=pipeline.setup.tracer_provider
    )
    pipeline.upstream.script("gpt-4.1-mini", Behavior(content="ANSWER-TEXT-2 the Nile"))
    messages = [{"role": "user", "content": "PROMPT-TEXT-1 which river?"}]
    async with litellm_callback(otel):
        answers = [await pipeline.models.complete("openai/gpt-4.1-mini", messages) for _ in range(2)]
        await GLOBAL_LOGGING_WORKER.flush()
        children = await asyncio.to_thread(_flush_until, pipeline, 2, lambda s: s.name == "litellm_request")
    assert [a.choices[0].message.content for a in answers] == ["ANSWER-TEXT-2 the Nile"] * 2

    attempts = pipeline.receiver.wait_for_spans(2, where=lambda s: s.name == "chat gpt-4.1-mini")
    assert {c.parent_span_id for c in children} == {a.span_id for a in attempts}
    for attempt in attempts:
        # only lucky's own attributes: litellm wrote nothing onto a span it did not create
        assert all(key.startswith(("gen_ai.", "lucky.", "server.")) for key in attempt.attributes)
        assert attempt.status_code == "UNSET"
    exported = repr(pipeline.receiver.spans)
    assert "PROMPT-TEXT-1" not in exported
    assert "ANSWER-TEXT-2" not in exported
    warnings = [r.getMessage() for r in caplog.records]
    assert not [w for w in warnings if "ended span" in w]
    assert len([w for w in warnings if "litellm's otel callback is installed" in w]) == 1


async def test_with_capture_on_litellm_otel_callback_keeps_its_content_and_still_nests() -> None:
    """How the two are configured together: capture on (here `capture_content=True`, or
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true for both) leaves litellm's callback
    recording content, under lucky's attempt span."""
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig

    with pipeline_of(capture_content=True) as built:
        otel = OpenTelemetry(
            config=OpenTelemetryConfig(exporter="console"), tracer_provider=built.setup.tracer_provider
        )
        async with litellm_callback(otel):
            await built.models.complete("openai/gpt-4.1-mini", [{"role": "user", "content": "PROMPT-3"}])
            await GLOBAL_LOGGING_WORKER.flush()
            [child] = await asyncio.to_thread(_flush_until, built, 1, lambda s: s.name == "litellm_request")
        assert otel.message_logging is True  # left as configured
        [attempt] = built.receiver.wait_for_spans(1, where=lambda s: s.name == "chat gpt-4.1-mini")
        assert child.parent_span_id == attempt.span_id
        assert "PROMPT-3" in repr(child.attributes)
        assert "PROMPT-3" in attempt.attributes[GEN_AI_INPUT_MESSAGES]


EXISTING_PROVIDER_SCRIPT = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

theirs = InMemorySpanExporter()
provider = TracerProvider()  # the application's (or litellm's otel callback's) provider, first
provider.add_span_processor(SimpleSpanProcessor(theirs))
trace.set_tracer_provider(provider)

from lucky_litellm.routing import Routing
from lucky_litellm.telemetry import Telemetry, configure

setup = configure(otlp_endpoint=sys.argv[1], metrics=False)
routing = Routing(spec="s", strategy="first", models=[])
Telemetry().start_request(routing).finish(routing)
assert setup.force_flush()
print(setup.added_to_existing, [span.name for span in theirs.get_finished_spans()])
"""


def test_configure_adds_its_exporter_to_a_provider_installed_before() -> None:
    with OtlpReceiver() as receiver:
        done = subprocess.run(
            [sys.executable, "-c", EXISTING_PROVIDER_SCRIPT, receiver.endpoint],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["True", "['lucky.complete']"]  # their exporter still gets it
        [span] = receiver.wait_for_spans(1)  # and so does lucky's
        assert span.name == "lucky.complete"


# -- GenAI semantic conventions -------------------------------------------------------------------


async def test_span_name_and_recommended_attributes_of_a_call(pipeline: Pipeline) -> None:
    pipeline.upstream.script("gpt-4.1-mini", Behavior(content="The Nile", finish_reason="length"))
    response = await pipeline.models.complete(
        "openai/gpt-4.1-mini", MESSAGES, temperature=0.2, max_tokens=50, top_p=0.9, seed=7, stop=["\n"]
    )
    _, [attempt] = pipeline.trace_of(count=1)
    assert attempt.name == f"{GenAiOperationNameValues.CHAT.value} gpt-4.1-mini"
    attributes = attempt.attributes
    assert attributes[GEN_AI_OPERATION_NAME] == GenAiOperationNameValues.CHAT.value
    assert attributes[GEN_AI_REQUEST_MODEL] == "gpt-4.1-mini"
    assert attributes[GEN_AI_REQUEST_TEMPERATURE] == pytest.approx(0.2)
    assert attributes[GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert attributes[GEN_AI_REQUEST_TOP_P] == pytest.approx(0.9)
    assert attributes[GEN_AI_REQUEST_SEED] == 7
    assert attributes[GEN_AI_REQUEST_STOP_SEQUENCES] == ("\n",)
    assert attributes[GEN_AI_RESPONSE_ID] == response.id
    assert attributes[GEN_AI_RESPONSE_MODEL] == "gpt-4.1-mini"
    assert attributes[GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert attributes[SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[SERVER_PORT] == pipeline.upstream.port
    assert GEN_AI_REQUEST_FREQUENCY_PENALTY not in attributes  # only what was passed

    for point in pipeline.points(GEN_AI_CLIENT_OPERATION_DURATION):
        assert point.attributes[SERVER_ADDRESS] == "127.0.0.1"
        assert point.attributes[SERVER_PORT] == pipeline.upstream.port


async def test_server_address_without_an_api_base_is_the_providers_endpoint() -> None:
    with pipeline_of() as built:
        models = Models(environ={"OPENAI_API_KEY": SECRET}, telemetry=built.models.telemetry)
        await models.complete("openai/gpt-4.1-mini", MESSAGES, mock_response="hello")
        _, [attempt] = built.trace_of(count=1)
        assert (attempt.attributes[SERVER_ADDRESS], attempt.attributes[SERVER_PORT]) == (
            "api.openai.com",
            443,
        )
        [point] = built.points(GEN_AI_CLIENT_OPERATION_DURATION)
        assert point.attributes[SERVER_ADDRESS] == "api.openai.com"


def test_provider_names_are_the_semconv_values() -> None:
    from lucky_litellm.providers import Target
    from lucky_litellm.routing import Attempt, Routing

    expected = {
        "gemini/gemini-2.5-flash": GenAiProviderNameValues.GCP_GEMINI,
        "vertex_ai/gemini-2.5-pro": GenAiProviderNameValues.GCP_VERTEX_AI,
        "bedrock/anthropic.claude-3-haiku": GenAiProviderNameValues.AWS_BEDROCK,
        "azure/my-gpt-4o": GenAiProviderNameValues.AZURE_AI_OPENAI,
        "mistral/mistral-small-latest": GenAiProviderNameValues.MISTRAL_AI,
        "xai/grok-3-mini": GenAiProviderNameValues.X_AI,
        "anthropic/claude-3-5-haiku-latest": GenAiProviderNameValues.ANTHROPIC,
        "groq/llama-3.3-70b": GenAiProviderNameValues.GROQ,
    }
    with OtlpReceiver() as receiver:
        setup = configure(otlp_endpoint=receiver.endpoint, metrics=False, set_global=False)
        telemetry = Telemetry(tracer_provider=setup.tracer_provider)
        routing = Routing(spec="x", strategy="race", models=list(expected))
        request = telemetry.start_request(routing)
        for spec in expected:
            attempt = Attempt(spec)
            target = Target(spec=spec, provider=spec.split("/")[0], litellm_model=spec)
            request.start_attempt(target, attempt).call_done(attempt)
        request.finish(routing)
        assert setup.force_flush()
        spans = receiver.wait_for_spans(len(expected), where=lambda s: s.name.startswith("chat "))
        names = {span.attributes["lucky.model"]: span.attributes[GEN_AI_PROVIDER_NAME] for span in spans}
        assert names == {spec: value.value for spec, value in expected.items()}
        setup.shutdown()


async def test_output_messages_carry_the_finish_reason() -> None:
    with pipeline_of(capture_content=True) as built:
        built.upstream.script("gpt-4.1-mini", Behavior(content="The Nile"))
        await built.models.complete("openai/gpt-4.1-mini", MESSAGES)
        _, [attempt] = built.trace_of(count=1)
        assert json.loads(attempt.attributes[GEN_AI_OUTPUT_MESSAGES]) == [
            {"role": "assistant", "parts": [{"type": "text", "content": "The Nile"}], "finish_reason": "stop"}
        ]
        assert (
            json.loads(attempt.attributes[GEN_AI_INPUT_MESSAGES])[0]["parts"][0]["content"]
            == (MESSAGES[0]["content"])
        )


async def test_streamed_attempt_has_response_model_output_and_chunk_timings() -> None:
    with pipeline_of(capture_content=True) as built:
        built.upstream.script(
            "gpt-4.1-mini",
            Behavior(content="the long Nile river", latency_ms=30, chunk_delay_ms=5, completion_tokens=4),
        )
        stream = await built.models.complete("openai/gpt-4.1-mini", MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        _, [attempt] = built.trace_of(count=1)
        attributes = attempt.attributes
        assert attributes[GEN_AI_RESPONSE_MODEL] == "gpt-4.1-mini"
        assert attributes[GEN_AI_RESPONSE_ID] == chunks[0].id
        assert attributes[GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
        assert 0.03 <= attributes[GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < attempt.duration_s
        assert json.loads(attributes[GEN_AI_OUTPUT_MESSAGES]) == [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "the long Nile river"}],
                "finish_reason": "stop",
            }
        ]
        [first] = built.points(GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK)
        assert first.count == 1 and 0.03 <= (first.sum or 0) < 2
        assert first.attributes[GEN_AI_RESPONSE_MODEL] == "gpt-4.1-mini"
        [per_chunk] = built.points(GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK)
        # one per chunk received after the first; the usage-only chunk is received, not handed on
        assert len(chunks) - 1 <= per_chunk.count <= len(chunks)


async def test_capture_follows_the_standard_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    with pipeline_of(capture_content=None) as built:
        await built.models.complete("openai/gpt-4.1-mini", MESSAGES)
        _, [attempt] = built.trace_of(count=1)
        assert MESSAGES[0]["content"] in attempt.attributes[GEN_AI_INPUT_MESSAGES]
        assert GEN_AI_OUTPUT_MESSAGES in attempt.attributes
    on = Models(environ={"OPENAI_API_KEY": SECRET, CAPTURE_CONTENT_ENV: "true"})
    off = Models(environ={"OPENAI_API_KEY": SECRET, CAPTURE_CONTENT_ENV: "false"})
    configured = Models({"telemetry": {"captureContent": False}}, environ={CAPTURE_CONTENT_ENV: "true"})
    assert (on.telemetry.capture_content, off.telemetry.capture_content) == (True, False)
    assert configured.telemetry.capture_content is False  # an explicit setting wins


async def test_cancelled_and_lost_attempts_are_told_apart_in_the_duration_metric(pipeline: Pipeline) -> None:
    pipeline.upstream.script("gpt-4.1-mini", Behavior(content="Nile", latency_ms=10))
    pipeline.upstream.script("gpt-4.1-nano", Behavior(content="nile", latency_ms=20))
    pipeline.upstream.script("gpt-4o-mini", Behavior(content="Amazon", latency_ms=10))
    await pipeline.models.complete("user:u1:vote", MESSAGES)  # gpt-4o-mini answers and loses the vote
    pipeline.upstream.script("gpt-4.1-nano", Behavior(content="slow", latency_ms=3_000))
    await pipeline.models.complete("user:u1:fast", MESSAGES)  # gpt-4.1-nano is cancelled
    outcomes = {
        (p.attributes[GEN_AI_REQUEST_MODEL], p.attributes["lucky.strategy"]): p.attributes[
            "lucky.attempt.outcome"
        ]
        for p in pipeline.points(GEN_AI_CLIENT_OPERATION_DURATION)
    }
    assert outcomes == {
        ("gpt-4.1-mini", "consensus"): "won",
        ("gpt-4.1-nano", "consensus"): "won",
        ("gpt-4o-mini", "consensus"): "lost",
        ("gpt-4.1-mini", "race"): "won",
        ("gpt-4.1-nano", "race"): "cancelled",
    }


def test_semconv_names_are_the_packages() -> None:
    from lucky_litellm.telemetry import semconv

    for name, value in vars(semconv).items():
        if name.isupper() and isinstance(value, str) and "." in value:
            assert value in SEMCONV_NAMES, name


# -- configure(): metrics off or elsewhere, environment, existing providers --------------------------


async def test_a_collector_without_metrics_gets_no_metric_exports() -> None:
    with OtlpReceiver(signals=("traces",)) as receiver, FakeUpstream() as upstream:
        setup = configure(otlp_endpoint=receiver.endpoint, metrics=False, set_global=False)
        telemetry = Telemetry(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
        models = Models(
            {"providers": {"openai": {"apiBase": upstream.base_url}}},
            environ={"OPENAI_API_KEY": SECRET},
            telemetry=telemetry,
        )
        await models.complete("openai/gpt-4.1-mini", MESSAGES)
        assert setup.force_flush()
        receiver.wait_for_spans(2)
        setup.shutdown()
        assert receiver.rejected == []
        assert {path for path, _ in receiver.requests} == {"/v1/traces"}


async def test_metrics_can_go_to_their_own_endpoint() -> None:
    with OtlpReceiver(signals=("traces",)) as traces, OtlpReceiver(signals=("metrics",)) as metrics:
        setup = configure(
            traces_endpoint=f"{traces.endpoint}/v1/traces",
            metrics_endpoint=f"{metrics.endpoint}/v1/metrics",
            set_global=False,
        )
        telemetry = Telemetry(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
        models = Models(environ={"OPENAI_API_KEY": SECRET}, telemetry=telemetry)
        await models.complete("openai/gpt-4.1-mini", MESSAGES, mock_response="hi")
        assert setup.force_flush()
        traces.wait_for_spans(2)
        metrics.wait_for_metric(GEN_AI_CLIENT_OPERATION_DURATION)
        setup.shutdown()
        assert traces.rejected == [] and metrics.rejected == []


def test_configure_follows_the_otel_exporter_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from lucky_litellm.routing import Routing

    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=blue")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        setup = configure(set_global=False)
        telemetry = Telemetry(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
        routing = Routing(spec="s", strategy="first", models=[])
        telemetry.start_request(routing).finish(routing)
        assert setup.force_flush()
        [span] = receiver.wait_for_spans(1)
        setup.shutdown()
        assert span.resource["service.name"] == "from-env"
        assert all(headers.get("x-team") == "blue" for headers in receiver.headers)
        assert setup.metric_reader is None


NOT_SDK_SCRIPT = """
import warnings
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider
trace.set_tracer_provider(NoOpTracerProvider())   # some other, non-SDK provider
from lucky_litellm.telemetry import configure
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    setup = configure(otlp_endpoint="http://127.0.0.1:9", metrics=False)
print([str(w.message) for w in caught])
assert setup.span_processor is None
"""


def test_configure_warns_when_the_global_provider_cannot_take_an_exporter() -> None:
    done = subprocess.run([sys.executable, "-c", NOT_SDK_SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "not an OpenTelemetry SDK TracerProvider" in done.stdout
    assert "set_global=False" in done.stdout


# -- bounded shutdown ------------------------------------------------------------------------------


def _dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connections are refused


def test_force_flush_and_shutdown_honour_their_timeouts_with_a_dead_endpoint() -> None:
    from lucky_litellm.routing import Routing

    setup = configure(otlp_endpoint=_dead_endpoint(), set_global=False)
    telemetry = Telemetry(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
    routing = Routing(spec="s", strategy="first", models=[])
    telemetry.start_request(routing).finish(routing)
    started = time.monotonic()
    assert setup.force_flush(500) is False
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    setup.shutdown(500)
    assert time.monotonic() - started < 1.5


EXIT_SCRIPT = """
import sys, time
from lucky_litellm.routing import Routing
from lucky_litellm.telemetry import Telemetry, configure
exporting = sys.argv[2] == "export"
# global providers, never shut down; without exporters for the run that measures a plain exit
configure(otlp_endpoint=sys.argv[1], export_interval_ms=200, traces=exporting, metrics=exporting)
telemetry = Telemetry()
for _ in range(20):
    routing = Routing(spec="s", strategy="first", models=[])
    telemetry.start_request(routing).finish(routing)
time.sleep(0.5)  # the exporters are now retrying against the dead endpoint
print(time.time(), flush=True)
"""


def _exit_latency(mode: str) -> float:
    """Seconds from the script's last line to its exit, as its parent sees it."""
    process = subprocess.Popen(
        [sys.executable, "-c", EXIT_SCRIPT, _dead_endpoint(), mode], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    last_call = float(process.stdout.readline())
    process.wait(timeout=60)
    assert process.returncode == 0
    return time.time() - last_call


def test_process_exits_promptly_although_the_collector_is_dead() -> None:
    from lucky_litellm.telemetry.setup import EXIT_TIMEOUT_MS

    plain = _exit_latency("plain")  # the interpreter's own teardown, on this machine, now
    exporting = _exit_latency("export")
    # exporting holds the exit up by at most EXIT_TIMEOUT_MS (an exporter retrying the dead
    # endpoint used to hold it for its whole retry loop); 1 s for the load to differ in between
    assert exporting - plain < EXIT_TIMEOUT_MS / 1000 + 1.0, (exporting, plain)
