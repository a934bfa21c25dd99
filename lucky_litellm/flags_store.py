"""Where rollout flags and per-user spend live: in this process, or in Redis for many.

With several processes or proxy replicas, flags and budgets must be shared: a kill switch
flipped in one process has to reach the others (within a second: each process re-reads a cached
snapshot at most every `REFRESH_S`), and two processes must not overspend one user's
`costLimit` together (reservations are a check-and-add Lua script, atomic in Redis).

Redis going away must not take requests down with it: `flags()` keeps answering with the last
snapshot it read, spend is counted in a local ledger (budgets are then enforced per process) and
pushed to Redis when it is back, one warning is logged per outage, and reconnection happens on
its own. Writes of flags during an outage fail loudly (`FlagStoreUnavailableError`): an operator
must know that a kill switch did not land.

Spend is stored in integer nano-dollars, so concurrent increments never drift as floats would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .bucketing import RolloutPolicy
from .errors import BudgetExceededError, LuckyError

__all__ = [
    "FlagState",
    "FlagStore",
    "FlagStoreUnavailableError",
    "MemoryFlagStore",
    "RedisFlagStore",
    "store_from_url",
]

logger = logging.getLogger("lucky_litellm.flags")

T = TypeVar("T")

REFRESH_S = 0.3
"""How old a Redis snapshot of the flags may get before it is read again."""
RECONNECT_EVERY_S = 0.5
SOCKET_TIMEOUT_S = 0.25
_NANO = 1_000_000_000


class FlagStoreUnavailableError(LuckyError):
    """The shared store cannot be reached, so a flag change did not land."""


@dataclass(frozen=True)
class FlagState:
    """A snapshot of the rollout flags."""

    enabled: bool = True
    percent: float = 100.0
    test_users: frozenset[str] = field(default_factory=frozenset)
    salt: str = "lucky"
    version: int = 0


class FlagStore(ABC):
    """Rollout flags and per-user spend. Methods are synchronous and thread-safe, so they work
    from any thread and any event loop (the sync `complete_sync` bridge included)."""

    @abstractmethod
    def flags(self) -> FlagState:
        """The current flags; fast, and never raises."""

    @abstractmethod
    def set_enabled(self, enabled: bool) -> FlagState: ...

    @abstractmethod
    def set_percent(self, percent: float) -> FlagState: ...

    @abstractmethod
    def add_test_user(self, user_id: str) -> FlagState: ...

    @abstractmethod
    def remove_test_user(self, user_id: str) -> FlagState: ...

    @abstractmethod
    def reserve_spend(self, user_id: str, amount: float, limit: float | None) -> float:
        """Add `amount` to the user's spend unless that would pass `limit`
        (then `BudgetExceededError`); returns the new total."""

    @abstractmethod
    def add_spend(self, user_id: str, amount: float) -> float:
        """Add `amount` (may be negative) to the user's spend; returns the new total."""

    def settle_spend(self, user_id: str, reserved: float, actual: float) -> float:
        """Replace a reservation by the actual cost."""
        return self.add_spend(user_id, actual - reserved)

    @abstractmethod
    def spent(self, user_id: str) -> float: ...

    @abstractmethod
    def reset_spend(self, user_id: str | None = None) -> None: ...

    def close(self) -> None:
        """Release connections (nothing to do for the memory store)."""


class _Ledger:
    """Thread-safe spend counters in nano-dollars."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nanos: dict[str, int] = {}

    def reserve(self, user_id: str, amount: int, limit: int | None) -> int:
        with self.lock:
            spent = self.nanos.get(user_id, 0)
            if limit is not None and spent + amount > limit:
                raise BudgetExceededError(user_id, spent / _NANO, limit / _NANO, amount / _NANO)
            self.nanos[user_id] = spent + amount
            return spent + amount

    def add(self, user_id: str, amount: int) -> int:
        with self.lock:
            total = self.nanos[user_id] = self.nanos.get(user_id, 0) + amount
            return total


def _nanos(usd: float) -> int:
    return round(usd * _NANO)


class MemoryFlagStore(FlagStore):
    """Flags and spend in this process only (the default)."""

    def __init__(self, initial: FlagState | None = None) -> None:
        self._lock = threading.Lock()
        self._flags = initial or FlagState()
        self._ledger = _Ledger()

    def __repr__(self) -> str:
        return f"MemoryFlagStore({self._flags!r})"

    def flags(self) -> FlagState:
        return self._flags

    def _update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        with self._lock:
            self._flags = replace(change(self._flags), version=self._flags.version + 1)
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

    def reserve_spend(self, user_id: str, amount: float, limit: float | None) -> float:
        return self._ledger.reserve(user_id, _nanos(amount), None if limit is None else _nanos(limit)) / _NANO

    def add_spend(self, user_id: str, amount: float) -> float:
        return self._ledger.add(user_id, _nanos(amount)) / _NANO

    def spent(self, user_id: str) -> float:
        return self._ledger.nanos.get(user_id, 0) / _NANO

    def reset_spend(self, user_id: str | None = None) -> None:
        with self._ledger.lock:
            if user_id is None:
                self._ledger.nanos.clear()
            else:
                self._ledger.nanos.pop(user_id, None)


_INIT_FLAGS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'enabled', ARGV[1], 'percent', ARGV[2], 'salt', ARGV[3], 'version', 0)
  for i = 4, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
end
return 1
"""

