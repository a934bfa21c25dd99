"""Where rollout flags and per-user spend live: in this process, or in Redis for many.

With several processes or proxy replicas, flags and budgets must be shared: a kill switch
flipped in one process has to reach the others (within a second: each process re-reads a cached
snapshot at most every `REFRESH_S`), and two processes must not overspend one user's
`costLimit` together (reservations are a check-and-add Lua script, atomic in Redis).

Redis layout, under a prefix (``lucky:`` by default): ``flags`` is a hash (enabled, percent,
salt, version), ``test_users`` a set, ``spend:<user>`` an integer of nano-dollars. Every flag
write and the first-time seeding run as one Lua script, so the version bump is atomic with the
change and a starting process only writes its configured flags when none exist yet: it never
overwrites a change another process made.

Redis going away must not take requests down with it: `flags()` keeps answering with the last
snapshot it read, spend is counted in a local ledger (budgets are then enforced per process,
starting from the last totals this process read) and pushed to Redis when it is back (before
the operation that found it back, so no reservation is checked without it), one
warning is logged per outage, and reconnection is attempted at most every `RECONNECT_EVERY_S`
with short socket timeouts, so a dead Redis costs a request at most about `SOCKET_TIMEOUT_S`.
A Redis that comes back empty (no persistence) is re-seeded with the last flags this process
knew, so a kill switch survives the restart. Writes of flags during an outage fail loudly
(`FlagStoreUnavailableError`): an operator must know that a kill switch did not land.

Spend is stored in integer nano-dollars, so concurrent increments never drift as floats would.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .bucketing import RolloutPolicy
from .errors import BudgetExceededError, LuckyError

__all__ = [
    "RECONNECT_EVERY_S",
    "REFRESH_S",
    "SOCKET_TIMEOUT_S",
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
"""During an outage, how often a call may try Redis again (the others use the fallbacks)."""
SOCKET_TIMEOUT_S = 0.25
"""Connect and read timeout: the longest a dead Redis can hold up one request."""
_NANO = 1_000_000_000


class FlagStoreUnavailableError(LuckyError):
    """The shared store cannot be reached (or holds unreadable flags), so a change did not land."""


class _UnreadableFlagsError(FlagStoreUnavailableError):
    """Someone wrote something into the flags hash that is not a valid rollout state."""


@dataclass(frozen=True)
class FlagState:
    """A snapshot of the rollout flags; `version` grows with every write."""

    enabled: bool = True
    percent: float = 100.0
    test_users: frozenset[str] = field(default_factory=frozenset)
    salt: str = "lucky"
    version: int = 0

    def __post_init__(self) -> None:
        # A bad state fails where it is built, not later in every rollout decision.
        object.__setattr__(self, "percent", RolloutPolicy.check_percent(self.percent))
        object.__setattr__(self, "test_users", frozenset(self.test_users))


class FlagStore(ABC):
    """Rollout flags and per-user spend. Methods are synchronous and thread-safe, so they work
    from any thread and any event loop (the sync `complete_sync` bridge included)."""

    @abstractmethod
    def flags(self) -> FlagState:
        """The current flags; fast, and never raises."""

    @abstractmethod
    def set_enabled(self, enabled: bool) -> FlagState: ...

    @abstractmethod
    def set_percent(self, percent: float) -> FlagState:
        """Validated by `RolloutPolicy.check_percent` (a `RolloutError` leaves the flags as they were)."""

    @abstractmethod
    def add_test_user(self, user_id: str) -> FlagState: ...

    @abstractmethod
    def remove_test_user(self, user_id: str) -> FlagState: ...

    @abstractmethod
    def reserve_spend(self, user_id: str, amount: float, limit: float | None) -> float:
        """Add `amount` to the user's spend unless that would pass `limit` (then
        `BudgetExceededError`, nothing added); returns the new total. Check and add are one
        atomic step, so concurrent requests can never overspend together."""

    @abstractmethod
    def add_spend(self, user_id: str, amount: float) -> float:
        """Add `amount` (may be negative) to the user's spend; returns the new total."""

    def settle_spend(self, user_id: str, reserved: float, actual: float) -> float:
        """Replace a reservation by the actual cost (one atomic add of the difference)."""
        return self.add_spend(user_id, actual - reserved)

    @abstractmethod
    def spent(self, user_id: str) -> float: ...

    @abstractmethod
    def reset_spend(self, user_id: str | None = None) -> None:
        """Forget one user's spend, or everyone's."""

    def close(self) -> None:  # noqa: B027 - optional hook: the memory store holds nothing
        """Release connections."""


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

    def get(self, user_id: str) -> int:
        return self.nanos.get(user_id, 0)

    def take_all(self) -> dict[str, int]:
        with self.lock:
            taken, self.nanos = self.nanos, {}
            return taken

    def merge(self, amounts: dict[str, int]) -> None:
        with self.lock:
            for user_id, amount in amounts.items():
                self.nanos[user_id] = self.nanos.get(user_id, 0) + amount

    def clear(self, user_id: str | None = None) -> None:
        with self.lock:
            if user_id is None:
                self.nanos.clear()
            else:
                self.nanos.pop(user_id, None)


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
        return self._ledger.get(user_id) / _NANO

    def reset_spend(self, user_id: str | None = None) -> None:
        self._ledger.clear(user_id)


