"""OpenTelemetry spans and metrics for every call and every model attempt.

Only the OpenTelemetry *API* is used: spans and metrics go to whatever providers the application
installed (an OTLP exporter to a collector, the console, nothing at all). Without a provider the
API hands out non-recording spans, so tracing costs close to nothing. `configure()` is the
optional one-liner that installs the SDK with OTLP/HTTP exporters; the SDK is imported only there.

Span tree of one call::

    lucky.complete                      lucky.spec, lucky.strategy, lucky.experiment, lucky.rollout.path, ...
    ├── chat openai/gpt-4.1-mini        kind CLIENT, gen_ai.* semconv, lucky.attempt.outcome=won
    └── chat groq/llama-3.3-70b         lucky.attempt.outcome=cancelled (status unset: not an error)

Attempt spans end at the time their call finished, but carry the outcome the strategy decided
afterwards (won/lost), so a consensus vote does not stretch the spans of early answers. All
attempt attributes are written when the request finishes, from the final `Attempt` record, so a
stream's tokens (known only at its end) land on its span like any other call's.

Privacy: prompt and completion text are recorded only with `capture_content=True`, and every
text that reaches a span (error messages, stack traces, captured content) goes through
`errors.redact`, because provider errors may echo request data such as an API key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .errors import redact
from .routing import Attempt, Routing

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .providers import Target

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "AttemptTrace",
    "RequestTrace",
    "Telemetry",
    "TelemetrySetup",
    "configure",
]

_SCOPE = "lucky_litellm"
_STATUS_TEXT_LIMIT = 300

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""Bucket boundaries (seconds) the GenAI semantic conventions advise for operation duration."""

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
"""Bucket boundaries the GenAI semantic conventions advise for token usage."""


def _provider_of(target: Target) -> str:
    return target.provider or target.litellm_model.split("/", 1)[0]


def _model_name(litellm_model: str) -> str:
    """The model name the provider itself sees: litellm's routing prefix removed
    (``openrouter/google/gemini-2.5-flash-lite`` -> ``google/gemini-2.5-flash-lite``)."""
    return litellm_model.split("/", 1)[1] if "/" in litellm_model else litellm_model


def _server_of(target: Target) -> tuple[str | None, int | None]:
    """Host and port of a configured `api_base` (userinfo dropped: it could hold credentials)."""
    base = target.kwargs.get("api_base")
    if not isinstance(base, str) or not base:
        return None, None
    try:
        parts = urlsplit(base)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


@functools.lru_cache(maxsize=512)
def _metric_attributes(target: Target) -> dict[str, Any]:
    """Model and provider labels of a target, computed once per target (never mutated)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": _provider_of(target),
        "gen_ai.request.model": _model_name(target.litellm_model),
    }


@functools.lru_cache(maxsize=512)
def _span_attributes(target: Target) -> dict[str, Any]:
    """Attributes an attempt span starts with, computed once per target (never mutated)."""
    attributes: dict[str, Any] = {**_metric_attributes(target), "lucky.model": target.spec}
    host, port = _server_of(target)
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    return attributes


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _record_error(span: Span, error: BaseException) -> None:
    """`span.record_exception` without the leak: message and stack trace are redacted first."""
    span.set_attribute("error.type", _error_type(error))
    message = redact(str(error))
    stacktrace = redact("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    span.add_event(
        "exception",
        {
            "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
            "exception.message": message,
            "exception.stacktrace": stacktrace,
        },
    )
    span.set_status(Status(StatusCode.ERROR, message[:_STATUS_TEXT_LIMIT] or _error_type(error)))


def _input_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """`gen_ai.input.messages` in the semconv shape: role plus text parts, JSON-encoded."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts: list[dict[str, Any]] = [{"type": "text", "content": content}]
        elif isinstance(content, list):
            parts = [
                {"type": "text", "content": part.get("text", "")}
                if isinstance(part, Mapping) and part.get("type") == "text"
                else {"type": str(part.get("type", "unknown")) if isinstance(part, Mapping) else "unknown"}
                for part in content
            ]
        else:
            parts = []
        out.append({"role": str(message.get("role", "user")), "parts": parts})
    return redact(json.dumps(out, ensure_ascii=False))


def _output_messages(content: str) -> str:
    return redact(
        json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": content}]}], ensure_ascii=False
        )
    )


