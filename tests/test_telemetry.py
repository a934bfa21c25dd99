"""Spans and metrics of `Models.complete`, read back through the OpenTelemetry SDK's in-memory
exporter and metric reader (explicit providers per test: no global state shared between tests)."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TOKEN_TYPE,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)
from opentelemetry.semconv._incubating.metrics.gen_ai_metrics import (
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_TOKEN_USAGE,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind, StatusCode

from lucky_litellm import AllModelsFailedError, Models, routing_of
from lucky_litellm.providers import Target
from lucky_litellm.routing import Attempt, Routing
from lucky_litellm.telemetry import DURATION_BUCKETS, Telemetry
from lucky_litellm.testing import Behavior, FakeUpstream

SECRET = "sk-test-planted-secret-123456"
MESSAGES = [{"role": "user", "content": "What is the capital of Wakanda?"}]


@dataclass
class Traced:
    telemetry: Telemetry
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        [found] = [s for s in self.spans() if s.name == name]
        return found

    def points(self, metric_name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == metric_name:
                        found.extend(metric.data.data_points)
        return found


def _traced(capture_content: bool = False) -> Traced:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        capture_content=capture_content,
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    return Traced(telemetry, exporter, reader, tracer_provider)


@pytest.fixture
def traced() -> Traced:
    return _traced()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def _models(up: FakeUpstream, traced: Traced, **config: Any) -> Models:
    models = Models(
        {"providers": {"openai": {"apiBase": up.base_url, "apiKeyEnv": "OPENAI_API_KEY"}}, **config},
        environ={"OPENAI_API_KEY": SECRET},
        telemetry=traced.telemetry,
    )
    models.load_user_config(
        "u1",
        {
            "experiments": {
                "fast": {"strategy": "race", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]},
                "safe": {"strategy": "fallback", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]},
                "vote": {
                    "strategy": "consensus",
                    "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4o-mini"],
                },
                "cheap": {
                    "strategy": "fallback",
                    "providers": ["openai/gpt-4.1", "openai/gpt-4.1-nano"],
                    "maxCost": 0.0005,
                },
            },
            "defaults": {"experiment": "fast", "costLimit": 1.0},
        },
    )
    return models


def _children(traced: Traced) -> dict[str, ReadableSpan]:
    """Attempt spans by the model spec they ran (their names only carry the model name)."""
    return {s.attributes["lucky.model"]: s for s in traced.spans() if s.name != "lucky.complete"}


# -- span tree and attributes ------------------------------------------------------------------------


async def test_one_parent_span_and_one_client_child_per_attempt(
    upstream: FakeUpstream, traced: Traced
) -> None:
    upstream.script("gpt-4.1-mini", Behavior(content="Birnin Zana", prompt_tokens=12, completion_tokens=3))
    models = _models(upstream, traced)
    await models.complete("openai/gpt-4.1-mini", MESSAGES, request_id="r-1")

    parent = traced.span("lucky.complete")
    child = traced.span("chat gpt-4.1-mini")
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.kind is SpanKind.CLIENT
    attributes = dict(child.attributes or {})
    assert attributes[GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[GEN_AI_REQUEST_MODEL] == "gpt-4.1-mini"
    assert attributes[GEN_AI_RESPONSE_MODEL] == "gpt-4.1-mini"
    assert attributes[GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert attributes[GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert attributes["lucky.attempt.outcome"] == "won"
    assert attributes["lucky.cost.usd"] == pytest.approx(12 * 0.4e-6 + 3 * 1.6e-6)
    assert attributes[SERVER_ADDRESS] == "127.0.0.1"
    assert ERROR_TYPE not in attributes
    assert child.status.status_code is StatusCode.UNSET

    parent_attributes = dict(parent.attributes or {})
    assert parent_attributes["lucky.spec"] == "openai/gpt-4.1-mini"
    assert parent_attributes["lucky.strategy"] == "first"
    assert parent_attributes["lucky.rollout.path"] == "registry"
    assert parent_attributes["lucky.request_id"] == "r-1"
    assert parent_attributes["lucky.winner"] == "openai/gpt-4.1-mini"
    assert parent_attributes["lucky.cost.usd"] == pytest.approx(attributes["lucky.cost.usd"])


async def test_request_span_nests_under_the_callers_current_span(
    upstream: FakeUpstream, traced: Traced
) -> None:
    models = _models(upstream, traced)
    tracer = traced.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handle request") as outer:
        await models.complete("openai/gpt-4.1-mini", MESSAGES)
    parent = traced.span("lucky.complete")
    assert parent.parent is not None and parent.parent.span_id == outer.get_span_context().span_id


async def test_race_loser_span_ends_cancelled_not_as_an_error(upstream: FakeUpstream, traced: Traced) -> None:
    upstream.script("gpt-4.1-mini", Behavior(content="fast", latency_ms=20))
    upstream.script("gpt-4.1-nano", Behavior(content="slow", latency_ms=5_000))
    models = _models(upstream, traced)
    response = await models.complete("user:u1:fast", MESSAGES)
    assert routing_of(response).winner == "openai/gpt-4.1-mini"

    children = _children(traced)
    winner, loser = children["openai/gpt-4.1-mini"], children["openai/gpt-4.1-nano"]
    assert winner.attributes["lucky.attempt.outcome"] == "won"
    assert loser.attributes["lucky.attempt.outcome"] == "cancelled"
    assert loser.status.status_code is StatusCode.UNSET
    assert ERROR_TYPE not in loser.attributes
    assert [e.name for e in loser.events] == []
    assert loser.end_time is not None and loser.start_time is not None
    assert (loser.end_time - loser.start_time) / 1e9 < 2.0  # ended when the race was decided
    parent = traced.span("lucky.complete")
    assert parent.attributes["lucky.experiment"] == "fast"
    assert parent.attributes["lucky.strategy"] == "race"
    assert parent.status.status_code is StatusCode.UNSET


async def test_failed_fallback_attempt_records_error_type_and_exception(
    upstream: FakeUpstream, traced: Traced
) -> None:
    upstream.script("gpt-4.1-mini", Behavior(status=400, error_message="bad request"))
    upstream.script("gpt-4.1-nano", Behavior(content="ok"))
    models = _models(upstream, traced)
    await models.complete("user:u1:safe", MESSAGES)

    children = _children(traced)
    failed = children["openai/gpt-4.1-mini"]
    assert failed.attributes["lucky.attempt.outcome"] == "failed"
    assert failed.attributes[ERROR_TYPE] == "BadRequestError"
    assert failed.status.status_code is StatusCode.ERROR
    [event] = failed.events
    assert event.name == "exception"
    assert "bad request" in event.attributes["exception.message"]
    assert children["openai/gpt-4.1-nano"].attributes["lucky.attempt.outcome"] == "won"
    assert traced.span("lucky.complete").status.status_code is StatusCode.UNSET


async def test_all_models_failing_marks_the_request_span_as_error(
    upstream: FakeUpstream, traced: Traced
) -> None:
    upstream.script("gpt-4.1-mini", Behavior(status=400))
    upstream.script("gpt-4.1-nano", Behavior(status=400))
    models = _models(upstream, traced)
    with pytest.raises(AllModelsFailedError):
        await models.complete("user:u1:safe", MESSAGES)
    parent = traced.span("lucky.complete")
    assert parent.status.status_code is StatusCode.ERROR
    assert parent.attributes[ERROR_TYPE] == "AllModelsFailedError"
    assert "lucky.winner" not in parent.attributes


async def test_consensus_marks_agreeing_answers_won_and_the_dissenter_lost(
    upstream: FakeUpstream, traced: Traced
) -> None:
    # the dissenter answers first: once two agree, consensus is decided and a late answer cancelled
    upstream.script("gpt-4.1-mini", Behavior(content="Paris", latency_ms=200))
    upstream.script("gpt-4.1-nano", Behavior(content="paris.", latency_ms=200))
    upstream.script("gpt-4o-mini", Behavior(content="Lyon"))
    models = _models(upstream, traced)
    await models.complete("user:u1:vote", MESSAGES)

    outcomes = {name: span.attributes["lucky.attempt.outcome"] for name, span in _children(traced).items()}
    assert outcomes == {
        "openai/gpt-4.1-mini": "won",
        "openai/gpt-4.1-nano": "won",
        "openai/gpt-4o-mini": "lost",
    }
    assert traced.span("lucky.complete").attributes["lucky.consensus.agreement"] == pytest.approx(2 / 3)


async def test_model_over_max_cost_gets_a_skipped_span(upstream: FakeUpstream, traced: Traced) -> None:
    models = _models(upstream, traced)
    await models.complete("user:u1:cheap", MESSAGES, max_tokens=500)
    skipped = _children(traced)["openai/gpt-4.1"]
    assert skipped.attributes["lucky.attempt.outcome"] == "skipped"
    assert "maxCost" in skipped.attributes["lucky.skip.reason"]
    assert skipped.status.status_code is StatusCode.UNSET


async def test_stream_usage_lands_on_the_attempt_span_when_the_stream_ends(
    upstream: FakeUpstream, traced: Traced
) -> None:
    upstream.script("gpt-4.1-mini", Behavior(content="one two three", prompt_tokens=7, completion_tokens=3))
    models = _models(upstream, traced)
    stream = await models.complete("openai/gpt-4.1-mini", MESSAGES, stream=True)
    assert traced.spans() == []  # nothing ends before the caller has read the stream
    async for _ in stream:
        pass
    child = traced.span("chat gpt-4.1-mini")
    assert child.attributes[GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert child.attributes[GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert child.attributes["lucky.attempt.outcome"] == "won"


# -- content capture ---------------------------------------------------------------------------------


def _all_text(spans: list[ReadableSpan]) -> str:
    parts = []
    for span in spans:
        parts.append(span.name)
        parts.append(repr(dict(span.attributes or {})))
        parts.append(repr(span.status.description))
        for event in span.events:
            parts.append(event.name)
            parts.append(repr(dict(event.attributes or {})))
    return "\n".join(parts)


async def test_no_prompt_or_answer_text_by_default(upstream: FakeUpstream, traced: Traced) -> None:
    upstream.script("gpt-4.1-mini", Behavior(content="Birnin Zana is the capital"))
    models = _models(upstream, traced)
    await models.complete("openai/gpt-4.1-mini", MESSAGES)
    text = _all_text(traced.spans())
    assert "Wakanda" not in text
    assert "Birnin Zana" not in text


async def test_capture_content_records_messages_as_semconv_attributes(upstream: FakeUpstream) -> None:
    traced = _traced(capture_content=True)
    upstream.script("gpt-4.1-mini", Behavior(content="Birnin Zana"))
    models = _models(upstream, traced)
    await models.complete("openai/gpt-4.1-mini", MESSAGES)
    child = traced.span("chat gpt-4.1-mini")
    assert child.attributes[GEN_AI_INPUT_MESSAGES] == (
        '[{"role": "user", "parts": [{"type": "text", "content": "What is the capital of Wakanda?"}]}]'
    )
    assert json.loads(child.attributes[GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Birnin Zana"}], "finish_reason": "stop"}
    ]


# -- metrics -----------------------------------------------------------------------------------------


async def test_duration_histogram_uses_semconv_buckets_and_model_labels(
    upstream: FakeUpstream, traced: Traced
) -> None:
    upstream.script("gpt-4.1-mini", Behavior(content="fast", latency_ms=30))
    upstream.script("gpt-4.1-nano", Behavior(content="slow", latency_ms=3_000))
    models = _models(upstream, traced)
    await models.complete("user:u1:fast", MESSAGES, user_id="u1")

    points = {p.attributes[GEN_AI_REQUEST_MODEL]: p for p in traced.points(GEN_AI_CLIENT_OPERATION_DURATION)}
    winner = points["gpt-4.1-mini"]
    assert tuple(winner.explicit_bounds) == DURATION_BUCKETS
    assert winner.count == 1
    assert 0.03 <= winner.sum < 2.0
    assert dict(winner.attributes) == {
        SERVER_ADDRESS: "127.0.0.1",
        SERVER_PORT: upstream.port,
        GEN_AI_OPERATION_NAME: "chat",
        GEN_AI_PROVIDER_NAME: "openai",
        GEN_AI_REQUEST_MODEL: "gpt-4.1-mini",
        GEN_AI_RESPONSE_MODEL: "gpt-4.1-mini",
        "lucky.strategy": "race",
        "lucky.attempt.outcome": "won",
    }
    assert points["gpt-4.1-nano"].attributes["lucky.attempt.outcome"] == "cancelled"


async def test_token_usage_and_cost_metrics(upstream: FakeUpstream, traced: Traced) -> None:
    upstream.script("gpt-4.1-mini", Behavior(content="a", prompt_tokens=1000, completion_tokens=500))
    models = _models(upstream, traced)
    response = await models.complete("openai/gpt-4.1-mini", MESSAGES)
    await models.complete("openai/gpt-4.1-mini", MESSAGES)

    tokens = {p.attributes[GEN_AI_TOKEN_TYPE]: p for p in traced.points(GEN_AI_CLIENT_TOKEN_USAGE)}
    assert (tokens["input"].count, tokens["input"].sum) == (2, 2000)
    assert (tokens["output"].count, tokens["output"].sum) == (2, 1000)
    [cost] = traced.points("lucky.cost.usd")
    assert cost.value == pytest.approx(2 * routing_of(response).cost_usd)
    assert cost.value == pytest.approx(2 * (1000 * 0.4e-6 + 500 * 1.6e-6))


async def test_metrics_never_carry_a_user_or_request_id(upstream: FakeUpstream, traced: Traced) -> None:
    models = _models(upstream, traced)
    await models.complete("user:u1:fast", MESSAGES, user_id="u1", request_id="req-42")
    names = (GEN_AI_CLIENT_OPERATION_DURATION, GEN_AI_CLIENT_TOKEN_USAGE, "lucky.cost.usd")
    labels = [dict(p.attributes) for name in names for p in traced.points(name)]
    assert labels
    for attributes in labels:
        assert "u1" not in attributes.values()
        assert "req-42" not in attributes.values()
        assert not any("user" in key or "request_id" in key for key in attributes)


# -- secrets -----------------------------------------------------------------------------------------


async def test_planted_api_key_appears_in_no_span_log_or_error(
    upstream: FakeUpstream,
    traced: Traced,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The upstream rejects the key with a 401 that echoes it, as some providers do; neither our
    spans, our errors, nor any log line (litellm's included, at DEBUG) may show it."""
    for name in (
        "",
        "LiteLLM",
        "LiteLLM Router",
        "LiteLLM Proxy",
        "lucky_litellm",
        "httpx",
        "httpcore",
        "openai",
    ):
        caplog.set_level(logging.DEBUG, logger=name)
    upstream.script(
        "gpt-4.1-mini", Behavior(status=401, error_message=f"Incorrect API key provided: {SECRET}.")
    )
    upstream.script("gpt-4.1-nano", Behavior(content="fine"))
    models = _models(upstream, traced)
    await models.complete("openai/gpt-4.1-nano", MESSAGES)  # a successful call's logs too
    with pytest.raises(AllModelsFailedError) as caught:
        await models.complete("openai/gpt-4.1-mini", MESSAGES)

    error = caught.value
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert all(SECRET not in (a.error or "") for a in error.attempts)
    spans_text = _all_text(traced.spans())
    assert "Incorrect API key" in spans_text  # the error is there...
    assert SECRET not in spans_text  # ...without the key
    assert caplog.records
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert all(SECRET not in (record.exc_text or "") for record in caplog.records)
    out, err = capfd.readouterr()
    assert SECRET not in out
    assert SECRET not in err