_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and spent + amount > limit then return {0, spent} end
return {1, redis.call('INCRBY', KEYS[1], amount)}
"""


class RedisFlagStore(FlagStore):
    """Flags and spend shared through Redis by every process that uses the same URL and prefix."""

    def __init__(self, url: str, *, prefix: str = "lucky:", initial: FlagState | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._url = url
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        self._flags_key = f"{prefix}flags"
        self._users_key = f"{prefix}test_users"
        self._spend_prefix = f"{prefix}spend:"
        self._initial = initial or FlagState()
        self._lock = threading.Lock()
        self._snapshot = self._initial
        self._read_at = 0.0
        self._down = False
        self._retry_at = 0.0
        self._fallback = _Ledger()
        self._last_spent: dict[str, float] = {}
        """Last totals read from Redis: the base of budget checks during an outage."""
        self._reserve = self._client.register_script(_RESERVE)
        self._init = self._client.register_script(_INIT_FLAGS)
        self._initialised = False
        with contextlib.suppress(FlagStoreUnavailableError):  # works on `initial`; initialises on reconnect
            self._call(self._ensure_initialised)

    def __repr__(self) -> str:
        return f"RedisFlagStore({_safe_url(self._url)!r}, prefix={self._flags_key[:-5]!r})"

    # -- connection handling -------------------------------------------------------------------

    def _call(self, operation: Callable[[], T]) -> T:
        """Run a Redis operation; on connection trouble mark the outage (logged once) and raise
        `FlagStoreUnavailableError` quickly, without retrying more often than every 0.5 s."""
        now = time.monotonic()
        if self._down and now < self._retry_at:
            raise FlagStoreUnavailableError(f"Redis at {_safe_url(self._url)} is unreachable")
        try:
            if self._down or not self._initialised:
                self._ensure_initialised()
            result = operation()
        except self._errors as exc:
            with self._lock:
                if not self._down:
                    logger.warning(
                        "Redis flag store at %s is unreachable (%s): using the last known flags and a "
                        "local spend ledger until it is back",
                        _safe_url(self._url),
                        type(exc).__name__,
                    )
                self._down = True
                self._retry_at = time.monotonic() + RECONNECT_EVERY_S
            raise FlagStoreUnavailableError(f"Redis at {_safe_url(self._url)} is unreachable") from None
        if self._down:
            self._recovered()
        return result

    def _ensure_initialised(self) -> None:
        initial = self._initial
        self._init(
            keys=[self._flags_key, self._users_key],
            args=[
                int(initial.enabled),
                repr(float(initial.percent)),
                initial.salt,
                *sorted(initial.test_users),
            ],
        )
        self._initialised = True

    def _recovered(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
            pending, self._fallback.nanos = dict(self._fallback.nanos), {}
        for user_id, nanos in pending.items():  # spend counted during the outage joins the shared total
            if nanos:
                self._client.incrby(self._spend_prefix + user_id, nanos)
        logger.info("Redis flag store at %s reconnected", _safe_url(self._url))

    # -- flags ---------------------------------------------------------------------------------

    def flags(self) -> FlagState:
        if time.monotonic() - self._read_at < REFRESH_S:
            return self._snapshot
        with contextlib.suppress(FlagStoreUnavailableError):  # keep answering with the last snapshot
            self._snapshot = self._call(self._read_flags)
        self._read_at = time.monotonic()
        return self._snapshot

    def _read_flags(self) -> FlagState:
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(self._flags_key)
        pipe.smembers(self._users_key)
        raw, users = pipe.execute()
        if not raw:
            return self._initial
        return FlagState(
            enabled=raw.get("enabled", "1") == "1",
            percent=float(raw.get("percent", self._initial.percent)),
            test_users=frozenset(users),
            salt=raw.get("salt", self._initial.salt),
            version=int(raw.get("version", 0)),
        )

    def _write(self, apply: Callable[[Any], None]) -> FlagState:
        def run() -> FlagState:
            pipe = self._client.pipeline(transaction=True)
            apply(pipe)
            pipe.hincrby(self._flags_key, "version", 1)
            pipe.execute()
            return self._read_flags()

        self._snapshot = self._call(run)
        self._read_at = time.monotonic()
        return self._snapshot

    def set_enabled(self, enabled: bool) -> FlagState:
        return self._write(lambda pipe: pipe.hset(self._flags_key, "enabled", int(bool(enabled))))

    def set_percent(self, percent: float) -> FlagState:
        checked = RolloutPolicy.check_percent(percent)
        return self._write(lambda pipe: pipe.hset(self._flags_key, "percent", repr(checked)))

    def add_test_user(self, user_id: str) -> FlagState:
        return self._write(lambda pipe: pipe.sadd(self._users_key, user_id))

    def remove_test_user(self, user_id: str) -> FlagState:
        return self._write(lambda pipe: pipe.srem(self._users_key, user_id))

    # -- spend ---------------------------------------------------------------------------------

    def reserve_spend(self, user_id: str, amount: float, limit: float | None) -> float:
        nanos, limit_nanos = _nanos(amount), (-1 if limit is None else _nanos(limit))

        def run() -> tuple[int, int]:
            ok, total = self._reserve(keys=[self._spend_prefix + user_id], args=[nanos, limit_nanos])
            return int(ok), int(total)

        try:
            ok, total = self._call(run)
        except FlagStoreUnavailableError:
            return self._local_reserve(user_id, nanos, limit)
        self._last_spent[user_id] = total / _NANO
        if not ok:
            raise BudgetExceededError(user_id, total / _NANO, limit or 0.0, amount)
        return total / _NANO

    def _local_reserve(self, user_id: str, nanos: int, limit: float | None) -> float:
        known = _nanos(self._last_spent.get(user_id, 0.0))
        local_limit = None if limit is None else _nanos(limit) - known
        try:
            return (self._fallback.reserve(user_id, nanos, local_limit) + known) / _NANO
        except BudgetExceededError as exc:
            raise BudgetExceededError(
                user_id, exc.spent_usd + known / _NANO, limit or 0.0, nanos / _NANO
            ) from None

    def add_spend(self, user_id: str, amount: float) -> float:
        nanos = _nanos(amount)
        try:
            total = int(self._call(lambda: self._client.incrby(self._spend_prefix + user_id, nanos))) / _NANO
        except FlagStoreUnavailableError:
            return self._last_spent.get(user_id, 0.0) + self._fallback.add(user_id, nanos) / _NANO
        self._last_spent[user_id] = total
        return total

    def spent(self, user_id: str) -> float:
        try:
            total = int(self._call(lambda: self._client.get(self._spend_prefix + user_id)) or 0) / _NANO
        except FlagStoreUnavailableError:
            return self._last_spent.get(user_id, 0.0) + self._fallback.nanos.get(user_id, 0) / _NANO
        self._last_spent[user_id] = total
        return total

    def reset_spend(self, user_id: str | None = None) -> None:
        def run() -> None:
            if user_id is not None:
                self._client.delete(self._spend_prefix + user_id)
                return
            keys = list(self._client.scan_iter(match=self._spend_prefix + "*"))
            if keys:
                self._client.delete(*keys)

        self._call(run)
        if user_id is None:
            self._last_spent.clear()
        else:
            self._last_spent.pop(user_id, None)

    def close(self) -> None:
        self._client.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def store_from_url(url: str | None, *, initial: FlagState | None = None) -> FlagStore:
    """A store for `LUCKY_STATE_URL`: none or ``memory://`` → this process; ``redis://`` → Redis."""
    if not url or url.startswith("memory:"):
        return MemoryFlagStore(initial)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisFlagStore(url, initial=initial)
    raise FlagStoreUnavailableError(
        f"unsupported state store URL scheme in {_safe_url(url)!r} (use redis://)"
    )
