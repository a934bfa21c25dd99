"""Thread-safe bookkeeping of the fake upstream: scripts, recorded calls, counters, waiters.

The server mutates this from its own thread; tests read it from theirs (sync or on any event
loop). One lock guards everything so a reader never sees a call counted but not recorded.
Waiting is event driven: sync waiters sleep on a `threading.Condition`, async waiters get a
future on their own loop resolved through `call_soon_threadsafe`, so neither polls nor
blocks the other's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .behavior import Behavior, Call, Outcome

__all__ = ["UpstreamState"]

Predicate = Callable[[], bool]

_MARKER = re.compile(r"[A-Za-z0-9_.:-]+")
"""Characters a JSON encoder never escapes, so a marker is found in the raw request body."""

_STRAY_ANSWER = Behavior()
"""What a stray gets: nobody reads it (its sender moved on), and a script of the current scope
(a hang, an error sequence) is not spent on it."""


@dataclass(slots=True)
class _Script:
    behaviors: tuple[Behavior, ...]
    next_index: int = 0


@dataclass(slots=True, eq=False)
class _AsyncWaiter:
    predicate: Predicate
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]

    def wake(self) -> None:
        # RuntimeError: the waiter's loop is closed, so nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class UpstreamState:
    """Scripts and records of one fake upstream. All public methods are thread-safe."""

    def __init__(self, max_recorded_calls: int | None = None) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._async_waiters: list[_AsyncWaiter] = []
        self._scripts: dict[str, _Script] = {}
        self._default = Behavior()
        self._generation = 0
        self._calls: deque[Call] = deque(maxlen=max_recorded_calls)
        self._total = 0
        self._counts: dict[str, int] = {}
        self._unscripted_index: dict[str, int] = {}
        self._in_flight = 0
        self._in_flight_by_model: dict[str, int] = {}
        self._max_in_flight = 0
        self._max_in_flight_by_model: dict[str, int] = {}
        self._cancelled: dict[str, int] = {}
        self._marker: bytes | None = None
        self._past_markers: list[bytes] = []
        self._strays: list[Call] = []

    # --- scripting -------------------------------------------------------------------------

    def script(self, model: str, behaviors: Behavior | Sequence[Behavior]) -> None:
        if isinstance(behaviors, Behavior):
            sequence: tuple[Behavior, ...] = (behaviors,)
        else:
            sequence = tuple(behaviors)
            if not sequence:
                raise ValueError(f"script for {model!r} needs at least one Behavior")
            for item in sequence:
                if not isinstance(item, Behavior):
                    raise TypeError(f"script for {model!r}: expected Behavior, got {type(item).__name__}")
        with self._lock:
            self._scripts[model] = _Script(sequence)

    @property
    def default(self) -> Behavior:
        with self._lock:
            return self._default

    @default.setter
    def default(self, behavior: Behavior) -> None:
        if not isinstance(behavior, Behavior):
            raise TypeError(f"default must be a Behavior, got {type(behavior).__name__}")
        with self._lock:
            self._default = behavior

    def scripted_models(self) -> list[str]:
        with self._lock:
            return list(self._scripts)

    def reset(self, marker: str | None = None) -> None:
        """Forget scripts, default and records; requests still running finish uncounted.

        A new `marker` retires the previous one: from now on a request carrying a retired marker
        (and not the current one) is a stray, see `begin`. None keeps the current marker.
        """
        if marker is not None and not _MARKER.fullmatch(marker):
            raise ValueError(f"marker must be letters, digits, '_', '-', '.' or ':', got {marker!r}")
        encoded = None if marker is None else marker.encode()
        with self._lock:
            if encoded is not None and encoded != self._marker:
                if self._marker is not None:
                    self._past_markers.append(self._marker)
                self._marker = encoded
            self._strays.clear()
            self._generation += 1
            self._scripts.clear()
            self._default = Behavior()
            self._calls.clear()
            self._total = 0
            self._counts.clear()
            self._unscripted_index.clear()
            self._cancelled.clear()
            self._max_in_flight = self._in_flight
            self._max_in_flight_by_model = {m: n for m, n in self._in_flight_by_model.items() if n}
            self._notify()

    # --- server side -----------------------------------------------------------------------

    def begin(
        self, model: str, body: dict[str, Any], stream: bool, headers: dict[str, str], raw: bytes = b""
    ) -> Call:
        """Pick the behavior for a new request and record it as in flight.

        A stray (`raw`, the request body, carries a retired marker and not the current one) is a
        request an earlier scope sent, arriving late: it gets a plain answer and touches neither
        scripts nor records, counters or waiters; `strays` lists it.
        """
        now = time.monotonic()
        with self._lock:
            if self._is_stray(raw):
                call = Call(model, body, stream, now, headers, 0, _STRAY_ANSWER, stray=True)
                self._strays.append(call)
                return call
            script = self._scripts.get(model)
            if script is None:
                behavior = self._default
                index = self._unscripted_index.get(model, 0)
                self._unscripted_index[model] = index + 1
            else:
                index = script.next_index
                behavior = script.behaviors[min(index, len(script.behaviors) - 1)]
                script.next_index = index + 1
            call = Call(model, body, stream, now, headers, index, behavior, generation=self._generation)
            self._calls.append(call)
            self._total += 1
            self._counts[model] = self._counts.get(model, 0) + 1
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
            per_model = self._in_flight_by_model.get(model, 0) + 1
            self._in_flight_by_model[model] = per_model
            if per_model > self._max_in_flight_by_model.get(model, 0):
                self._max_in_flight_by_model[model] = per_model
            self._notify()
        return call

    def end(self, call: Call, outcome: Outcome) -> bool:
        """Mark `call` finished; only the first end counts. Returns whether this one did."""
        now = time.monotonic()
        with self._lock:
            if call.ended_at is not None:
                return False
            call.ended_at = now
            call.outcome = outcome
            if call.stray:  # never counted as in flight
                return True
            self._in_flight -= 1
            self._in_flight_by_model[call.model] -= 1
            if outcome == "cancelled" and call.generation == self._generation:
                self._cancelled[call.model] = self._cancelled.get(call.model, 0) + 1
            self._notify()
        return True

    def _is_stray(self, raw: bytes) -> bool:  # lock held
        if not self._past_markers or (self._marker is not None and self._marker in raw):
            return False
        return any(marker in raw for marker in self._past_markers)

    def _notify(self) -> None:  # lock held
        self._changed.notify_all()
        if self._async_waiters:
            pending = []
            for waiter in self._async_waiters:
                if waiter.predicate():
                    waiter.wake()
                else:
                    pending.append(waiter)
            self._async_waiters = pending

    # --- reading ---------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def strays(self) -> list[Call]:
        with self._lock:
            return list(self._strays)

    def call_count(self, model: str | None = None) -> int:
        with self._lock:
            return self._count(model)

    def _count(self, model: str | None) -> int:  # lock held
        return self._total if model is None else self._counts.get(model, 0)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def in_flight_for(self, model: str) -> int:
        with self._lock:
            return self._in_flight_by_model.get(model, 0)

    def max_in_flight(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return self._max_in_flight
            return self._max_in_flight_by_model.get(model, 0)

    def cancelled_count(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return sum(self._cancelled.values())
            return self._cancelled.get(model, 0)

    # --- waiting ---------------------------------------------------------------------------

    def calls_predicate(self, n: int, model: str | None) -> Predicate:
        return lambda: self._count(model) >= n

    def idle_predicate(self) -> Predicate:
        return lambda: self._in_flight == 0

    def wait(self, predicate: Predicate, timeout: float, describe: Callable[[], str]) -> None:
        """Block until `predicate()` holds (evaluated under the lock) or raise TimeoutError."""
        with self._lock:
            done = self._changed.wait_for(predicate, timeout)
        if not done:  # described outside the lock: `describe` takes it again
            raise TimeoutError(describe())

    async def await_(self, predicate: Predicate, timeout: float, describe: Callable[[], str]) -> None:
        """`wait` for coroutines: suspends only the caller, never blocks its loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if predicate():
                return
            waiter = _AsyncWaiter(predicate, loop, loop.create_future())
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(describe()) from None
        finally:
            with self._lock:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)

    def describe_calls(self, n: int, model: str | None, timeout: float) -> str:
        with self._lock:
            have = self._count(model)
        target = f"calls to {model!r}" if model is not None else "calls"
        return f"expected {n} {target} within {timeout}s, got {have}"

    def describe_idle(self, timeout: float) -> str:
        with self._lock:
            busy = {m: n for m, n in self._in_flight_by_model.items() if n}
        return f"upstream not idle after {timeout}s: in flight {busy}"
