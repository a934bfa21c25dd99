"""Recording calls for a running guard: measured around each rollout call, stored later.

The request path only appends an observation to an in-process queue (no I/O, no lock held
across anything slow); the store's syncer thread aggregates the queue into per-path counters
and adds them to the shared store in one script call per tick. With no guard running the
request path does not get here at all: it checks one attribute (`GuardStore.recording`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    BudgetExceededError,
    BudgetUnavailableError,
    ConcurrencyLimitError,
    ModelSpecError,
    StateUnavailableError,
    UnknownExperimentError,
    UnknownTierError,
    UnknownUserError,
)

if TYPE_CHECKING:
    from .store import GuardStore, PathName, _Batch
    from .summary import CallObservation

__all__ = ["CALLER_ERRORS", "GuardRecorder"]

logger = logging.getLogger("lucky_litellm.guard")

T = TypeVar("T")

CALLER_ERRORS: tuple[type[BaseException], ...] = (
    BudgetExceededError,
    BudgetUnavailableError,
    ConcurrencyLimitError,
    ModelSpecError,
    UnknownExperimentError,
    UnknownTierError,
    UnknownUserError,
)
"""Refusals caused by the caller or its limits, not by the path: they are not the path's errors."""

MAX_UNSENT_REQUESTS = 50_000
"""Request ids kept for the store during an outage (the counters are always kept)."""


class GuardRecorder:
    """The calls of one guard run that this process made and the store has not received yet."""

    def __init__(self, store: GuardStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._queue: deque[tuple[CallObservation, str]] = deque()
        self._queued_ids: dict[str, None] = {}
        """Request ids of the calls queued here and not in the store yet."""
        self._feedback: deque[tuple[str, dict[str, float]]] = deque()
        self._lock = threading.Lock()
        self._unsent: _Unsent | None = None
        """Calls recorded since the last push was tried: never sent, so merged as they come."""
        self._uncertain: _Batch | None = None
        """The batch whose push failed: it may have landed, so it is resent as it is."""
        self._inline = not store.shared
        """In one process the store is a dict: record into it at once and decide right away."""
        self._evaluated_at = float("-inf")

    def __repr__(self) -> str:
        return f"GuardRecorder(run={self.run_id}, queued={len(self._queue)})"

    async def track(self, path: PathName, call: Callable[[str], Awaitable[T]], request_id: str | None) -> T:
        """Run `call(request_id)` and record its outcome; a call without a request id gets one
        (on its routing record), so `feedback` can refer to it."""
        request_id = request_id or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = await call(request_id)
        except asyncio.CancelledError:
            raise  # the caller gave up: nothing is known about the path
        except CALLER_ERRORS:
            raise
        except Exception:
            self.record(_observation(path, False, time.perf_counter() - started, 0.0), request_id)
            raise
        self.record(_observation(path, True, time.perf_counter() - started, _cost(response)), request_id)
        return response

    def record(self, observation: CallObservation, request_id: str) -> None:
        """Queue one call (thread-safe, no I/O for a shared store)."""
        if not self._inline:
            self._queued_ids[request_id] = None
        self._queue.append((observation, request_id))
        if self._inline:
            self.flush()
            store = self.store
            now = time.monotonic()
            if now - self._evaluated_at >= store.evaluate_every_s:
                self._evaluated_at = now
                try:
                    store.evaluate()
                except Exception:  # a decision must never fail the call it follows
                    logger.exception("guarded rollout: the evaluation failed (the guard holds)")

    def queue_feedback(self, request_id: str, increments: dict[str, float]) -> bool:
        """Queue feedback for a call still queued here (it follows the call into the store);
        False when the call is not queued here."""
        if request_id not in self._queued_ids:
            return False
        self._feedback.append((request_id, increments))
        return True

    def flush(self) -> None:
        """Add the queued calls to the store in one batch; kept for the next try on an outage.

        A batch whose push failed may have landed all the same (Redis applied it, the reply was
        lost to a timeout on a loaded machine): it is sent again as it was, under its id, which
        the store applies once, before anything recorded since (kept apart, in `_unsent`)."""
        from .summary import PathSummary

        with self._lock:
            counters, requests, feedback = self._unsent or ({}, [], [])
            self._unsent = None
            queue = self._queue
            while queue:
                observation, request_id = queue.popleft()
                path_counters = counters.setdefault(observation.path, {})
                for name, value in PathSummary.increments(observation).items():
                    path_counters[name] = path_counters.get(name, 0.0) + value
                requests.append((request_id, observation.path))
            while self._feedback:
                feedback.append(self._feedback.popleft())
            if counters or requests or feedback:
                self._unsent = (counters, requests[-MAX_UNSENT_REQUESTS:], feedback[-MAX_UNSENT_REQUESTS:])
            if self._uncertain is not None:
                self._push(self._uncertain)
                self._uncertain = None
            if self._unsent is not None:
                from .store import batch_of

                batch = batch_of(*self._unsent)
                self._unsent = None
                self._push(batch)

    def _push(self, batch: _Batch) -> None:
        """Push `batch` (under the lock); on an outage it stays `_uncertain`, to be sent again."""
        try:
            self.store.push(self.run_id, batch)
        except StateUnavailableError:
            self._uncertain = batch
            raise
        for request_id, _ in batch.requests:
            self._queued_ids.pop(request_id, None)


_Unsent = tuple[dict[str, dict[str, float]], list[tuple[str, str]], list[tuple[str, dict[str, float]]]]


def _observation(path: PathName, ok: bool, latency_s: float, cost_usd: float) -> CallObservation:
    from .summary import CallObservation

    return CallObservation(path=path, ok=ok, latency_s=latency_s, cost_usd=cost_usd)


def _cost(response: Any) -> float:
    """The call's cost from its routing record (a stream's cost is known only at its end: 0 here,
    on both paths alike)."""
    from ..routing import routing_of

    try:
        return float(routing_of(response).cost_usd or 0.0)
    except LookupError:
        return 0.0
