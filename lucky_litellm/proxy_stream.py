"""Relay of a streamed answer from the engine to the proxy's own stream wrapper.

LiteLLM's wrapper around a custom provider's stream takes litellm ``ModelResponseStream`` chunks
as they are (content, tool calls, reasoning all survive), with two catches the relay handles:

* it stops reading at the first chunk without content once a finish_reason was seen, and the
  upstream's usage arrives in exactly such a chunk; the relay re-sends it as a
  ``GenericStreamingChunk`` carrying only the usage, which the wrapper accepts, so the client gets
  the upstream's token counts rather than the wrapper's estimate;
* the chunks from the finish_reason on are held back until the stream is known to have ended
  properly: when the upstream cut the answer, litellm's inner wrapper invents a closing "stop"
  chunk (and a usage estimate) before the engine raises `IncompleteStreamError`, and a client must
  see the error, not a clean stop.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

from .calls import cost_from_tokens
from .routing import routing_of

__all__ = ["StreamRelay"]


class StreamRelay:
    """Async iterator over the chunks to hand to LiteLLM; `winner`/`cost_usd` once it ended.

    `priced_model` is set for the legacy path, whose plain litellm stream nobody prices: the relay
    prices it from the usage it saw. The engine's `LuckyStream` settles its own cost.
    """

    def __init__(self, stream: Any, priced_model: str | None = None) -> None:
        self._stream = stream
        self._priced_model = priced_model
        self._usage: Any = None
        self._ready: deque[Any] = deque()
        self._tail: list[Any] | None = None
        """Chunks from the first finish_reason on, released only when the stream ends cleanly."""
        self._ended = False
        self._closed = False

    def __aiter__(self) -> StreamRelay:
        return self

    async def __anext__(self) -> Any:
        while not self._ready:
            if self._ended:
                raise StopAsyncIteration
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._ended = True
                self._ready.extend(self._tail or ())
                continue
            if self._tail is None and _finish_reason(chunk):
                self._tail = []
            (self._ready if self._tail is None else self._tail).append(self._convert(chunk))
        return self._ready.popleft()

    def _convert(self, chunk: Any) -> Any:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage
            if not _has_content(chunk) and not _finish_reason(chunk):
                return _usage_chunk(usage)
        return chunk

    async def aclose(self) -> None:
        """Close the upstream stream (a client that went away must not keep it open)."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing must not hide how the stream ended
                await close()

    @property
    def winner(self) -> str | None:
        try:
            return routing_of(self._stream).winner
        except LookupError:
            return None

    @property
    def cost_usd(self) -> float:
        if self._priced_model is not None:
            if self._usage is None:
                return 0.0
            prompt = getattr(self._usage, "prompt_tokens", 0) or 0
            completion = getattr(self._usage, "completion_tokens", 0) or 0
            return cost_from_tokens(self._priced_model, prompt, completion)
        try:
            return routing_of(self._stream).cost_usd
        except LookupError:
            return 0.0


def _finish_reason(chunk: Any) -> str | None:
    choices = getattr(chunk, "choices", None) or []
    return getattr(choices[0], "finish_reason", None) if choices else None


def _has_content(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    return bool(delta is not None and (getattr(delta, "content", None) or getattr(delta, "tool_calls", None)))


def _usage_chunk(usage: Any) -> dict[str, Any]:
    block = {
        "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
        "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
        "total_tokens": getattr(usage, "total_tokens", 0) or 0,
    }
    return {
        "text": "",
        "tool_use": None,
        "is_finished": False,
        "finish_reason": "",
        "usage": block,
        "index": 0,
    }