# KEYS: flags hash, test-user set. ARGV: operation, its value, then the seed (enabled, percent,
# salt, version, test users...) written only when the hash is missing (a fresh or emptied Redis).
# Returns the flags hash and the test users after the operation.
_SYNC_FLAGS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'enabled', ARGV[3], 'percent', ARGV[4], 'salt', ARGV[5], 'version', ARGV[6])
  for i = 7, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
end
local op = ARGV[1]
if op ~= 'read' then
  if op == 'enabled' or op == 'percent' then redis.call('HSET', KEYS[1], op, ARGV[2])
  elseif op == 'add_user' then redis.call('SADD', KEYS[2], ARGV[2])
  elseif op == 'remove_user' then redis.call('SREM', KEYS[2], ARGV[2])
  else return redis.error_reply('unknown flag operation ' .. op) end
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
"""

# KEYS: the user's spend counter. ARGV: amount and limit in nano-dollars (limit < 0: none).
# Returns {1, new total} or {0, current total} when the amount does not fit.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[2])
if limit >= 0 and spent + tonumber(ARGV[1]) > limit then return {0, spent} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""


class RedisFlagStore(FlagStore):
    """Flags and spend shared through Redis by every process that uses the same URL and prefix.

    `initial` is what a brand-new Redis is seeded with (usually the rollout section of the
    models config); flags already in Redis win over it. `refresh_s` bounds how stale `flags()`
    may be.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lucky:",
        initial: FlagState | None = None,
        refresh_s: float = REFRESH_S,
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
        reconnect_every_s: float = RECONNECT_EVERY_S,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._url = url
        self._prefix = prefix
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._outage_errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,  # includes authentication and "loading" errors
            redis.exceptions.TimeoutError,
            redis.exceptions.ReadOnlyError,  # a replica after failover: writes cannot land
        )
        self._flags_key = f"{prefix}flags"
        self._users_key = f"{prefix}test_users"
        self._spend_prefix = f"{prefix}spend:"
        self._refresh_s = refresh_s
        self._reconnect_every_s = reconnect_every_s
        self._initial = initial or FlagState()

        self._lock = threading.Lock()  # outage state and the snapshot
        self._refreshing = threading.Lock()  # one reader at a time; the others use the snapshot
        self._pushing = threading.Lock()  # the outage's spend reaches Redis before anything else
        self._snapshot = self._initial
        self._read_at = float("-inf")
        self._writes = 0
        self._bad_flags_logged = False
        self._down = False
        self._retry_at = 0.0

        self._fallback = _Ledger()
        """Spend counted while Redis was unreachable; pushed to Redis once it is back."""
        self._last_spent: dict[str, int] = {}
        """Last totals read from Redis (nano-dollars): the base of budget checks during an outage."""
        self._sync = self._client.register_script(_SYNC_FLAGS)
        self._reserve = self._client.register_script(_RESERVE)
        self.flags()  # seeds a fresh Redis now; on an outage this logs and keeps `initial`

    def __repr__(self) -> str:
        return f"RedisFlagStore({_safe_url(self._url)!r}, prefix={self._prefix!r})"

    # -- connection handling -------------------------------------------------------------------

    def _call(self, operation: Callable[[], T]) -> T:
        """Run a Redis operation; on connection trouble mark the outage (logged once) and raise
        `FlagStoreUnavailableError`, without trying Redis again for `reconnect_every_s`."""
        if self._down and time.monotonic() < self._retry_at:
            raise self._unavailable()
        try:
            if self._down or self._fallback.nanos:
                self._push_outage_spend()
            result = operation()
        except self._outage_errors as exc:
            self._mark_down(exc)
            raise self._unavailable() from None
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                logger.info("Redis flag store at %s reconnected", _safe_url(self._url))
        return result

    def _unavailable(self) -> FlagStoreUnavailableError:
        return FlagStoreUnavailableError(f"Redis at {_safe_url(self._url)} is unreachable")

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            if not self._down:
                logger.warning(
                    "Redis flag store at %s is unreachable (%s): using the last known flags and a "
                    "per-process spend ledger until it is back",
                    _safe_url(self._url),
                    type(exc).__name__,
                )
            self._down = True
            self._retry_at = time.monotonic() + self._reconnect_every_s

    def _push_outage_spend(self) -> None:
        """Add the spend counted during the outage to Redis, *before* the operation that found
        Redis back: a first reservation must be checked against it, or a user could spend their
        budget twice (once locally, once in Redis). Concurrent callers wait here until the push
        has landed, for the same reason. Raises the outage error when Redis is still away."""
        with self._pushing:
            if self._down and time.monotonic() < self._retry_at:
                raise self._unavailable()  # another caller just found Redis still away
            pending = self._fallback.take_all()
            if not pending:
                return
            try:
                pipe = self._client.pipeline(transaction=True)
                for user_id, nanos in pending.items():
                    pipe.incrby(self._spend_prefix + user_id, nanos)
                pipe.execute()
            except self._outage_errors:
                self._fallback.merge(pending)  # nothing is lost: pushed by the next call
                raise
            except Exception as exc:  # e.g. a spend key of the wrong type: retrying cannot help
                logger.warning("could not add the outage's spend to Redis (%s): dropped", type(exc).__name__)

    # -- flags ---------------------------------------------------------------------------------

    def flags(self) -> FlagState:
        if time.monotonic() - self._read_at < self._refresh_s:
            return self._snapshot
        if not self._refreshing.acquire(blocking=False):
            return self._snapshot  # another thread is reading: don't queue behind it
        try:
            writes = self._writes
            try:
                fresh = self._call(lambda: self._sync_flags("read"))
            except _UnreadableFlagsError as exc:  # garbage in Redis must not fail requests
                if not self._bad_flags_logged:
                    self._bad_flags_logged = True
                    logger.warning("%s; keeping the last known flags", exc)
            except FlagStoreUnavailableError:
                pass  # keep answering with the last snapshot
            except Exception as exc:  # never raise from flags(): e.g. a key of the wrong type
                if not self._bad_flags_logged:
                    self._bad_flags_logged = True
                    logger.warning("could not read the rollout flags (%s); keeping the last ones", exc)
            else:
                self._bad_flags_logged = False
                with self._lock:
                    if self._writes == writes:  # a write during the read knows better
                        self._snapshot = fresh
            self._read_at = time.monotonic()
        finally:
            self._refreshing.release()
        return self._snapshot

    def _sync_flags(self, operation: str, value: str = "") -> FlagState:
        seed = self._snapshot  # what an empty Redis gets: the newest flags this process knew
        raw, users = self._sync(
            keys=[self._flags_key, self._users_key],
            args=[
                operation,
                value,
                int(seed.enabled),
                repr(float(seed.percent)),
                seed.salt,
                seed.version,
                *sorted(seed.test_users),
            ],
        )
        return _parse_flags(raw, users)

    def _write(self, operation: str, value: str) -> FlagState:
        fresh = self._call(lambda: self._sync_flags(operation, value))
        with self._lock:
            self._writes += 1
            self._snapshot = fresh
            self._read_at = time.monotonic()
        return fresh

    def set_enabled(self, enabled: bool) -> FlagState:
        return self._write("enabled", str(int(bool(enabled))))

    def set_percent(self, percent: float) -> FlagState:
        return self._write("percent", repr(RolloutPolicy.check_percent(percent)))

    def add_test_user(self, user_id: str) -> FlagState:
        return self._write("add_user", user_id)

    def remove_test_user(self, user_id: str) -> FlagState:
        return self._write("remove_user", user_id)

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
        self._last_spent[user_id] = total
        if not ok:
            raise BudgetExceededError(user_id, total / _NANO, limit or 0.0, amount)
        return total / _NANO

    def _local_reserve(self, user_id: str, nanos: int, limit: float | None) -> float:
        known = self._last_spent.get(user_id, 0)
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
            total = int(self._call(lambda: self._client.incrby(self._spend_prefix + user_id, nanos)))
        except FlagStoreUnavailableError:
            return (self._last_spent.get(user_id, 0) + self._fallback.add(user_id, nanos)) / _NANO
        self._last_spent[user_id] = total
        return total / _NANO

    def spent(self, user_id: str) -> float:
        try:
            total = int(self._call(lambda: self._client.get(self._spend_prefix + user_id)) or 0)
        except FlagStoreUnavailableError:
            return (self._last_spent.get(user_id, 0) + self._fallback.get(user_id)) / _NANO
        self._last_spent[user_id] = total
        return total / _NANO

    def reset_spend(self, user_id: str | None = None) -> None:
        def run() -> None:
            if user_id is not None:
                self._client.delete(self._spend_prefix + user_id)
                return
            keys = list(self._client.scan_iter(match=self._spend_prefix + "*"))
            if keys:
                self._client.delete(*keys)

        self._call(run)
        self._fallback.clear(user_id)
        if user_id is None:
            self._last_spent.clear()
        else:
            self._last_spent.pop(user_id, None)

    def close(self) -> None:
        self._client.close()


def _parse_flags(raw: Sequence[Any], users: Sequence[Any]) -> FlagState:
    """The flags from the script's reply: HGETALL as a flat [field, value, ...] list."""
    fields = dict(zip(raw[::2], raw[1::2], strict=True))
    try:
        return FlagState(
            enabled=fields["enabled"] == "1",
            percent=RolloutPolicy.check_percent(float(fields["percent"])),
            test_users=frozenset(users),
            salt=fields["salt"],
            version=int(fields["version"]),
        )
    except (KeyError, ValueError) as exc:
        raise _UnreadableFlagsError(f"unreadable rollout flags in Redis: {fields!r} ({exc})") from None


def _safe_url(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` query), for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def store_from_url(url: str | None, *, initial: FlagState | None = None) -> FlagStore:
    """A store for `LUCKY_STATE_URL`: none or ``memory://`` → this process; ``redis://``,
    ``rediss://`` or ``unix://`` → Redis (needs the `redis` extra)."""
    if not url or url.startswith("memory:"):
        return MemoryFlagStore(initial)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisFlagStore(url, initial=initial)
    raise FlagStoreUnavailableError(
        f"unsupported state store URL scheme in {_safe_url(url)!r} (use redis://)"
    )
