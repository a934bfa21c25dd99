"""OpenTelemetry spans and metrics for every call and every model attempt.

Only the OpenTelemetry *API* is used: spans and metrics go to whatever providers the application
installed (an OTLP exporter to a collector, the console, nothing at all). Without a provider the
API hands out non-recording spans, so tracing costs close to nothing.

Span tree of one call::

    lucky.complete                  lucky.spec, lucky.strategy, lucky.experiment, lucky.rollout.path, ...
    ├── chat gpt-4.1-mini           kind CLIENT, gen_ai.* semconv, lucky.attempt.outcome=won
    │   └── POST / litellm_request  whatever instruments the call (httpx, litellm's otel callback)
    └── chat llama-3.3-70b          lucky.attempt.outcome=cancelled (status unset: not an error)

`lucky.complete` is the current span while the strategy runs, and each attempt span while litellm
runs, so instrumentation below lucky nests where it belongs (see `litellm_otel` for litellm's own
callback, which needs one more step).

Attempt spans end at the time their call finished (a stream's at its end), but carry the outcome
the strategy decided afterwards (won/lost), so a consensus vote does not stretch the spans of
early answers. All attempt attributes are written when the request finishes, from the final
`Attempt` record, so a stream's tokens (known only at its end) land on its span like any other.

Privacy: prompt and completion text are recorded only with content capture on (``capture_content``
or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``), and every text that reaches a span
(error messages, stack traces, captured content) goes through `errors.redact`, because provider
errors may echo request data such as an API key.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..errors import redact
from ..routing import Attempt, Routing
from . import semconv as sc
from .litellm_otel import litellm_otel_active, prepare_litellm_call

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ..providers import Target

__all__ = ["CAPTURE_CONTENT_ENV", "AttemptTrace", "RequestTrace", "Telemetry", "capture_from_env"]

_SCOPE = "lucky_litellm"
_STATUS_TEXT_LIMIT = 300
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event", "event_only"})


def capture_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """The standard ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` switch (true/1 = on)."""
    value = (environ if environ is not None else os.environ).get(CAPTURE_CONTENT_ENV, "")
    return value.strip().lower() in _CAPTURE_ON


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _record_error(span: Span, error: BaseException) -> None:
    """`span.record_exception` without the leak: message and stack trace are redacted first."""
    span.set_attribute(sc.ERROR_TYPE, _error_type(error))
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


class _Current:
    """Makes a span current (without ending it) for a `with` block: cheaper than `use_span`, and
    a no-op for an invalid span, which would otherwise hide the caller's own current span."""

    __slots__ = ("_context", "_span", "_token")

    def __init__(self, span: Span, context: otel_context.Context | None = None) -> None:
        self._span = span
        self._context = context
        self._token: object | None = None

    def __enter__(self) -> None:
        if self._span.get_span_context().is_valid:
            context = self._context if self._context is not None else trace.set_span_in_context(self._span)
            self._token = otel_context.attach(context)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None


class _CostTotals:
    """The `lucky.cost.usd` counter, totalled here per label set and observed by the SDK when it
    collects (an asynchronous counter): adding is a dict update rather than one more SDK record
    per attempt (each copies, validates and hashes its labels, ~10 µs). Exported the same way: a
    monotonic sum per label set."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
        meter.create_observable_counter(
            "lucky.cost.usd", callbacks=[self._observe], unit="USD", description="Cost of model calls"
        )

    def add(self, amount: float, labels: sc.RecordAttributes) -> None:
        with self._lock:
            entry = self._totals.get(labels.cost_key)
            if entry is None:
                self._totals[labels.cost_key] = [labels.cost, amount]
            else:
                entry[1] += amount

    def _observe(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            return [Observation(total, attributes) for attributes, total in self._totals.values()]


class Telemetry:
    """Creates spans and records metrics; one instance per `Models` registry.

    By default the global providers are used (whatever the application or `configure()`
    installed, even later: the API's proxies pick them up). Pass `tracer_provider` /
    `meter_provider` to send one registry's telemetry elsewhere, e.g. in tests. `capture_content`
    None follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
    """

    def __init__(
        self,
        *,
        capture_content: bool | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.capture_content = capture_from_env() if capture_content is None else capture_content
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )
        self._first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self._per_chunk = meter.create_histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time per output chunk, recorded for each chunk after the first one",
            explicit_bucket_boundaries_advisory=list(sc.CHUNK_BUCKETS),
        )
        self._cost = _CostTotals(meter)
        self._hedges = meter.create_counter(
            "lucky.hedges",
            unit="{hedge}",
            description="Hedges of a race: started (fired) or refused by the hedge budget",
        )
        self._circuit_skips = meter.create_counter(
            "lucky.circuit.skips",
            unit="{attempt}",
            description="Attempts skipped because the model's circuit was open or half-open",
        )

    def start_request(
        self,
        routing: Routing,
        messages: Sequence[Mapping[str, Any]] | None = None,
        call_kwargs: Mapping[str, Any] | None = None,
    ) -> RequestTrace:
        """Open the `lucky.complete` span; `messages` are kept only when content capture is on,
        `call_kwargs` give the attempts' `gen_ai.request.*` attributes."""
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
        return RequestTrace(
            self,
            span,
            kept,
            call_kwargs,
            started=(routing.strategy, routing.rollout_path, routing.experiment),
        )


class _Streamed:
    """What the chunks of a streamed attempt said, and when they came."""

    __slots__ = (
        "finish_reasons",
        "first_chunk_s",
        "gaps",
        "last",
        "response_id",
        "response_model",
        "text",
        "tool_calls",
    )

    def __init__(self, first_chunk_s: float) -> None:
        self.first_chunk_s = first_chunk_s
        self.last = 0.0
        self.gaps: list[float] = []
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.text: dict[int, list[str]] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}

    def capture_delta(self, index: int, delta: Any) -> None:
        if delta is None:
            return
        text = getattr(delta, "content", None)
        if text:
            self.text.setdefault(index, []).append(text)
        for call in getattr(delta, "tool_calls", None) or ():
            calls = self.tool_calls.setdefault(index, {})
            entry = calls.setdefault(getattr(call, "index", len(calls)) or 0, {"function": {}})
            if getattr(call, "id", None):
                entry["id"] = call.id
            function = getattr(call, "function", None)
            if function is not None:
                if getattr(function, "name", None):
                    entry["function"]["name"] = function.name
                if getattr(function, "arguments", None):
                    entry["function"]["arguments"] = (
                        entry["function"].get("arguments", "") + function.arguments
                    )

    def attributes(self, capture: bool) -> dict[str, Any]:
        out: dict[str, Any] = {sc.RESPONSE_TIME_TO_FIRST_CHUNK: self.first_chunk_s}
        if self.response_id:
            out[sc.RESPONSE_ID] = str(self.response_id)
        if self.finish_reasons:
            out[sc.RESPONSE_FINISH_REASONS] = [self.finish_reasons[i] for i in sorted(self.finish_reasons)]
        if capture:
            indexes = sorted({*self.text, *self.tool_calls, *self.finish_reasons}) or [0]
            out[sc.OUTPUT_MESSAGES] = sc.output_messages(
                [
                    sc.output_message(
                        "".join(self.text.get(i, ())),
                        [self.tool_calls[i][k] for k in sorted(self.tool_calls.get(i, {}))],
                        self.finish_reasons.get(i),
                    )
                    for i in indexes
                ]
            )
        return out


class AttemptTrace:
    """The `chat {model}` span of one attempt, and what the attempt's metrics need."""

    def __init__(self, telemetry: Telemetry, target: Target, attempt: Attempt, span: Span) -> None:
        # the registry's Telemetry, not the RequestTrace that lists this attempt: a reference
        # back would make a cycle per request, freed only by the garbage collector, which then
        # rescans litellm's whole heap far more often than litellm alone makes it
        self.telemetry = telemetry
        self.target = target
        self.attempt = attempt
        self.span = span
        self.start_ns = time.time_ns()
        self.start_perf = time.perf_counter()
        self.end_ns: int | None = None
        self.closed = False
        self._error_recorded = False
        self._response: Any = None
        self._stream: _Streamed | None = None  # set by the first streamed chunk

    def use(self) -> _Current:
        """Context manager making this span current while the call runs (without ending it), so
        spans created inside the call, e.g. by an httpx instrumentation, nest under the attempt."""
        return _Current(self.span)

    def circuit_state(self, state: str) -> None:
        """The model is called although its circuit is not closed (a half-open probe, or every
        model was open): `lucky.circuit.state` on the span. Absent means closed."""
        if self.span.is_recording():
            self.span.set_attribute("lucky.circuit.state", state)

    def prepare(self, call_kwargs: dict[str, Any]) -> None:
        """Adjust litellm's call kwargs, in place, when litellm's own otel callback is installed:
        its spans go under this one, and it logs no content unless capture is on."""
        if litellm_otel_active():
            # an invalid (no-op) span as parent would make litellm's spans roots: none then
            span = self.span if self.span.get_span_context().is_valid else None
            prepare_litellm_call(span, self.telemetry.capture_content, call_kwargs)

    def chunk(self, chunk: Any) -> None:
        """One streamed chunk arrived: note its time, id, model, finish reason (and text when
        content is captured). Runs for every chunk, so it does little."""
        now = time.perf_counter()
        seen = self._stream
        if seen is None:
            seen = self._stream = _Streamed(now - self.start_perf)
        else:
            seen.gaps.append(now - seen.last)
        seen.last = now
        if seen.response_id is None:
            seen.response_id = getattr(chunk, "id", None)
        if seen.response_model is None:
            seen.response_model = getattr(chunk, "model", None)
        capture = self.telemetry.capture_content
        for choice in getattr(chunk, "choices", None) or ():
            index = getattr(choice, "index", 0) or 0
            reason = getattr(choice, "finish_reason", None)
            if reason:
                seen.finish_reasons[index] = str(reason)
            if capture:
                seen.capture_delta(index, getattr(choice, "delta", None))

    def call_done(self, attempt: Attempt, error: BaseException | None = None, response: Any = None) -> None:
        """The call returned, failed or was cancelled: remember when, the response (read when the
        request finishes) and the exception if any. A cancellation (a race loser) is not an
        error: it leaves the status unset."""
        self.end_ns = time.time_ns()
        self._response = response
        if error is None or isinstance(error, asyncio.CancelledError) or not self.span.is_recording():
            return
        _record_error(self.span, error)
        self._error_recorded = True

    def _response_attributes(self) -> dict[str, Any]:
        """gen_ai.response.* from the whole response or from the chunks of a stream."""
        out: dict[str, Any] = {}
        response = self._response
        capture = self.telemetry.capture_content
        if response is not None:
            response_id = getattr(response, "id", None)
            if response_id:
                out[sc.RESPONSE_ID] = str(response_id)
            reasons = sc.finish_reasons(response)
            if reasons:
                out[sc.RESPONSE_FINISH_REASONS] = reasons
            if capture:
                out[sc.OUTPUT_MESSAGES] = sc.output_messages(sc.response_output(response))
        elif self._stream is not None:
            out.update(self._stream.attributes(capture))
        elif capture and self.attempt.content is not None:
            out[sc.OUTPUT_MESSAGES] = sc.output_messages([sc.output_message(self.attempt.content, (), None)])
        return out

    def _server_fallback(self, base: Mapping[str, Any]) -> tuple[str, int | None] | None:
        """Host and port of the URL litellm actually called, when the target alone did not say."""
        if sc.SERVER_ADDRESS in base or self._response is None:
            return None
        hidden = getattr(self._response, "_hidden_params", None) or {}
        host, port = sc.server_of_url(hidden.get("api_base"))
        return (host, port) if host else None

    def close(self, strategy: str) -> None:
        """Write the final outcome, usage and cost, end the span and record the metrics."""
        if self.closed:
            return
        self.closed = True
        attempt = self.attempt
        if attempt.outcome == "pending":
            attempt.outcome = "lost"
        base = sc.metric_attributes(self.target)
        server = self._server_fallback(base)
        response_model = attempt.response_model or (self._stream.response_model if self._stream else None)
        span = self.span
        if span.is_recording():
            attributes: dict[str, Any] = {
                "lucky.attempt.outcome": attempt.outcome,
                "lucky.cost.usd": attempt.cost_usd,
                **self._response_attributes(),
            }
            if server is not None:
                attributes[sc.SERVER_ADDRESS], attributes[sc.SERVER_PORT] = server
            if response_model:
                attributes[sc.RESPONSE_MODEL] = response_model
            if attempt.input_tokens is not None:
                attributes[sc.USAGE_INPUT_TOKENS] = attempt.input_tokens
            if attempt.output_tokens is not None:
                attributes[sc.USAGE_OUTPUT_TOKENS] = attempt.output_tokens
            if attempt.tries > 1:
                attributes["lucky.attempt.tries"] = attempt.tries
            if attempt.error_type and not self._error_recorded:
                # e.g. a stream that won, then broke: the error is only known at the end
                attributes[sc.ERROR_TYPE] = attempt.error_type
                span.set_status(Status(StatusCode.ERROR, redact(attempt.error or attempt.error_type)))
            span.set_attributes(attributes)
        end_ns = self.end_ns or time.time_ns()
        span.end(end_time=end_ns)
        self._record_metrics(base, server, response_model, strategy, (end_ns - self.start_ns) / 1e9)

    def _record_metrics(
        self,
        base: dict[str, Any],
        server: tuple[str, int | None] | None,
        response_model: str | None,
        strategy: str,
        duration_s: float,
    ) -> None:
        """Labels are model, provider, server, strategy and outcome: bounded sets, never a user or
        request id. The outcome tells cancelled and lost attempts apart from answers. The label
        sets are built once per combination (`semconv.record_attributes`)."""
        telemetry = self.telemetry
        attempt = self.attempt
        labels = sc.record_attributes(
            base, server, strategy, response_model, attempt.outcome, attempt.error_type
        )
        telemetry._duration.record(duration_s, labels.outcome)
        if self._stream is not None:
            telemetry._first_chunk.record(self._stream.first_chunk_s, labels.outcome)
            for gap in self._stream.gaps:
                telemetry._per_chunk.record(gap, labels.outcome)
        if attempt.input_tokens is not None:
            telemetry._tokens.record(attempt.input_tokens, labels.input_tokens)
        if attempt.output_tokens is not None:
            telemetry._tokens.record(attempt.output_tokens, labels.output_tokens)
        if attempt.cost_usd:
            telemetry._cost.add(attempt.cost_usd, labels)


class RequestTrace:
    """The `lucky.complete` span of one call and the attempt spans under it."""

    def __init__(
        self,
        telemetry: Telemetry,
        span: Span,
        messages: Sequence[Mapping[str, Any]] | None = None,
        call_kwargs: Mapping[str, Any] | None = None,
        *,
        started: tuple[str, str, str | None] | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.context = trace.set_span_in_context(span)
        self._started = started
        """Strategy, rollout path and experiment the span started with: set again at the end only
        if changed."""
        self.attempts: list[AttemptTrace] = []
        self._extra: dict[str, Any] = {}
        if span.is_recording():
            if call_kwargs:
                self._extra = sc.request_attributes(call_kwargs)
            if messages is not None:
                self._extra[sc.INPUT_MESSAGES] = sc.input_messages(messages)

    def use(self) -> _Current:
        """Context manager making `lucky.complete` current while the strategy runs (the
        context made when the request started: the strategy runs in the same one)."""
        return _Current(self.span, self.context)

    def start_attempt(self, target: Target, attempt: Attempt) -> AttemptTrace:
        attributes = sc.span_attributes(target)
        if self._extra:
            attributes = {**attributes, **self._extra}
        span = self.telemetry._tracer.start_span(
            f"{sc.CHAT} {attributes[sc.REQUEST_MODEL]}",
            context=self.context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        attempt_trace = AttemptTrace(self.telemetry, target, attempt, span)
        self.attempts.append(attempt_trace)
        return attempt_trace

    def skipped(self, attempt: Attempt, *, circuit_state: str | None = None) -> None:
        """A zero-length span for a model that was not called (disabled provider, over maxCost,
        open circuit: then `lucky.circuit.state` says open or half-open)."""
        provider, _, model = attempt.model.partition("/")
        request_model = model or attempt.model
        attributes: dict[str, Any] = {
            sc.OPERATION_NAME: sc.CHAT,
            sc.PROVIDER_NAME: sc.provider_name(provider, attempt.model),
            sc.REQUEST_MODEL: request_model,
            "lucky.model": attempt.model,
            "lucky.attempt.outcome": "skipped",
            "lucky.cost.usd": 0.0,
        }
        if attempt.error:
            attributes["lucky.skip.reason"] = redact(attempt.error)
        if circuit_state is not None:
            attributes["lucky.circuit.state"] = circuit_state
            self.telemetry._circuit_skips.add(
                1, {"lucky.model": attempt.model, "lucky.circuit.state": circuit_state}
            )
        span = self.telemetry._tracer.start_span(
            f"{sc.CHAT} {request_model}", context=self.context, kind=SpanKind.CLIENT, attributes=attributes
        )
        span.end()

    def finish(self, routing: Routing, error: BaseException | None = None) -> None:
        """Close every attempt span, then the request span with the request's totals."""
        for attempt_trace in self.attempts:
            attempt_trace.close(routing.strategy)
        span = self.span
        if span.is_recording():
            attributes: dict[str, Any] = {
                "lucky.models": list(routing.models),
                "lucky.cost.usd": routing.cost_usd,
                "lucky.attempts": len(routing.attempts),
            }
            if self._started != (routing.strategy, routing.rollout_path, routing.experiment):
                # the rollout layer changed them after the start: every attribute the SDK is
                # handed costs a copy and a check, so unchanged ones are not set twice
                attributes["lucky.strategy"] = routing.strategy
                attributes["lucky.rollout.path"] = routing.rollout_path
                if routing.experiment:
                    attributes["lucky.experiment"] = routing.experiment
            if routing.winner:
                attributes["lucky.winner"] = routing.winner
            if routing.agreement is not None:
                attributes["lucky.consensus.agreement"] = routing.agreement
            if routing.hedge_delay_ms is not None:
                attributes["lucky.hedge.delay_ms"] = routing.hedge_delay_ms
                attributes["lucky.hedge.fired"] = routing.hedges
                attributes["lucky.hedge.refused"] = routing.hedges_refused
            if isinstance(error, asyncio.CancelledError):
                attributes["lucky.cancelled"] = True
            span.set_attributes(attributes)
            if error is not None and not isinstance(error, asyncio.CancelledError):
                _record_error(span, error)
        span.end()
        if routing.hedges or routing.hedges_refused:
            self._count_hedges(routing)

    def _count_hedges(self, routing: Routing) -> None:
        """`lucky.hedges`, labelled by the hedged plan's first model and fired/refused."""
        model = routing.models[0] if routing.models else ""
        if routing.hedges:
            self.telemetry._hedges.add(routing.hedges, {"lucky.model": model, "lucky.hedge.result": "fired"})
        if routing.hedges_refused:
            self.telemetry._hedges.add(
                routing.hedges_refused, {"lucky.model": model, "lucky.hedge.result": "refused"}
            )
