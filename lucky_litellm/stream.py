"""The stream handed to the caller for `stream=True`: the winning model's chunks, unchanged.

It exists for two reasons: a stream the upstream cut mid-answer must end in an error instead of
looking complete (litellm's wrapper invents a final "stop" chunk), and the request's bookkeeping
(cost, budget, concurrency slot, spans) can only be settled when the stream ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .calls import PeekedStream, cost_from_tokens, finished_properly
from .errors import IncompleteStreamError, redact, scrub_exception
from .routing import Attempt

__all__ = ["LuckyStream"]


class LuckyStream:
    """Async iterator of litellm `ModelResponseStream` chunks; `routing_of(stream)` works on it."""

    def __init__(
        self,
        peeked: PeekedStream,
        attempt: Attempt,
        litellm_model: str,
        on_end: Callable[[BaseException | None], None],
        *,
        check_finish: bool = True,
    ) -> None:
        self._inner = peeked.stream
        self._secrets = peeked.secrets
        self._head: list[Any] = list(peeked.head)
        self._attempt = attempt
        self._litellm_model = litellm_model
        self._on_end = on_end
        self._check_finish = check_finish
        self._chunks = 0
        self._finished = False
        self._usage: Any = None
        self._hidden_params: dict[str, Any] = {}

    def __aiter__(self) -> LuckyStream:
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        if self._head:
            return self._seen(self._head.pop(0))
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            if self._check_finish and not finished_properly(self._inner):
                error = IncompleteStreamError(self._attempt.model, self._chunks)
                self._end(error)
                raise error from None
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        return self._seen(chunk)

    def _seen(self, chunk: Any) -> Any:
        self._chunks += 1
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage
        return chunk

    def _end(self, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        attempt = self._attempt
        if self._usage is None:
            hidden = getattr(self._inner, "_hidden_params", None) or {}
            self._usage = hidden.get("usage")
        if self._usage is not None:
            attempt.input_tokens = getattr(self._usage, "prompt_tokens", None)
            attempt.output_tokens = getattr(self._usage, "completion_tokens", None)
            attempt.cost_usd = cost_from_tokens(
                self._litellm_model, attempt.input_tokens or 0, attempt.output_tokens or 0
            )
        if error is not None:
            # an error raised mid-stream may echo the key; it is re-raised to the caller as is
            scrub_exception(error, self._secrets)
            attempt.error = redact(str(error))[:300]
            attempt.error_type = type(error).__qualname__
        self._on_end(error)

    async def aclose(self) -> None:
        """Stop early: closes the upstream connection and settles the request."""
        if not self._finished:
            await PeekedStream(self._inner, []).aclose()
            self._end(None)

    async def __aenter__(self) -> LuckyStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
