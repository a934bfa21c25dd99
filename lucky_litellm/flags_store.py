"""TEMPORARY stub (lead) until the flag store engineer lands the real module."""
from __future__ import annotations
import threading
from dataclasses import dataclass, replace
from .errors import BudgetExceededError

@dataclass(frozen=True)
class FlagState:
    enabled: bool = True
    percent: float = 100.0
    test_users: frozenset[str] = frozenset()
    salt: str = "lucky"
    version: int = 0

class FlagStore:
    pass

class MemoryFlagStore(FlagStore):
    def __init__(self, initial: FlagState | None = None) -> None:
        self._lock = threading.Lock()
        self._flags = initial or FlagState()
        self._spend: dict[str, float] = {}
    def flags(self) -> FlagState:
        return self._flags
    def _set(self, **changes) -> FlagState:
        with self._lock:
            self._flags = replace(self._flags, version=self._flags.version + 1, **changes)
            return self._flags
    def set_enabled(self, enabled: bool) -> FlagState:
        return self._set(enabled=enabled)
    def set_percent(self, percent: float) -> FlagState:
        return self._set(percent=percent)
    def add_test_user(self, user_id: str) -> FlagState:
        return self._set(test_users=self._flags.test_users | {user_id})
    def remove_test_user(self, user_id: str) -> FlagState:
        return self._set(test_users=self._flags.test_users - {user_id})
    def reserve_spend(self, user_id: str, amount: float, limit: float | None) -> float:
        with self._lock:
            spent = self._spend.get(user_id, 0.0)
            if limit is not None and spent + amount > limit:
                raise BudgetExceededError(user_id, spent, limit, amount)
            self._spend[user_id] = spent + amount
            return spent + amount
    def settle_spend(self, user_id: str, reserved: float, actual: float) -> float:
        return self.add_spend(user_id, actual - reserved)
    def add_spend(self, user_id: str, amount: float) -> float:
        with self._lock:
            self._spend[user_id] = self._spend.get(user_id, 0.0) + amount
            return self._spend[user_id]
    def spent(self, user_id: str) -> float:
        return self._spend.get(user_id, 0.0)
    def reset_spend(self, user_id: str | None = None) -> None:
        with self._lock:
            if user_id is None: self._spend.clear()
            else: self._spend.pop(user_id, None)
    def close(self) -> None:
        pass

def store_from_url(url: str | None, *, initial: FlagState | None = None) -> FlagStore:
    return MemoryFlagStore(initial)
