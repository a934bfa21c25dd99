"""Flags and spend in this process only: the default, and what a single process needs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from ..bucketing import RolloutPolicy
from .flags import FlagState, FlagStore, updated
from .spend import NANO, Ledger, SpendStore, nanos

__all__ = ["MemoryFlagStore", "MemorySpendStore"]


class MemoryFlagStore(FlagStore):
    """Flags of this process: a change here is seen by nobody else."""

    def __init__(self, initial: FlagState | None = None) -> None:
        self._lock = threading.Lock()
        self._flags = initial or FlagState()

    def __repr__(self) -> str:
        return f"MemoryFlagStore({self._flags!r})"

    @property
    def location(self) -> str:
        return "memory (this process only; set LUCKY_STATE_URL=redis://... to share)"

    def current(self) -> FlagState:
        return self._flags

    def _update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        with self._lock:
            self._flags = updated(self._flags, change)
            return self._flags

    def set_enabled(self, enabled: bool) -> FlagState:
        return self._update(lambda f: replace(f, enabled=bool(enabled)))

    def set_percent(self, percent: float) -> FlagState:
        checked = RolloutPolicy.check_percent(percent)
        return self._update(lambda f: replace(f, percent=checked))

    def add_test_user(self, user_id: str) -> FlagState:
        return self._update(lambda f: replace(f, test_users=f.test_users | {user_id}))

    def remove_test_user(self, user_id: str) -> FlagState:
        return self._update(lambda f: replace(f, test_users=f.test_users - {user_id}))


class MemorySpendStore(SpendStore):
    """Spend counted in this process: budgets hold per process only."""

    def __init__(self) -> None:
        self._ledger = Ledger()

    async def reserve(self, user_id: str, amount: float, limit: float | None) -> float:
        return self._ledger.reserve(user_id, nanos(amount), None if limit is None else nanos(limit)) / NANO

    def settle(self, user_id: str, reserved: float, actual: float) -> float:
        return self._ledger.add(user_id, nanos(actual) - nanos(reserved)) / NANO

    async def spent(self, user_id: str) -> float:
        return self._ledger.get(user_id) / NANO

    def spent_sync(self, user_id: str) -> float:
        return self._ledger.get(user_id) / NANO

    def reset(self, user_id: str | None = None) -> None:
        self._ledger.clear(user_id)
