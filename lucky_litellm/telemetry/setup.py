"""`configure()`: the optional one-liner installing the SDK with OTLP/HTTP exporters.

The SDK and the exporters are imported only here, so applications that bring their own providers
never load them. What `configure()` does depends on what is already installed:

* nothing (the API's default proxies): it installs its own tracer and meter providers globally;
* an SDK provider (the application's, or the one litellm's ``otel`` callback installed): it adds
  its span processor / metric reader to that provider, so everything lands in one trace;
* a provider of another kind, which cannot take an exporter: it warns once, saying what to do, and
  leaves it in place (lucky's spans then go wherever that provider sends them).

Exports never hold a process hostage: `force_flush` and `shutdown` return within their timeout
even when the collector is unreachable (the exporter's own retry loop would take up to its 10 s
export timeout per signal), and at interpreter exit what `configure()` installed is shut down
within a second.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace

__all__ = ["EXIT_TIMEOUT_MS", "TelemetrySetup", "configure"]

_logger = logging.getLogger("lucky_litellm.telemetry")

EXIT_TIMEOUT_MS = 1000
"""How long exporting may hold up interpreter exit."""


def _in_threads(calls: list[Callable[[], Any]], timeout_millis: float) -> bool:
    """Run `calls` in parallel daemon threads; True if all finished (truthy) within the timeout.
    A call still blocked in an exporter's retry loop is left behind: it cannot keep the process."""
    results: list[bool] = []
    threads = []
    for call in calls:

        def run(call: Callable[[], Any] = call) -> None:
            try:
                results.append(call() is not False)
            except Exception:  # an exporter failing is reported as "not flushed", never raised
                _logger.debug("telemetry flush failed", exc_info=True)
                results.append(False)

        thread = threading.Thread(target=run, name="lucky-telemetry-flush", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout_millis / 1000
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return all(not thread.is_alive() for thread in threads) and len(results) == len(calls) and all(results)


@dataclass(eq=False)
class TelemetrySetup:
    """What `configure()` installed; keep it to flush or shut the exporters down.

    `tracer_provider` / `meter_provider` are the providers lucky's telemetry goes through (pass
    them to `Telemetry(...)` when ``set_global=False``); `added_to_existing` says whether they
    are providers that were installed before and merely received lucky's exporters.
    """

    tracer_provider: Any
    meter_provider: Any
    is_global: bool
    added_to_existing: bool = False
    span_processor: Any = None
    metric_reader: Any = None
    owns_tracer_provider: bool = False
    owns_meter_provider: bool = False
    _exporters: list[Any] = field(default_factory=list, repr=False)
    _shut_down: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export what is buffered now (spans of finished calls, current metric values); returns
        within `timeout_millis` whatever the collector does, False if not everything went out."""
        if self._shut_down:
            return False
        calls: list[Callable[[], Any]] = []
        if self.span_processor is not None:
            calls.append(lambda: self.span_processor.force_flush(timeout_millis))
        if self.metric_reader is not None:
            calls.append(lambda: self.metric_reader.force_flush(timeout_millis))
        return _in_threads(calls, timeout_millis)

    def shutdown(self, timeout_millis: int = 5_000) -> bool:
        """Flush and stop lucky's exporters (within `timeout_millis`); telemetry recorded afterwards
        is dropped. Providers that were there before `configure()` keep running without them."""
        if self._shut_down:
            return True
        self._shut_down = True
        calls: list[Callable[[], Any]] = []
        if self.span_processor is not None:
            if self.owns_tracer_provider:
                calls.append(self.tracer_provider.shutdown)
            else:
                calls.append(self.span_processor.shutdown)
        if self.metric_reader is not None:
            if self.owns_meter_provider:
                calls.append(lambda: self.meter_provider.shutdown(timeout_millis=timeout_millis))
            else:
                calls.append(self._detach_reader)
        done = _in_threads(calls, timeout_millis * 0.8)
        if not done:
            # an exporter is sleeping between retries: its shutdown interrupts that right away
            for exporter in self._exporters:
                try:
                    exporter.shutdown()
                except Exception:
                    _logger.debug("exporter shutdown failed", exc_info=True)
        return done

    def _detach_reader(self) -> None:
        try:
            self.meter_provider.remove_metric_reader(self.metric_reader)
        finally:
            self.metric_reader.shutdown()


_setups: list[TelemetrySetup] = []
"""Every setup, kept alive until exit: one dropped by its caller (`configure(...)` as a statement)
must still be flushed then, since its providers do not register their own exit handlers."""
_exit_hook_installed = False
_exit_lock = threading.Lock()


def _shutdown_at_exit() -> None:
    setups = [setup for setup in _setups if not setup._shut_down]
    if not setups:
        return
    budget = EXIT_TIMEOUT_MS / len(setups)
    for setup in setups:
        setup.shutdown(timeout_millis=int(budget))


def _register(setup: TelemetrySetup) -> None:
    global _exit_hook_installed
    with _exit_lock:
        _setups.append(setup)
        if not _exit_hook_installed:
            atexit.register(_shutdown_at_exit)
            _exit_hook_installed = True


def _signal_url(endpoint: str, signal: str) -> str:
    """`http://host:4318` -> `http://host:4318/v1/traces`; a full signal URL is kept as is."""
    base = endpoint.rstrip("/")
    for known in ("/v1/traces", "/v1/metrics"):
        if base.endswith(known):
            base = base[: -len(known)]
    return f"{base}/v1/{signal}"


def _disabled_by_env(signal: str) -> bool:
    """``OTEL_TRACES_EXPORTER=none`` / ``OTEL_METRICS_EXPORTER=none``, as the SDK's autoconfigure."""
    return os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower() == "none"


def _cannot_take(kind: str, provider: Any) -> None:
    message = (
        f"lucky_litellm.telemetry.configure(): the global {kind} is a {type(provider).__name__}, not an "
        f"OpenTelemetry SDK {kind}, so lucky's exporter cannot be added to it. lucky's telemetry goes "
        f"through it as it is. To export with lucky's settings instead, call configure() before "
        f"installing it, or use configure(set_global=False) and pass the returned providers to "
        f"Telemetry(tracer_provider=..., meter_provider=...)."
    )
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def configure(
    *,
    otlp_endpoint: str | None = None,
    traces_endpoint: str | None = None,
    metrics_endpoint: str | None = None,
    service_name: str | None = None,
    export_interval_ms: int = 10_000,
    export_timeout_ms: int | None = None,
    headers: Mapping[str, str] | None = None,
    traces: bool = True,
    metrics: bool = True,
    set_global: bool = True,
) -> TelemetrySetup:
    """Export lucky's spans and metrics over OTLP/HTTP.

    `otlp_endpoint` is the collector's base URL (``http://localhost:4318``); `traces_endpoint` /
    `metrics_endpoint` send one signal elsewhere (full URLs, e.g. ``.../v1/traces``). Unset, the
    exporters follow the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, per-signal
    endpoints, headers, timeout, compression); ``OTEL_SERVICE_NAME`` names the service, and
    ``OTEL_TRACES_EXPORTER=none`` / ``OTEL_METRICS_EXPORTER=none`` switch a signal off like
    ``traces=False`` / ``metrics=False`` (e.g. for a collector without a metrics endpoint).

    With `set_global` (the default) the exporters go to the process-wide providers, created if
    none is installed, added to it if an SDK provider is (see the module docstring); with
    ``set_global=False`` pass the returned providers to `Telemetry(...)` instead.

    Needs the ``otlp`` extra (``opentelemetry-exporter-otlp-proto-http``).
    """
    # Imported here so that users who bring their own providers never load the SDK.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import NoOpTracerProvider

    traces = traces and not _disabled_by_env("traces")
    metrics_on = metrics and not _disabled_by_env("metrics")
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "lucky-litellm"
    resource = Resource.create({"service.name": name})
    header_dict = dict(headers) if headers else None
    timeout_s = export_timeout_ms / 1000 if export_timeout_ms is not None else None
    setup = TelemetrySetup(NoOpTracerProvider(), NoOpMeterProvider(), set_global)

    if traces:
        url = traces_endpoint or (_signal_url(otlp_endpoint, "traces") if otlp_endpoint else None)
        span_exporter = OTLPSpanExporter(endpoint=url, headers=header_dict, timeout=timeout_s)
        setup._exporters.append(span_exporter)
        setup.span_processor = BatchSpanProcessor(span_exporter)
        existing = trace.get_tracer_provider() if set_global else None
        if isinstance(existing, SdkTracerProvider):
            existing.add_span_processor(setup.span_processor)
            setup.tracer_provider, setup.added_to_existing = existing, True
        elif existing is not None and not isinstance(existing, trace.ProxyTracerProvider):
            _cannot_take("TracerProvider", existing)
            setup.tracer_provider = existing
            setup.span_processor = None
        else:
            provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
            provider.add_span_processor(setup.span_processor)
            setup.tracer_provider, setup.owns_tracer_provider = provider, True
            if set_global:
                trace.set_tracer_provider(provider)

    if metrics_on:
        url = metrics_endpoint or (_signal_url(otlp_endpoint, "metrics") if otlp_endpoint else None)
        metric_exporter = OTLPMetricExporter(endpoint=url, headers=header_dict, timeout=timeout_s)
        setup._exporters.append(metric_exporter)
        reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=export_interval_ms)
        setup.metric_reader = reader
        existing_meter = otel_metrics.get_meter_provider() if set_global else None
        if isinstance(existing_meter, SdkMeterProvider):
            existing_meter.add_metric_reader(reader)
            setup.meter_provider, setup.added_to_existing = existing_meter, True
        elif existing_meter is not None and not _is_default_meter_provider(existing_meter):
            _cannot_take("MeterProvider", existing_meter)
            setup.meter_provider = existing_meter
            setup.metric_reader = None
        else:
            meter_provider = SdkMeterProvider(
                resource=resource, metric_readers=[reader], shutdown_on_exit=False
            )
            setup.meter_provider, setup.owns_meter_provider = meter_provider, True
            if set_global:
                otel_metrics.set_meter_provider(meter_provider)

    if setup.added_to_existing:
        _logger.info("lucky telemetry: exporters added to the OpenTelemetry SDK providers already installed")
    _register(setup)
    return setup


def _is_default_meter_provider(provider: Any) -> bool:
    """The API's placeholder before any provider is set (`_ProxyMeterProvider`)."""
    return type(provider).__name__ == "_ProxyMeterProvider"