# -- unit level: no engine ---------------------------------------------------------------------------


def _target(spec: str = "openai/gpt-4.1-mini") -> Target:
    return Target(spec=spec, provider="openai", litellm_model=spec, kwargs={"api_key": SECRET})


def test_exception_message_and_stacktrace_are_redacted(traced: Traced) -> None:
    routing = Routing(spec="openai/gpt-4.1-mini", strategy="first", models=["openai/gpt-4.1-mini"])
    request = traced.telemetry.start_request(routing)
    attempt = Attempt("openai/gpt-4.1-mini", outcome="failed", error_type="AuthenticationError")
    span = request.start_attempt(_target(), attempt)
    try:
        raise PermissionError(f"Authorization: Bearer {SECRET}")
    except PermissionError as exc:
        span.call_done(attempt, error=exc)
    request.finish(routing, None)

    child = traced.span("chat gpt-4.1-mini")
    [event] = child.events
    assert event.attributes["exception.type"] == "builtins.PermissionError"
    assert "Traceback" in event.attributes["exception.stacktrace"]
    assert SECRET not in _all_text(traced.spans())


def test_stream_that_breaks_after_winning_marks_its_span_as_error(traced: Traced) -> None:
    routing = Routing(spec="openai/gpt-4.1-mini", strategy="first", models=["openai/gpt-4.1-mini"])
    request = traced.telemetry.start_request(routing)
    attempt = Attempt("openai/gpt-4.1-mini")
    request.start_attempt(_target(), attempt)
    attempt.outcome = "won"
    attempt.error_type, attempt.error = "IncompleteStreamError", "stream ended after 2 chunks"
    request.finish(routing, RuntimeError("stream ended after 2 chunks"))

    child = traced.span("chat gpt-4.1-mini")
    assert child.attributes[ERROR_TYPE] == "IncompleteStreamError"
    assert child.status.status_code is StatusCode.ERROR


