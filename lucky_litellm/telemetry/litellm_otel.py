"""Living next to litellm's own ``otel`` callback (``litellm.callbacks = ["otel"]``).

Left alone, that callback looks for the *current* span when a call ends. Since lucky makes its
attempt span current during the call (so that httpx spans nest), litellm would find it, decide
"a parent exists, keep the tree shallow", write some sixty attributes onto it, prompt and answer
text included, and set its status to OK; and as it does so from a background task, often after
the attempt span has ended, the SDK logs one "ended span" warning per attribute.

What lucky does instead, only when such a callback is installed:

* it hands litellm the attempt span through litellm's explicit channel for a parent,
  ``metadata["litellm_parent_otel_span"]`` (the proxy uses it for its request span): litellm then
  starts its own ``litellm_request`` span *under* the attempt span and never writes onto ours;
* with lucky's content capture off, it switches the callback's ``message_logging`` off (once, with
  one warning saying so and how to have content in both): litellm then redacts messages and
  answers for that callback and skips its ``raw_gen_ai_request`` span, which copies the raw
  request and response bodies and ignores per-request redaction. No prompt text leaves the
  process through litellm's callback either. A callback configured explicitly to capture
  (``OpenTelemetryConfig(capture_message_content=...)``) is left as it is, with a warning.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["PARENT_SPAN_KEY", "litellm_otel_active", "prepare_litellm_call"]

PARENT_SPAN_KEY = "litellm_parent_otel_span"

_logger = logging.getLogger("lucky_litellm.telemetry")

_OTEL_NAMES = frozenset({"otel", "opentelemetry", "arize", "arize_phoenix", "langfuse_otel", "langtrace"})
_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)
_lock = threading.Lock()
_quieted: set[int] = set()
_warned: set[str] = set()


def _is_otel_logger(callback: Any) -> bool:
    return _is_otel_type(type(callback))


_otel_types: dict[type, bool] = {}
"""Per class, once: `litellm_otel_active` asks about every installed callback on every call."""


def _is_otel_type(kind: type) -> bool:
    known = _otel_types.get(kind)
    if known is None:
        known = any(
            cls.__module__.startswith(("litellm.integrations.opentelemetry", "litellm.integrations.otel"))
            for cls in kind.__mro__
        )
        if len(_otel_types) < 1024:
            _otel_types[kind] = known
    return known


def _callbacks(litellm: Any) -> Iterator[Any]:
    for name in _CALLBACK_LISTS:
        callbacks: Iterable[Any] = getattr(litellm, name, None) or ()
        yield from callbacks


def litellm_otel_active() -> bool:
    """Whether a litellm OpenTelemetry callback is installed (a cheap scan of litellm's lists)."""
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return False
    for name in _CALLBACK_LISTS:
        for callback in getattr(litellm, name, None) or ():
            if (callback in _OTEL_NAMES) if isinstance(callback, str) else _is_otel_type(type(callback)):
                return True
    return False


def _otel_loggers(litellm: Any) -> list[Any]:
    """The callback instances: those listed, and those litellm built from names like "otel"."""
    found = {id(c): c for c in _callbacks(litellm) if not isinstance(c, str) and _is_otel_logger(c)}
    names = [c for c in _callbacks(litellm) if isinstance(c, str) and c in _OTEL_NAMES]
    if names:
        from litellm.litellm_core_utils import litellm_logging

        for name in names:
            # the instance litellm's own setup would create on this call (it reuses this one)
            logger = litellm_logging._init_custom_logger_compatible_class(
                name, internal_usage_cache=None, llm_router=None
            )
            if logger is not None:
                found.setdefault(id(logger), logger)
        for logger in litellm_logging._in_memory_loggers:
            if _is_otel_logger(logger):
                found.setdefault(id(logger), logger)
    return list(found.values())


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        _logger.warning(message)


def _keep_content_out() -> None:
    """Switch litellm's otel callbacks to no content, for lucky's capture-off setting."""
    litellm = sys.modules["litellm"]
    with _lock:
        for logger in _otel_loggers(litellm):
            if id(logger) in _quieted:
                continue
            _quieted.add(id(logger))
            explicit = getattr(logger, "_capture_mode_cached", None)
            if explicit not in (None, "NO_CONTENT"):
                _warn_once(
                    f"explicit-{id(logger)}",
                    "lucky_litellm: litellm's otel callback is configured to capture message content "
                    f"({explicit}) while lucky's content capture is off; its spans will carry prompts "
                    "and answers. Set OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT for both, "
                    "or telemetry.captureContent: true to capture in lucky's spans as well.",
                )
                continue
            if getattr(logger, "message_logging", False) is not False:
                logger.message_logging = False
                _warn_once(
                    "quieted",
                    "lucky_litellm: litellm's otel callback is installed; its spans now nest under "
                    "lucky's attempt spans, and since lucky's content capture is off it records no "
                    "message content either (its message_logging was switched off). To record content "
                    "in both, set OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true (or "
                    "telemetry.captureContent: true).",
                )


def prepare_litellm_call(span: Any, capture_content: bool, kwargs: dict[str, Any]) -> None:
    """Add to a call's `kwargs` what litellm's otel callback needs to stay under `span` (the
    caller's own `metadata` is kept), and keep content out of its spans when capture is off."""
    if span is not None:
        metadata = kwargs.get("metadata")
        kwargs["metadata"] = (
            {**metadata, PARENT_SPAN_KEY: span} if isinstance(metadata, dict) else {PARENT_SPAN_KEY: span}
        )
    if not capture_content:
        _keep_content_out()
