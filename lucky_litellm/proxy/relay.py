"""Streams through the proxy: the engine's relay into LiteLLM, and the guard on what leaves it.

`StreamRelay` (engine route) hands the engine's stream to LiteLLM's wrapper around a custom
provider, which takes litellm ``ModelResponseStream`` chunks as they are, with two catches:

* it stops reading at the first chunk without content once a finish_reason was seen, and the
  upstream's usage arrives in exactly such a chunk; the relay re-sends it as a
  ``GenericStreamingChunk`` carrying only the usage, which the wrapper accepts;
* the chunks from the finish_reason on are held back until the stream is known to have ended
  properly: when the upstream cut the answer, litellm's inner wrapper invents a closing "stop"
  chunk before the engine raises `IncompleteStreamError`, and a client must see the error.

`StreamGuard` (every route; the hook's streaming iterator) sits on the chunks the proxy sends:

* the experiment deadline holds over the whole body (past it: an SSE error event, 504);
* a stream the upstream cut (litellm invents a "stop" for it) or reset ends in an SSE error event
  (502), never in a clean finish, and a failure before the first byte becomes a plain error answer
  with ``x-should-retry: false``;
* each chunk's ``model`` names the model that answered, and the last chunks (from the one with
  the finish_reason on) carry
  ``lucky: {winner, cost_usd, route}`` (the cost of a stream is known only at its end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..calls import cost_from_tokens, finished_properly
from ..errors import IncompleteStreamError, LuckyError, StrategyTimeoutError
from ..routing import routing_of
from .errors import NO_RETRY, MidStreamError, http_error

if TYPE_CHECKING:
    from .context import RequestContext

__all__ = ["StreamError", "StreamGuard", "StreamRelay"]


class StreamRelay:
    """Async iterator over the engine's chunks for LiteLLM; `winner`/`cost_usd` once it ended."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
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
            (self._ready if self._tail is None else self._tail).append(_convert(chunk))
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Close the engine's stream (a client that went away must not keep it open)."""
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
        try:
            return routing_of(self._stream).cost_usd
        except LookupError:
            return 0.0


class StreamError(Exception):
    """What the guard raises into LiteLLM's SSE writer: it reads ``message``, ``type`` and
    ``status_code`` from the exception to build the error event."""

    def __init__(self, cause: BaseException) -> None:
        error = http_error(cause)
        self.message = error.message
        self.type = error.openai_type
        self.status_code = error.status
        self.code = str(error.status)
        self.lucky_error = error.error_type
        super().__init__(error.message)


