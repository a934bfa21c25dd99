"""OpenAI wire shapes the fake upstream sends: completions, stream chunks, errors.

Kept apart from the server so the bytes can be checked without a socket, and kept small:
only the fields litellm and the openai SDK read are produced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

try:  # orjson ships with litellm's proxy extras; it halves encoding time in benchmarks.
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - depends on the environment

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)


__all__ = [
    "DONE",
    "MALFORMED_BODY",
    "MALFORMED_ERROR_PAGE",
    "MALFORMED_EVENT",
    "chunk_event",
    "completion",
    "count_prompt_tokens",
    "dumps",
    "error_body",
    "loads",
    "split_words",
    "usage",
]

DONE = b"data: [DONE]\n\n"
MALFORMED_BODY = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"index": 0, '
MALFORMED_EVENT = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": \n\n'
MALFORMED_ERROR_PAGE = b"<html><body><h1>Bad Gateway</h1></body></html>"

_WORDS = re.compile(r"\s*\S+")

_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", "request_timeout"),
    409: ("conflict", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
}


def split_words(text: str) -> list[str]:
    """Word chunks that concatenate back to `text` (leading spaces stay on each word)."""
    pieces = _WORDS.findall(text)
    consumed = sum(map(len, pieces))
    if consumed < len(text):  # trailing whitespace, or text that is whitespace only
        if pieces:
            pieces[-1] += text[consumed:]
        else:
            pieces = [text]
    return pieces


def _text_of(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]


def count_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Rough input tokens: words of every message plus a few per message, like OpenAI's overhead."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 1
    total = 0
    for message in messages:
        if isinstance(message, Mapping):
            total += 3 + sum(len(text.split()) for text in _text_of(message.get("content")))
    return max(total, 1)


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return body


def completion(
    *,
    call_id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, Any],
    empty_choices: bool = False,
) -> bytes:
    choices: list[dict[str, Any]] = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
    ]
    return dumps(
        {
            "id": call_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
            "choices": [] if empty_choices else choices,
            "usage": usage,
        }
    )


def chunk_event(
    *,
    call_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> bytes:
    """One SSE event. `delta=None` with `usage` gives the usage-only chunk (empty choices)."""
    payload: dict[str, Any] = {
        "id": call_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + dumps(payload) + b"\n\n"


def error_body(status: int, message: str | None) -> bytes:
    kind, code = _ERROR_KINDS.get(status, ("server_error", "server_error"))
    text = message or f"fake upstream error {status}"
    return dumps({"error": {"message": text, "type": kind, "param": None, "code": code}})
