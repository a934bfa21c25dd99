"""Cost alerts: a user's spend crossing fractions of their `costLimit` (default 50 %, 80 %, 100 %).

Each threshold fires once per user, through three channels at once: a warning on the
``lucky_litellm.alerts`` logger, a ``lucky.cost_alert`` event on the request span that crossed it,
and the callbacks registered with `Models.on_cost_alert`. Fired thresholds are forgotten only
when the user's limit changes (a new budget) or on `reset(user_id)` (call it when a user's spend
is reset). Spend going down does not re-arm them: totals of concurrent requests can be observed
out of order, and "once" must stay once.

Thresholds are decided under a lock, so concurrent requests crossing the same line report it
once; callbacks run after the lock is released, so a slow or failing callback cannot block or
break a request. The once-per-user memory is per process: with a shared Redis store, each
process alerts on its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

__all__ = ["DEFAULT_THRESHOLDS", "CostAlert", "CostAlertCallback", "CostAlerts"]

logger = logging.getLogger("lucky_litellm.alerts")

DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)
MAX_TRACKED_USERS = 100_000
"""Users whose fired thresholds are remembered; the least recently alerted are forgotten first."""


@dataclass(frozen=True)
class CostAlert:
    """A user's spend reached `threshold` (a fraction) of their cost limit."""

    user_id: str
    threshold: float
    spent_usd: float
    limit_usd: float

    @property
    def used(self) -> float:
        """Fraction of the limit spent so far (may exceed 1.0)."""
        return self.spent_usd / self.limit_usd if self.limit_usd else 0.0


CostAlertCallback = Callable[[CostAlert], Any]
"""Called with each alert; may be a plain function or return an awaitable (an `async def`)."""


class CostAlerts:
    """Remembers which thresholds fired for which user and delivers new alerts."""

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> None:
        if any(t <= 0 for t in thresholds):
            raise UsageError(f"cost alert thresholds must be positive fractions, got {list(thresholds)}")
        self.thresholds = tuple(sorted(set(thresholds)))
        self._callbacks: list[CostAlertCallback] = []
        self._fired: OrderedDict[str, tuple[float, frozenset[float]]] = OrderedDict()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def add_callback(self, callback: CostAlertCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def remove_callback(self, callback: CostAlertCallback) -> None:
        with self._lock:
            self._callbacks.remove(callback)

    def observe(self, user_id: str, spent: float, limit: float | None, span: Any = None) -> list[CostAlert]:
        """Note the user's total spend after a request; deliver and return newly crossed thresholds."""
        if not limit or limit <= 0 or not self.thresholds:
            return []
        used = spent / limit
        with self._lock:
            known_limit, before = self._fired.get(user_id, (limit, frozenset()))
            if known_limit != limit:  # a new budget: thresholds count afresh
                before = frozenset()
            new = [t for t in self.thresholds if used >= t and t not in before]
            if new or known_limit != limit:
                self._fired[user_id] = (limit, before.union(new))
                self._fired.move_to_end(user_id)
                while len(self._fired) > MAX_TRACKED_USERS:
                    self._fired.popitem(last=False)
            callbacks = list(self._callbacks) if new else []
        alerts = [CostAlert(user_id, threshold, spent, limit) for threshold in new]
        for alert in alerts:
            self._deliver(alert, span, callbacks)
        return alerts

    def reset(self, user_id: str | None = None) -> None:
        """Forget fired thresholds (of one user, or everyone), so they can fire again."""
        with self._lock:
            if user_id is None:
                self._fired.clear()
            else:
                self._fired.pop(user_id, None)

    def _deliver(self, alert: CostAlert, span: Any, callbacks: list[CostAlertCallback]) -> None:
        logger.warning(
            "user %r has spent $%.6f, %.0f%% of its cost limit $%.6f (alert threshold %.0f%%)",
            alert.user_id,
            alert.spent_usd,
            alert.used * 100,
            alert.limit_usd,
            alert.threshold * 100,
        )
        if span is not None and span.is_recording():
            span.add_event(
                "lucky.cost_alert",
                {
                    "lucky.alert.threshold": alert.threshold,
                    "lucky.alert.spent_usd": alert.spent_usd,
                    "lucky.alert.limit_usd": alert.limit_usd,
                },
            )
        for callback in callbacks:
            try:
                result = callback(alert)
                if inspect.isawaitable(result):
                    self._schedule(result)
            except Exception:
                logger.exception("cost alert callback %r failed", callback)

    def _schedule(self, awaitable: Any) -> None:
        """Run an async callback without making the request wait for it."""

        async def guarded() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("cost alert callback failed")

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(guarded())
            return
        task = loop.create_task(guarded())
        self._tasks.add(task)  # keep a reference until it is done, or it may be collected mid-run
        task.add_done_callback(self._tasks.discard)
