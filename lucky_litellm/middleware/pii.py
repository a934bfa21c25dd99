"""`redact_pii`: emails, phone numbers and API keys in the messages are replaced before they leave.

The model still sees that something was there (``[EMAIL]``, ``[PHONE]``, ``[API_KEY]``), so an
answer stays coherent; the caller's own message list is never modified (a copy is sent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import CallNext, Request

__all__ = ["PATTERNS", "redact_pii", "redact_text"]

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "[API_KEY]",
        re.compile(r"\b(?:sk|pk|rk|gsk|xai)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{16,}\b|\bAIza[0-9A-Za-z_\-]{30,}"),
    ),
    ("[EMAIL]", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
    ("[PHONE]", re.compile(r"(?<![\w+])\+?\d[\d\s().\-]{7,}\d(?!\w)")),
)
"""Keys first: a key may contain what looks like a phone number."""


def redact_text(text: str) -> str:
    for replacement, pattern in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_message(message: Mapping[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": redact_text(content)}
    if isinstance(content, list):
        parts = [
            {**part, "text": redact_text(part["text"])}
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
        return {**message, "content": parts}
    return dict(message)


async def redact_pii(request: Request, call_next: CallNext) -> Any:
    """Middleware: send the messages with PII replaced by placeholders."""
    request.messages = [_redact_message(message) for message in request.messages]
    return await call_next(request)