class Telemetry:
    """Creates spans and records metrics; one instance per `Models` registry.

    By default the global providers are used (whatever the application or `configure()`
    installed, even later: the API's proxies pick them up). Pass `tracer_provider` /
    `meter_provider` to send one registry's telemetry elsewhere, e.g. in tests.
    """

    def __init__(
        self,
        *,
        capture_content: bool = False,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.capture_content = capture_content
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._cost = meter.create_counter("lucky.cost.usd", unit="USD", description="Cost of model calls")

    def start_request(
        self, routing: Routing, messages: Sequence[Mapping[str, Any]] | None = None
    ) -> RequestTrace:
        """Open the `lucky.complete` span; `messages` are kept only when content capture is on."""
        attributes = {
            "lucky.spec": routing.spec,
            "lucky.strategy": routing.strategy,
            "lucky.rollout.path": routing.rollout_path,
        }
        if routing.experiment:
            attributes["lucky.experiment"] = routing.experiment
        if routing.request_id:
            attributes["lucky.request_id"] = routing.request_id
        span = self._tracer.start_span("lucky.complete", kind=SpanKind.INTERNAL, attributes=attributes)
        kept = messages if (self.capture_content and messages is not None) else None
        return RequestTrace(self, span, kept)

    def record_attempt(self, target: Target, attempt: Attempt, strategy: str, duration_s: float) -> None:
        """Metrics of one finished attempt. Labels are model, provider, strategy and outcome:
        bounded sets, never a user or request id."""
        attributes: dict[str, Any] = {**_metric_attributes(target), "lucky.strategy": strategy}
        if attempt.response_model:
            attributes["gen_ai.response.model"] = attempt.response_model
        duration_attributes = {**attributes, "lucky.attempt.outcome": attempt.outcome}
        if attempt.error_type:
            duration_attributes["error.type"] = attempt.error_type
        self._duration.record(duration_s, duration_attributes)
        if attempt.input_tokens is not None:
            self._tokens.record(attempt.input_tokens, {**attributes, "gen_ai.token.type": "input"})
        if attempt.output_tokens is not None:
            self._tokens.record(attempt.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if attempt.cost_usd:
            self._cost.add(attempt.cost_usd, attributes)


class AttemptTrace:
    """The `chat {model}` span of one attempt."""

    def __init__(self, owner: RequestTrace, target: Target, attempt: Attempt, span: Span) -> None:
        self.owner = owner
        self.target = target
        self.attempt = attempt
        self.span = span
        self.start_ns = time.time_ns()
        self.end_ns: int | None = None
        self.closed = False
        self._error_recorded = False

    def use(self) -> Any:
        """Context manager making this span current (without ending it), so spans created inside
        the call, e.g. by an httpx instrumentation, nest under the attempt."""
        return trace.use_span(
            self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    def call_done(self, attempt: Attempt, error: BaseException | None = None) -> None:
        """The call returned, failed or was cancelled: remember when, and the exception if any.

        A cancellation (a race loser) is not an error: it leaves the status unset."""
        self.end_ns = time.time_ns()
        if error is None or isinstance(error, asyncio.CancelledError) or not self.span.is_recording():
            return
        _record_error(self.span, error)
        self._error_recorded = True

    def close(self, strategy: str) -> None:
        """Write the final outcome, usage and cost, end the span and record the metrics."""
        if self.closed:
            return
        self.closed = True
        attempt = self.attempt
        if attempt.outcome == "pending":
            attempt.outcome = "lost"
        span = self.span
        if span.is_recording():
            attributes: dict[str, Any] = {
                "lucky.attempt.outcome": attempt.outcome,
                "lucky.cost.usd": attempt.cost_usd,
            }
            if attempt.response_model:
                attributes["gen_ai.response.model"] = attempt.response_model
            if attempt.input_tokens is not None:
                attributes["gen_ai.usage.input_tokens"] = attempt.input_tokens
            if attempt.output_tokens is not None:
                attributes["gen_ai.usage.output_tokens"] = attempt.output_tokens
            if attempt.tries > 1:
                attributes["lucky.attempt.tries"] = attempt.tries
            if self.owner.telemetry.capture_content and attempt.content is not None:
                attributes["gen_ai.output.messages"] = _output_messages(attempt.content)
            if attempt.error_type and not self._error_recorded:
                # e.g. a stream that won, then broke: the error is only known at the end
                attributes["error.type"] = attempt.error_type
                span.set_status(Status(StatusCode.ERROR, redact(attempt.error or attempt.error_type)))
            span.set_attributes(attributes)
        end_ns = self.end_ns or time.time_ns()
        span.end(end_time=end_ns)
        self.owner.telemetry.record_attempt(self.target, attempt, strategy, (end_ns - self.start_ns) / 1e9)


class RequestTrace:
    """The `lucky.complete` span of one call and the attempt spans under it."""

    def __init__(
        self, telemetry: Telemetry, span: Span, messages: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.context = trace.set_span_in_context(span)
        self.attempts: list[AttemptTrace] = []
        self._input_messages: str | None = None
        if messages is not None and span.is_recording():
            self._input_messages = _input_messages(messages)

    def start_attempt(self, target: Target, attempt: Attempt) -> AttemptTrace:
        attributes = _span_attributes(target)
        if self._input_messages is not None:
            attributes = {**attributes, "gen_ai.input.messages": self._input_messages}
        span = self.telemetry._tracer.start_span(
            f"chat {target.spec}", context=self.context, kind=SpanKind.CLIENT, attributes=attributes
        )
        attempt_trace = AttemptTrace(self, target, attempt, span)
        self.attempts.append(attempt_trace)
        return attempt_trace

    def skipped(self, attempt: Attempt) -> None:
        """A zero-length span for a model that was not called (disabled provider, over maxCost)."""
        provider, _, model = attempt.model.partition("/")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model or attempt.model,
            "lucky.model": attempt.model,
            "lucky.attempt.outcome": "skipped",
            "lucky.cost.usd": 0.0,
        }
        if attempt.error:
            attributes["lucky.skip.reason"] = redact(attempt.error)
        span = self.telemetry._tracer.start_span(
            f"chat {attempt.model}", context=self.context, kind=SpanKind.CLIENT, attributes=attributes
        )
        span.end()

    def finish(self, routing: Routing, error: BaseException | None = None) -> None:
        """Close every attempt span, then the request span with the request's totals."""
        for attempt_trace in self.attempts:
            attempt_trace.close(routing.strategy)
        span = self.span
        if span.is_recording():
            attributes: dict[str, Any] = {
                # strategy and path again: the rollout layer may have changed them after the start
                "lucky.strategy": routing.strategy,
                "lucky.rollout.path": routing.rollout_path,
                "lucky.models": list(routing.models),
                "lucky.cost.usd": routing.cost_usd,
                "lucky.attempts": len(routing.attempts),
            }
            if routing.experiment:
                attributes["lucky.experiment"] = routing.experiment
            if routing.winner:
                attributes["lucky.winner"] = routing.winner
            if routing.agreement is not None:
                attributes["lucky.consensus.agreement"] = routing.agreement
            if isinstance(error, asyncio.CancelledError):
                attributes["lucky.cancelled"] = True
            span.set_attributes(attributes)
            if error is not None and not isinstance(error, asyncio.CancelledError):
                _record_error(span, error)
        span.end()


# -- SDK setup ------------------------------------------------------------------------------------


@dataclass
class TelemetrySetup:
    """What `configure()` installed; keep it to flush or shut the exporters down."""

    tracer_provider: Any
    meter_provider: Any
    is_global: bool

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything buffered now (spans of finished calls, current metric values)."""
        spans = bool(self.tracer_provider.force_flush(timeout_millis))
        metrics_ok = bool(self.meter_provider.force_flush(timeout_millis))
        return spans and metrics_ok

    def shutdown(self) -> None:
        """Flush and stop the exporters; telemetry recorded afterwards is dropped."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _signal_url(endpoint: str, signal: str) -> str:
    """`http://host:4318` -> `http://host:4318/v1/traces`; a full signal URL is kept as is."""
    base = endpoint.rstrip("/")
    for known in ("/v1/traces", "/v1/metrics"):
        if base.endswith(known):
            base = base[: -len(known)]
    return f"{base}/v1/{signal}"


def configure(
    *,
    otlp_endpoint: str | None = None,
    service_name: str = "lucky-litellm",
    export_interval_ms: int = 10_000,
    headers: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> TelemetrySetup:
    """Install OpenTelemetry SDK providers exporting spans and metrics over OTLP/HTTP.

    `otlp_endpoint` is the collector's base URL (``http://localhost:4318``); without it the
    exporters follow the standard ``OTEL_EXPORTER_OTLP_*`` environment variables. With
    `set_global` the providers become the process-wide ones every `Models` uses (OpenTelemetry
    allows that once per process); with ``set_global=False`` pass the returned providers to
    `Telemetry(tracer_provider=..., meter_provider=...)` instead.

    Needs the ``otlp`` extra (``opentelemetry-exporter-otlp-proto-http``).
    """
    # Imported here so that users who bring their own providers never load the SDK.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name})
    header_dict = dict(headers) if headers else None
    span_exporter = OTLPSpanExporter(
        endpoint=_signal_url(otlp_endpoint, "traces") if otlp_endpoint else None, headers=header_dict
    )
    metric_exporter = OTLPMetricExporter(
        endpoint=_signal_url(otlp_endpoint, "metrics") if otlp_endpoint else None, headers=header_dict
    )
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=export_interval_ms)
    meter_provider = SdkMeterProvider(resource=resource, metric_readers=[reader])
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    return TelemetrySetup(tracer_provider, meter_provider, set_global)
