"""A real OTLP/HTTP receiver for tests: what an OpenTelemetry collector would receive.

It listens on 127.0.0.1 (a free port) in a background thread, accepts ``POST /v1/traces`` and
``POST /v1/metrics`` as protobuf (optionally gzip-encoded, as the SDK exporters send them) or
OTLP/JSON, decodes them with ``opentelemetry-proto`` and keeps plain Python records::

    with OtlpReceiver() as receiver:
        setup = configure(otlp_endpoint=receiver.endpoint, set_global=False)
        ...
        spans = receiver.wait_for_spans(3, timeout=5)
        duration = receiver.wait_for_metric("gen_ai.client.operation.duration")

Waits are event-based (a condition variable notified on every request), never polling sleeps.
Needs ``opentelemetry-proto`` (a dev dependency), imported only when this module is.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["OtlpReceiver", "ReceivedEvent", "ReceivedMetric", "ReceivedPoint", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector saw it; ids are lowercase hex, `parent_span_id` None for roots."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str  # INTERNAL, CLIENT, SERVER, PRODUCER, CONSUMER
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: tuple[ReceivedEvent, ...]
    status_code: str  # UNSET, OK, ERROR
    status_message: str
    resource: dict[str, Any]
    scope: str

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True)
class ReceivedPoint:
    """A data point: `value` for sums and gauges; count/sum/buckets for histograms."""

    attributes: dict[str, Any]
    start_ns: int
    time_ns: int
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    unit: str
    description: str
    kind: str  # sum, gauge, histogram, exponential_histogram, summary
    points: tuple[ReceivedPoint, ...]
    resource: dict[str, Any]
    scope: str
    is_monotonic: bool | None = None
    received_at: float = field(default=0.0, compare=False)


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _any_value(pair.value) for pair in pairs}


def _decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                kind = trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_")
                status = trace_pb2.Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_")
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        kind=kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=tuple(
                            ReceivedEvent(e.name, e.time_unix_nano, _attributes(e.attributes))
                            for e in span.events
                        ),
                        status_code=status,
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


def _decode_metrics(request: ExportMetricsServiceRequest, received_at: float) -> list[ReceivedMetric]:
    out = []
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data") or "unknown"
                data = getattr(metric, kind) if kind != "unknown" else None
                points: list[ReceivedPoint] = []
                for point in getattr(data, "data_points", ()):
                    common = {
                        "attributes": _attributes(point.attributes),
                        "start_ns": point.start_time_unix_nano,
                        "time_ns": point.time_unix_nano,
                    }
                    if kind in ("sum", "gauge"):
                        number = point.WhichOneof("value")
                        points.append(
                            ReceivedPoint(**common, value=getattr(point, number) if number else None)
                        )
                    elif kind == "histogram":
                        points.append(
                            ReceivedPoint(
                                **common,
                                count=point.count,
                                sum=point.sum,
                                bucket_counts=tuple(point.bucket_counts),
                                explicit_bounds=tuple(point.explicit_bounds),
                            )
                        )
                    else:
                        points.append(ReceivedPoint(**common, count=getattr(point, "count", None)))
                out.append(
                    ReceivedMetric(
                        name=metric.name,
                        unit=metric.unit,
                        description=metric.description,
                        kind=kind,
                        points=tuple(points),
                        resource=resource,
                        scope=scope_metrics.scope.name,
                        is_monotonic=metric.sum.is_monotonic if kind == "sum" else None,
                        received_at=received_at,
                    )
                )
    return out


class OtlpReceiver:
    """OTLP/HTTP collector stand-in; use as a context manager (or `start()` / `stop()`)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, signals: Iterable[str] = ("traces", "metrics")
    ) -> None:
        """`signals` are the ones this collector accepts; others are answered 405, as a backend
        that only takes traces (e.g. Phoenix) answers a metrics export."""
        self._host = host
        self._port = port
        self.signals = frozenset(signals)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []
        self.requests: list[tuple[str, str | None]] = []
        """(path, content-encoding) of every export request received."""
        self.errors: list[str] = []
        """Requests that could not be decoded (answered 400)."""
        self.rejected: list[str] = []
        """Paths of requests for a signal this receiver does not accept (answered 405)."""
        self.headers: list[dict[str, str]] = []
        """Headers of every export request received, in order."""

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        server = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """Base URL for OTLP/HTTP exporters (they append /v1/traces and /v1/metrics)."""
        return f"http://{self._host}:{self.port}"

    # -- received data -----------------------------------------------------------------------------

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    @property
    def metrics(self) -> list[ReceivedMetric]:
        """Every metric batch received, oldest first (periodic exports repeat cumulative values)."""
        with self._changed:
            return list(self._metrics)

    def latest_metric(self, name: str) -> ReceivedMetric | None:
        with self._changed:
            for metric in reversed(self._metrics):
                if metric.name == name:
                    return metric
        return None

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()
            self._metrics.clear()
            self.requests.clear()
            self.rejected.clear()
            self.headers.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds (re-checked on every export received) or `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def wait_for_spans(
        self, count: int, timeout: float = 5.0, where: Callable[[ReceivedSpan], bool] | None = None
    ) -> list[ReceivedSpan]:
        """The received spans (matching `where`) once there are at least `count`; raises on timeout."""

        def matching() -> list[ReceivedSpan]:
            return [s for s in self._spans if where is None or where(s)]

        if not self.wait_for(lambda: len(matching()) >= count, timeout):
            raise TimeoutError(
                f"received {len(matching())} matching spans, expected {count} within {timeout}s"
            )
        with self._changed:
            return matching()

    def wait_for_metric(
        self, name: str, timeout: float = 5.0, where: Callable[[ReceivedMetric], bool] | None = None
    ) -> ReceivedMetric:
        """The latest batch of metric `name` (satisfying `where`); raises on timeout."""

        def latest() -> ReceivedMetric | None:
            for metric in reversed(self._metrics):
                if metric.name == name and (where is None or where(metric)):
                    return metric
            return None

        if not self.wait_for(lambda: latest() is not None, timeout):
            raise TimeoutError(f"metric {name!r} not received within {timeout}s")
        with self._changed:
            found = latest()
        assert found is not None
        return found

    # -- called by the HTTP handler --------------------------------------------------------------

    def _store(
        self,
        path: str,
        encoding: str | None,
        spans: list[ReceivedSpan],
        metrics: list[ReceivedMetric],
        headers: dict[str, str],
    ) -> None:
        with self._changed:
            self.requests.append((path, encoding))
            self.headers.append(headers)
            self._spans.extend(spans)
            self._metrics.extend(metrics)
            self._changed.notify_all()

    def _rejected(self, path: str) -> None:
        with self._changed:
            self.rejected.append(path)
            self._changed.notify_all()

    def _failed(self, reason: str) -> None:
        with self._changed:
            self.errors.append(reason)
            self._changed.notify_all()


_SIGNALS: dict[str, tuple[type[Message], type[Message]]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _handler_for(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            signal = _SIGNALS.get(path)
            if signal is None:
                self._reply(404, b"unknown path", "text/plain")
                return
            if path.rsplit("/", 1)[-1] not in receiver.signals:
                receiver._rejected(path)
                self._reply(405, b"method not allowed", "text/plain")
                return
            request_type, response_type = signal
            encoding = self.headers.get("Content-Encoding")
            is_json = (self.headers.get("Content-Type") or "").startswith("application/json")
            try:
                raw = _decompress(body, encoding)
                request = request_type()
                if is_json:
                    json_format.Parse(raw.decode("utf-8"), request)
                else:
                    request.ParseFromString(raw)
            except (DecodeError, ValueError, OSError, json_format.ParseError) as exc:
                receiver._failed(f"{path}: {exc}")
                self._reply(400, str(exc).encode(), "text/plain")
                return
            if isinstance(request, ExportTraceServiceRequest):
                receiver._store(path, encoding, _decode_spans(request), [], dict(self.headers.items()))
            else:
                assert isinstance(request, ExportMetricsServiceRequest)
                receiver._store(
                    path, encoding, [], _decode_metrics(request, time.time()), dict(self.headers.items())
                )
            if is_json:
                self._reply(200, json_format.MessageToJson(response_type()).encode(), "application/json")
            else:
                self._reply(200, response_type().SerializeToString(), "application/x-protobuf")

        def _reply(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler
