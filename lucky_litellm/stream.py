"""The stream handed to the caller for `stream=True`: the winning model's chunks, unchanged.

A `LuckyStream` owns the rest of its request's lease (slot, budget reservation, spans) and
settles it exactly once, whichever way the stream ends:

* read to the end, or ended by an error: when it happens;
* `async for ...: break`: `__aiter__` hands out an async generator, which asyncio closes as soon
  as the loop drops it, and closing it closes the stream;
* `await stream.aclose()` / `async with stream:`;
* dropped without any of these: a `weakref.finalize` safety net closes the upstream connection
  and settles when the stream is garbage-collected.

The experiment deadline covers the stream body: past it the stream raises `StrategyTimeoutError`
and closes the upstream connection. A stream cut by the upstream (litellm's wrapper then invents a
final "stop" chunk) ends in `IncompleteStreamError`, as does any other mid-stream failure: no raw
litellm exception reaches the caller. Whatever was streamed is billed: the upstream's usage when it
arrived, otherwise the prompt plus the completion seen so far, counted as
`litellm.stream_chunk_builder` would. The engine always asks for usage; the usage-only chunk is
passed on only when the caller asked for it (`stream_options={"include_usage": True}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .calls import PeekedStream, finished_properly
from .errors import IncompleteStreamError, LuckyError, StrategyTimeoutError, redact, scrub_exception
from .pricing import completion_tokens_of_text, cost_from_tokens, cost_of_usage, count_prompt_tokens

if TYPE_CHECKING:
    from .engine import Lease
    from .providers import Target
    from .routing import Attempt

__all__ = ["LuckyStream", "bill_partial_stream"]


def _text_of(chunk: Any) -> str:
    parts = []
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None) if delta is not None else None
        if content:
            parts.append(content)
        for call in (getattr(delta, "tool_calls", None) or ()) if delta is not None else ():
            function = getattr(call, "function", None)
            arguments = getattr(function, "arguments", None) if function is not None else None
            if arguments:
                parts.append(arguments)
    return "".join(parts)


def _usage_only(chunk: Any) -> bool:
    """A chunk that only carries usage: no choices, or choices without content or finish_reason."""
    if getattr(chunk, "usage", None) is None:
        return False
    for choice in getattr(chunk, "choices", None) or ():
        if getattr(choice, "finish_reason", None):
            return False
        delta = getattr(choice, "delta", None)
        if delta is not None and (
            getattr(delta, "content", None)
            or getattr(delta, "tool_calls", None)
            or getattr(delta, "function_call", None)
        ):
            return False
    return True


def bill_partial_stream(
    attempt: Attempt, target: Target, messages: Sequence[Mapping[str, Any]], chunks: Sequence[Any]
) -> None:
    """Bill a stream nobody read to the end (a streaming race's loser): prompt + `chunks`' text."""
    text = "".join(_text_of(chunk) for chunk in chunks)
    attempt.input_tokens = count_prompt_tokens(messages)
    attempt.output_tokens = completion_tokens_of_text(text)
    attempt.cost_usd = cost_from_tokens(target, attempt.input_tokens, attempt.output_tokens)


class _State:
    """Everything needed to finish the stream, kept apart from the `LuckyStream` object so the
    garbage-collection finalizer can finish it without keeping the stream alive."""

    def __init__(self, lease: Lease, peeked: PeekedStream, attempt: Attempt, target: Target) -> None:
        self.lease = lease
        self.inner = peeked.stream
        self.secrets = peeked.secrets
        self.trace = peeked.trace  # told about each chunk read here (the head's already were)
        self.head: deque[Any] = deque(peeked.head)
        self.attempt = attempt
        self.target = target
        self.text: list[str] = []
        self.chunks = 0
        self.usage: Any = None
        self.finished = False
        self.finalizer: weakref.finalize[Any, Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self.loop = asyncio.get_running_loop()

    def seen(self, chunk: Any) -> None:
        self.chunks += 1
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
        text = _text_of(chunk)
        if text:
            self.text.append(text)

    async def close_inner(self) -> None:
        await PeekedStream(self.inner, []).aclose()

    def finish(self, error: BaseException | None) -> None:
        """Bill the attempt and settle the lease: once, never raising."""
        if self.finished:
            return
        self.finished = True
        if self.finalizer is not None:
            self.finalizer.detach()
        attempt = self.attempt
        try:
            if self.usage is not None:
                attempt.input_tokens = getattr(self.usage, "prompt_tokens", None)
                attempt.output_tokens = getattr(self.usage, "completion_tokens", None)
                attempt.cost_usd = cost_of_usage(self.target, self.usage)
            else:  # closed early or cut: prompt + what was streamed
                attempt.input_tokens = count_prompt_tokens(self.lease.messages)
                attempt.output_tokens = completion_tokens_of_text("".join(self.text))
                attempt.cost_usd = cost_from_tokens(self.target, attempt.input_tokens, attempt.output_tokens)
            attempt.content = "".join(self.text)
            if error is not None and not isinstance(error, asyncio.CancelledError):
                attempt.error = redact(str(error))[:300]
                attempt.error_type = type(error).__qualname__
        finally:
            self.lease.settle(error)

    async def abandon(self) -> None:
        await self.close_inner()
        self.finish(None)


def _abandoned(state: _State) -> None:
    """The stream was garbage-collected unclosed: close its connection and settle, on its loop."""
    if state.finished:
        return
    loop = state.loop
    if loop is not None and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(state.abandon()))
            return
        except RuntimeError:  # the loop closed meanwhile
            pass
    state.finish(None)


class LuckyStream:
    """Async iterator (and async context manager) of litellm `ModelResponseStream` chunks;
    `routing_of(stream)` works on it."""

    def __init__(
        self,
        lease: Lease,
        peeked: PeekedStream,
        attempt: Attempt,
        target: Target,
        *,
        include_usage: bool = False,
        check_finish: bool = True,
    ) -> None:
        self._lease = lease
        self._state = state = _State(lease, peeked, attempt, target)
        self._include_usage = include_usage
        self._check_finish = check_finish
        self._hidden_params: dict[str, Any] = {}
        state.finalizer = weakref.finalize(self, _abandoned, state)
        state.finalizer.atexit = False  # at interpreter exit there is nothing left to give back

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                try:
                    chunk = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield chunk
        finally:  # also when the caller leaves the loop early: asyncio closes this generator
            await self.aclose()

    async def __anext__(self) -> Any:
        state = self._state
        while True:
            if state.finished:
                raise StopAsyncIteration
            chunk = state.head.popleft() if state.head else await self._next()
            state.seen(chunk)
            if not self._include_usage and _usage_only(chunk):
                continue
            return chunk

    async def _next(self) -> Any:
        state, lease = self._state, self._lease
        try:
            if lease.remaining() <= 0:
                raise asyncio.TimeoutError
            chunk = await _until(state.inner.__anext__(), lease.deadline)
            if state.trace is not None:
                state.trace.chunk(chunk)
            return chunk
        except StopAsyncIteration:
            if self._check_finish and not finished_properly(state.inner):
                error: BaseException = IncompleteStreamError(state.attempt.model, state.chunks)
                await self._fail(error)
                raise error from None
            state.finish(None)
            raise
        except asyncio.CancelledError as exc:
            await self._fail(exc)
            raise
        except LuckyError as exc:
            await self._fail(exc)
            raise
        except Exception as exc:
            if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and lease.remaining() <= 0:
                error = StrategyTimeoutError(lease.plan.spec, lease.plan.timeout_s, lease.routing.attempts)
                await self._fail(error)
                raise error from None
            scrub_exception(exc, state.secrets)
            error = IncompleteStreamError(state.attempt.model, state.chunks)
            error.__cause__ = exc
            await self._fail(error)
            raise error from exc

    async def _fail(self, error: BaseException) -> None:
        try:
            await self._state.close_inner()
        finally:
            self._state.finish(error)

    async def aclose(self) -> None:
        """Stop early: closes the upstream connection and settles the request (billing what was
        streamed so far)."""
        state = self._state
        if not state.finished:
            try:
                await state.close_inner()
            finally:
                state.finish(None)

    async def __aenter__(self) -> LuckyStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _until(awaitable: Any, deadline: float) -> Any:
    remaining = deadline - time.monotonic()
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(remaining):
            return await awaitable
    return await asyncio.wait_for(awaitable, remaining)  # pragma: no cover - Python 3.10
