"""OpenTelemetry for lucky_litellm: spans and metrics per call and per attempt (`spans`), GenAI
semantic-convention attributes (`semconv`), coexistence with litellm's own ``otel`` callback
(`litellm_otel`) and the optional OTLP setup (`setup`, which alone imports the SDK)."""

from __future__ import annotations

from .semconv import DURATION_BUCKETS, TOKEN_BUCKETS
from .setup import TelemetrySetup, configure
from .spans import CAPTURE_CONTENT_ENV, AttemptTrace, RequestTrace, Telemetry, capture_from_env

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "AttemptTrace",
    "RequestTrace",
    "Telemetry",
    "TelemetrySetup",
    "capture_from_env",
    "configure",
]
