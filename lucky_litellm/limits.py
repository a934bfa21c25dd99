"""Per-user concurrency slots: `maxConcurrent`.

The slot counter is guarded by a thread lock and waiters are woken through their own event loop,
so the limit holds across threads and loops, not only inside one loop as an `asyncio.Semaphore`
would. A changed limit applies at once, to the requests already waiting too: raising it wakes as
many waiters as the new limit allows; lowering it lets the requests in flight finish but hands
no freed slot on until the count is back under the new limit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from .errors import ConcurrencyLimitError

__all__ = ["ConcurrencyLimiter"]


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
            if slots.limit != limit:
                slots.limit = limit
                self._hand_over(key, slots)
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

    def set_limit(self, key: str, limit: int | None) -> None:
        """Change `key`'s limit now, for the requests already waiting too (None: unlimited)."""
        with self._lock:
            slots = self._slots.get(key)
            if slots is None:
                return
            slots.limit = limit if limit else 1 << 30
            self._hand_over(key, slots)

    def _hand_over(self, key: str, slots: _Slots) -> None:
        """Give free slots to waiters while under the limit (lock held)."""
        while slots.active < slots.limit and self._wake_one(key, slots):
            slots.active += 1

    def _wake_one(self, key: str, slots: _Slots) -> bool:
        """Pass a slot to the first live waiter (lock held); False when nobody waits."""
        while slots.waiters:
            loop, future = slots.waiters.popleft()
            if future.done() or loop.is_closed():
                continue
            if _running_loop() is loop:
                future.set_result(True)
            else:
                loop.call_soon_threadsafe(self._deliver, key, future)
            return True
        return False

    def release(self, key: str) -> None:
        with self._lock:
            slots = self._slots.get(key)
            if slots is None:
                return
            # Under the limit, the slot passes straight to a waiter; `active` stays the same.
            if slots.active <= slots.limit and self._wake_one(key, slots):
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