def test_without_an_sdk_nothing_is_recorded_and_nothing_breaks() -> None:
    telemetry = Telemetry(tracer_provider=trace.NoOpTracerProvider())
    routing = Routing(spec="openai/gpt-4.1-mini", strategy="first", models=["openai/gpt-4.1-mini"])
    request = telemetry.start_request(routing, MESSAGES)
    attempt = Attempt("openai/gpt-4.1-mini", latency_ms=1.0)
    request.start_attempt(_target(), attempt).call_done(attempt)
    request.finish(routing, None)
    assert not request.span.is_recording()
    assert attempt.outcome == "lost"  # never won: closed as lost


def test_capture_content_puts_the_prompt_on_every_attempt_span() -> None:
    traced = _traced(capture_content=True)
    routing = Routing(spec="openai/gpt-4.1-mini", strategy="first", models=["openai/gpt-4.1-mini"])
    request = traced.telemetry.start_request(
        routing, [{"role": "system", "content": f"key {SECRET}"}, *MESSAGES]
    )
    attempt = Attempt("openai/gpt-4.1-mini", outcome="won", content="Birnin Zana")
    request.start_attempt(_target(), attempt).call_done(attempt)
    request.finish(routing, None)

    child = traced.span("chat gpt-4.1-mini")
    assert "What is the capital of Wakanda?" in child.attributes[GEN_AI_INPUT_MESSAGES]
    assert '"role": "system"' in child.attributes[GEN_AI_INPUT_MESSAGES]
    assert "Birnin Zana" in child.attributes[GEN_AI_OUTPUT_MESSAGES]
    assert SECRET not in child.attributes[GEN_AI_INPUT_MESSAGES]  # even captured content is redacted
    assert GEN_AI_INPUT_MESSAGES not in traced.span("lucky.complete").attributes


async def test_traceback_of_the_error_does_not_show_an_echoed_key(
    upstream: FakeUpstream, traced: Traced
) -> None:
    upstream.script(
        "gpt-4.1-mini", Behavior(status=401, error_message=f"Incorrect API key provided: {SECRET}.")
    )
    models = _models(upstream, traced)
    with pytest.raises(AllModelsFailedError) as caught:
        await models.complete("openai/gpt-4.1-mini", MESSAGES)

    assert SECRET not in "".join(traceback.format_exception(caught.value))
    assert all(SECRET not in str(exc) for exc in caught.value.exceptions)