class StreamGuard:
    """The hook's wrapper around the stream LiteLLM is about to send (see the module docstring)."""

    def __init__(self, response: Any, ctx: RequestContext) -> None:
        self._response = response
        self._source = _source_stream(response)
        self._iterator = response.__aiter__()
        self._ctx = ctx
        self._pending: deque[Any] = deque()
        self._holding = False
        """From the first finish_reason on, everything waits for the stream's proper end."""
        self._usage: Any = None
        self._chunks = 0

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            while True:
                try:
                    chunk = await self._next()
                except StopAsyncIteration:
                    break
                self._chunks += 1
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self._usage = usage
                self._restamp(chunk)
                if not self._holding and _finish_reason(chunk):
                    while self._pending:  # the answer so far is real; only its end waits
                        yield self._pending.popleft()
                    self._holding = True
                self._pending.append(chunk)
                while len(self._pending) > 1 and not self._holding:
                    yield self._pending.popleft()
            self._check_finished()
            self._settle()
            for chunk in self._pending:  # the finish chunk and what follows it (a usage chunk the
                _annotate(chunk, self._ctx)  # proxy drops when the client did not ask for usage)
            while self._pending:
                yield self._pending.popleft()
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            await self._close()
            failure = self._failure(exc)
            while self._pending and not self._holding:  # what was really said, up to the failure
                yield self._pending.popleft()
            raise failure from exc

    async def _next(self) -> Any:
        remaining = self._ctx.remaining_s()
        if remaining is None:
            return await self._iterator.__anext__()
        if remaining <= 0:
            raise asyncio.TimeoutError
        if hasattr(asyncio, "timeout"):  # Python 3.11+: no task per chunk
            async with asyncio.timeout(remaining):
                return await self._iterator.__anext__()
        return await asyncio.wait_for(self._iterator.__anext__(), remaining)  # pragma: no cover

    def _restamp(self, chunk: Any) -> None:
        winner = self._ctx.get("winner")
        if winner and hasattr(chunk, "model"):
            chunk.model = winner

    def _check_finished(self) -> None:
        """A deployment stream that ended without the upstream's finish_reason was cut: litellm's
        wrapper invented the "stop" the client would otherwise see. (The engine route checks this
        itself, before LiteLLM's wrapper ever sees the end.)"""
        if self._ctx.get("route") == "engine" or self._source is None:
            return
        if not finished_properly(self._source):
            raise IncompleteStreamError(str(self._ctx.get("winner") or "the upstream"), self._chunks)

    def _settle(self) -> None:
        ctx = self._ctx
        if ctx.get("route") == "engine" or ctx.plan is None:
            return  # the provider settled the engine's cost
        usage = self._usage
        if usage is None:
            hidden = getattr(self._response, "_hidden_params", None) or {}
            usage = hidden.get("usage")
        if usage is not None:
            target = ctx.plan.targets[0]
            prompt = getattr(usage, "prompt_tokens", 0) or 0
            completion = getattr(usage, "completion_tokens", 0) or 0
            ctx["cost_usd"] = cost_from_tokens(target.litellm_model, prompt, completion)

    def _failure(self, exc: Exception) -> StreamError:
        ctx = self._ctx
        if isinstance(exc, asyncio.TimeoutError | TimeoutError) or _is_timeout(exc):
            plan = ctx.plan
            cause: BaseException = StrategyTimeoutError(
                str(ctx.get("spec")), plan.timeout_s if plan is not None else 0.0, []
            )
        elif isinstance(exc, LuckyError):
            cause = exc
        else:
            inner = _lucky_cause(exc)
            cause = inner if inner is not None else MidStreamError(ctx.get("winner"), exc)
        ctx.error = cause
        if self._chunks == 0:  # nothing sent yet: the proxy answers with a plain error and our headers
            ctx.stream_headers.update(http_error(cause).headers or NO_RETRY)
        return StreamError(cause)

    async def _close(self) -> None:
        close = getattr(self._response, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def _source_stream(response: Any) -> Any:
    """The litellm stream that read the upstream, which knows whether the upstream finished.

    The Router hands the proxy a fallback wrapper around it, whose own finish fields stay unset;
    the wrapped stream is reachable only through the wrapper's generator, before it starts.
    None when it cannot be found (the check is then skipped, never guessed).
    """
    current = response
    for _ in range(4):
        generator = getattr(current, "_async_generator", None)
        frame = getattr(generator, "ag_frame", None)
        inner = frame.f_locals.get("model_response") if frame is not None else None
        if inner is None or inner is current:
            break
        current = inner
    if getattr(current, "_async_generator", None) is not None:
        return None  # still a Router wrapper: its finish fields say nothing
    return current if "received_finish_reason" in vars(current) else None


def _is_timeout(exc: BaseException) -> bool:
    return any(cls.__name__ in ("Timeout", "APITimeoutError", "ReadTimeout") for cls in type(exc).__mro__)


def _lucky_cause(exc: BaseException) -> LuckyError | None:
    """The engine's own error behind LiteLLM's wrapping of a provider failure, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, LuckyError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _annotate(chunk: Any, ctx: RequestContext) -> None:
    """Add ``lucky`` to a chunk. On a chunk with choices it goes into ``provider_specific_fields``
    too: the proxy's fast serialiser drops extra fields of plain text chunks, but not of those."""
    info = {"winner": ctx.get("winner"), "cost_usd": ctx.get("cost_usd"), "route": ctx.get("route")}
    with contextlib.suppress(Exception):  # a chunk type that refuses extra fields: headers still say it
        chunk.lucky = info
        if getattr(chunk, "choices", None):
            fields = dict(getattr(chunk, "provider_specific_fields", None) or {})
            fields["lucky"] = info
            chunk.provider_specific_fields = fields


def _finish_reason(chunk: Any) -> str | None:
    choices = getattr(chunk, "choices", None) or []
    return getattr(choices[0], "finish_reason", None) if choices else None


def _has_content(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    return bool(delta is not None and (getattr(delta, "content", None) or getattr(delta, "tool_calls", None)))


def _convert(chunk: Any) -> Any:
    usage = getattr(chunk, "usage", None)
    if usage is not None and not _has_content(chunk) and not _finish_reason(chunk):
        return _usage_chunk(usage)
    return chunk


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
