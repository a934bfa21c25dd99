"""Per-user concurrency slots and cost estimates used to enforce `maxConcurrent` and `costLimit`.

The slot counter is guarded by a thread lock and waiters are woken through their own event loop,
so the limit holds across threads and loops (`complete_sync` runs its own loop per call), not
only inside one loop as an `asyncio.Semaphore` would.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConcurrencyLimitError

__all__ = ["DEFAULT_OUTPUT_TOKEN_ESTIMATE", "ConcurrencyLimiter", "estimate_cost", "estimate_prompt_tokens"]

DEFAULT_OUTPUT_TOKEN_ESTIMATE = 512
"""Output tokens assumed when the caller sets no `max_tokens`: a typical chat answer, not the
model's maximum (which would make every `maxCost` skip every model)."""


class _Slots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = deque()


class ConcurrencyLimiter:
    """Bounds in-flight requests per key; excess requests wait up to their deadline, FIFO."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slots] = {}

    def in_flight(self, key: str) -> int:
        slots = self._slots.get(key)
        return slots.active if slots else 0

    async def acquire(self, key: str, limit: int, timeout_s: float) -> None:
        with self._lock:
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = _Slots(limit)
            slots.limit = limit
            if slots.active < limit and not slots.waiters:
                slots.active += 1
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[bool] = loop.create_future()
            slots.waiters.append((loop, future))
        started = time.monotonic()
        timer = loop.call_later(max(timeout_s, 0.0), _expire, future)
        try:
            await future
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            with self._lock:
                handed_over = future.done() and not future.cancelled() and future.exception() is None
                if not future.done():
                    future.cancel()
            if handed_over:
                self.release(key)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ConcurrencyLimitError(key, limit, time.monotonic() - started) from None
        finally:
            timer.cancel()

    def release(self, key: str) -> None:
        with self._lock:
            slots = self._slots[key]
            while slots.waiters:
                loop, future = slots.waiters.popleft()
                if future.done() or loop.is_closed():
                    continue
                # The slot passes straight to the waiter; `active` stays the same.
                if _running_loop() is loop:
                    future.set_result(True)
                else:
                    loop.call_soon_threadsafe(self._deliver, key, future)
                return
            slots.active -= 1
            if slots.active == 0 and not slots.waiters:
                del self._slots[key]

    def _deliver(self, key: str, future: asyncio.Future[bool]) -> None:
        """Runs in the waiter's loop; a waiter that gave up meanwhile passes the slot on."""
        if future.done():
            self.release(key)
        else:
            future.set_result(True)


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_OFFLINE_TOKENIZER_MODEL = "gpt-4o"
"""Prompt tokens are always counted with the tiktoken encoding litellm ships: for other model
families litellm would download a Hugging Face tokenizer, i.e. reach the network on the hot path.
The count is an estimate either way, so `PROMPT_TOKEN_MARGIN` pads it."""

PROMPT_TOKEN_MARGIN = 1.15


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens (padded by `PROMPT_TOKEN_MARGIN`), falling back to chars/4 for odd content."""
    import litellm

    try:
        counted = int(litellm.token_counter(model=_OFFLINE_TOKENIZER_MODEL, messages=list(messages)))
    except Exception:
        text = sum(len(str(m.get("content") or "")) for m in messages)
        counted = text // 4 + 4 * len(messages)
    return math.ceil(counted * PROMPT_TOKEN_MARGIN)


def estimate_cost(model: str, prompt_tokens: int, max_output_tokens: int | None) -> float | None:
    """Upper-bound USD cost of one call; None when nobody can price the model."""
    from .calls import cost_from_tokens
    from .tiers import model_price

    completion_tokens = max_output_tokens if max_output_tokens else DEFAULT_OUTPUT_TOKEN_ESTIMATE
    cost = cost_from_tokens(model, prompt_tokens, completion_tokens)
    if cost == 0.0 and model_price(model) is None:
        return None
    return cost
