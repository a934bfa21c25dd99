"""Per-user spend: reservations checked against `costLimit`, settlements, and the outage policy.

Spend is counted in integer nano-dollars, so concurrent increments never drift as floats would.

With Redis (``<prefix>spend:<user>`` counters), a reservation is one Lua script that checks and
adds atomically, so processes cannot overspend together; it is the only Redis call a request
waits for, and it goes through `redis.asyncio` (never blocking the event loop). Settling never
waits and never raises: the difference between reservation and cost goes to a local *pending*
ledger that the syncer thread pushes to Redis every 0.1 s, in numbered batches applied exactly
once (a batch whose reply was lost is sent again and skipped if it had landed). Reads add what
is still pending, so a process always sees its own spend. Reservations made in the same turn of
the event loop share one pipelined round trip.

While Redis is unreachable (`state.onOutage`):

- ``fail-closed``: budgeted calls are refused (`BudgetUnavailableError`);
- ``local-share`` (default): each process may spend at most its share of what remained, the
  user's last known total subtracted from the limit and divided by the number of live replicas
  (heartbeats in Redis). A process that does not know the user's total, or the fleet's size,
  refuses, since it cannot know its share. The shares use what each process last read; spend
  other processes recorded after that (at most a heartbeat, `HEARTBEAT_S`) is not in them.

Everything counted during an outage is pushed to Redis, in one transaction, before Redis is
declared back, so no reservation afterwards is checked without it; with Redis persisting to an
append-only file, nothing recorded is lost across a Redis restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from typing import Any, Literal

from ..errors import BudgetExceededError, BudgetUnavailableError, StateUnavailableError
from .redis import HEARTBEAT_S, RedisConnection

__all__ = ["NANO", "Ledger", "OutagePolicy", "RedisSpendStore", "SpendStore", "nanos"]

logger = logging.getLogger("lucky_litellm.state")

OutagePolicy = Literal["fail-closed", "local-share"]
NANO = 1_000_000_000
_MAX_KNOWN_USERS = 10_000


def nanos(usd: float) -> int:
    return round(usd * NANO)


class SpendStore(ABC):
    """Per-user spend. The request path awaits `reserve` and calls `settle`, which neither waits
    nor raises; `spent_sync` and `reset` are for the CLI and admin code (they may block)."""

    shared: bool = False

    @abstractmethod
    async def reserve(self, user_id: str, amount: float, limit: float | None) -> float:
        """Add `amount` to the user's spend unless that would pass `limit`, or the user already
        reached it (then `BudgetExceededError`, nothing added); returns the new total. Check and
        add are one atomic step, so concurrent requests can never overspend together."""

    @abstractmethod
    def settle(self, user_id: str, reserved: float, actual: float) -> float:
        """Replace a reservation by the actual cost; returns this process's view of the total.
        Never raises, never waits on I/O."""

    def add(self, user_id: str, amount: float) -> float:
        """Record spend that needed no reservation (no limit); like `settle`, never raises."""
        return self.settle(user_id, 0.0, amount)

    @abstractmethod
    async def spent(self, user_id: str) -> float: ...

    @abstractmethod
    def spent_sync(self, user_id: str) -> float:
        """`spent` for synchronous callers (CLI, stats); not for the event loop."""

    def cached(self, user_id: str) -> float:
        """The user's total as this process knows it, without I/O."""
        return self.spent_sync(user_id)

    @abstractmethod
    def reset(self, user_id: str | None = None) -> None:
        """Forget one user's spend, or everyone's."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Push what is pending and release connections."""


class Ledger:
    """Thread-safe spend counters in nano-dollars."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nanos: dict[str, int] = {}

    def reserve(self, user_id: str, amount: int, limit: int | None) -> int:
        with self.lock:
            spent = self.nanos.get(user_id, 0)
            if limit is not None and (spent + amount > limit or (amount <= 0 and spent >= limit)):
                raise BudgetExceededError(user_id, spent / NANO, limit / NANO, amount / NANO)
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
            return {user: amount for user, amount in taken.items() if amount}

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


# KEYS[1]: the user's spend counter. ARGV: amount and limit in nano-dollars (limit < 0: none).
# Returns {1, new total} or {0, current total} when the amount does not fit.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and (spent + amount > limit or (amount <= 0 and spent >= limit)) then
  return {0, spent}
end
if amount == 0 then return {1, spent} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""

# Pushes are idempotent: a batch whose reply was lost is sent again with the same number.
# KEYS[1]: this process's last applied batch number; KEYS[2..]: counters. ARGV[1]: the batch
# number, ARGV[2..]: the deltas. Returns the counters' new totals ({} if already applied).
_PUSH = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return {} end
local totals = {}
for i = 2, #KEYS do totals[i - 1] = redis.call('INCRBY', KEYS[i], ARGV[i]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400)
return totals
"""


class RedisSpendStore(SpendStore):
    """Spend shared through Redis by every process with the same URL and prefix."""

    shared = True

    def __init__(self, connection: RedisConnection, *, on_outage: OutagePolicy = "local-share") -> None:
        self._connection = connection
        self.on_outage: OutagePolicy = on_outage
        self._prefix = f"{connection.prefix}spend:"
        self._applied_key = f"{connection.prefix}applied:{connection.replica_id}"
        self._lock = threading.Lock()
        self._pending = Ledger()
        """Spend recorded here and not yet in Redis (settlements, everything during an outage)."""
        self._push_lock = threading.Lock()
        self._batch: tuple[int, dict[str, int]] | None = None
        """The pushed batch whose arrival is not confirmed yet: sent again, same number, until it is."""
        self._batch_number = 0
        self._known: dict[str, int] = {}
        """Each user's last total read from Redis: the base of the outage share."""
        self._outage = Ledger()
        """What this process counted per user since the outage began (reset when Redis is back)."""
        self._push = connection.sync_client.register_script(_PUSH)
        self._refreshed_at = float("-inf")
        connection.on_recovery(self._recover)
        connection.on_tick(self._tick)
        connection.on_fork(self._forked)
        with contextlib.suppress(Exception):  # so the first reservation needs no NOSCRIPT round trip
            connection.sync_client.script_load(_RESERVE)

    def _forked(self) -> None:
        """A forked child is a new replica: what is pending belongs to the parent, which pushes it."""
        self._lock, self._push_lock = threading.Lock(), threading.Lock()
        self._pending, self._outage, self._batch, self._batch_number = Ledger(), Ledger(), None, 0
        self._applied_key = f"{self._connection.prefix}applied:{self._connection.replica_id}"

    def __repr__(self) -> str:
        return f"RedisSpendStore({self._connection.location}, on_outage={self.on_outage!r})"

    def _key(self, user_id: str) -> str:
        return self._prefix + user_id

    def _remember(self, user_id: str, total: int) -> None:
        known = self._known
        if user_id not in known and len(known) >= _MAX_KNOWN_USERS:
            known.pop(next(iter(known)))
        known[user_id] = total

    def _local(self, user_id: str) -> int:
        """This process's spend for the user that Redis may not hold yet."""
        batch = self._batch
        return self._pending.get(user_id) + (batch[1].get(user_id, 0) if batch else 0)

    def cached(self, user_id: str) -> float:
        """The user's total as this process knows it, without I/O (last read + own pending)."""
        return (self._known.get(user_id, 0) + self._local(user_id)) / NANO

    # -- the request path ----------------------------------------------------------------------

    async def reserve(self, user_id: str, amount: float, limit: float | None) -> float:
        self._connection.serving = True
        amount_n, limit_n = nanos(amount), (-1 if limit is None else nanos(limit))
        try:
            ok, total = await self._reserve_in_redis(user_id, amount_n, limit_n)
        except StateUnavailableError:
            return self._reserve_during_outage(user_id, amount_n, limit) / NANO
        if not ok:
            raise BudgetExceededError(user_id, (total + self._local(user_id)) / NANO, limit or 0.0, amount)
        return (total + self._local(user_id)) / NANO

    async def _reserve_in_redis(self, user_id: str, amount: int, limit: int) -> tuple[int, int]:
        key = self._key(user_id)

        def refund(reply: Any) -> None:  # reserved in Redis for a caller that gave up waiting
            if int(reply[0]) and amount:
                self._pending.add(user_id, -amount)

        reply = await self._connection.call(
            lambda client: client.eval(_RESERVE, [key], [amount, limit], refund)
        )
        ok, total = int(reply[0]), int(reply[1])
        self._remember(user_id, total)
        return ok, total

    def _reserve_during_outage(self, user_id: str, amount: int, limit: float | None) -> int:
        known = self._known.get(user_id)
        if limit is None:
            self._record(user_id, amount)
            return (known or 0) + self._local(user_id)
        if self.on_outage == "fail-closed":
            raise BudgetUnavailableError(
                user_id,
                f"the shared ledger at {self._connection.location} is unreachable (onOutage: fail-closed)",
            )
        replicas = self._connection.replicas
        if known is None or replicas is None:
            raise BudgetUnavailableError(
                user_id,
                "the shared ledger is unreachable and this process has not read the user's spend "
                "(or the fleet's size) since it started, so it cannot know its share",
            )
        limit_n = nanos(limit)
        share = max(0, limit_n - known) // max(1, replicas)
        with self._lock:
            used = self._outage.get(user_id)
            if used + amount > share or (amount <= 0 and known + used >= limit_n):
                raise BudgetExceededError(user_id, (known + used) / NANO, limit, amount / NANO)
            self._record(user_id, amount)
        return known + self._local(user_id)

    def _record(self, user_id: str, amount: int) -> None:
        self._pending.add(user_id, amount)
        if self._connection.down:
            self._outage.add(user_id, amount)

    def settle(self, user_id: str, reserved: float, actual: float) -> float:
        try:
            delta = nanos(actual) - nanos(reserved)
            if delta:
                with self._lock:
                    self._record(user_id, delta)
            return self.cached(user_id)
        except Exception:  # settling must never fail a request
            logger.exception("could not record the spend of user %r", user_id)
            return 0.0

    async def spent(self, user_id: str) -> float:
        try:
            _, total = await self._reserve_in_redis(user_id, 0, -1)
        except StateUnavailableError:
            return self.cached(user_id)
        return (total + self._local(user_id)) / NANO

    # -- synchronous: CLI, admin, the syncer ---------------------------------------------------

    def spent_sync(self, user_id: str) -> float:
        try:
            total = int(self._connection.call_sync(lambda c: c.get(self._key(user_id))) or 0)
        except StateUnavailableError:
            return self.cached(user_id)
        self._remember(user_id, total)
        return (total + self._local(user_id)) / NANO

    def reset(self, user_id: str | None = None) -> None:
        def run(client: Any) -> None:
            if user_id is not None:
                client.delete(self._key(user_id))
                return
            keys = list(client.scan_iter(match=self._prefix + "*"))
            if keys:
                client.delete(*keys)

        with self._push_lock:
            self._connection.call_sync(run)
            for ledger in (self._pending, self._outage):
                ledger.clear(user_id)
            if self._batch is not None:
                number, amounts = self._batch
                kept = {} if user_id is None else {u: a for u, a in amounts.items() if u != user_id}
                self._batch = (number, kept) if kept else None
            if user_id is None:
                self._known.clear()
            else:
                self._known.pop(user_id, None)

    def push_pending(self) -> None:
        """Send the unconfirmed batch again, or the pending spend as a new batch (sync client).
        An outage error propagates and the batch stays; it is applied exactly once."""
        with self._push_lock:
            if self._batch is None:
                pending = self._pending.take_all()
                if not pending:
                    return
                self._batch_number += 1
                self._batch = (self._batch_number, pending)
            number, amounts = self._batch
            keys = [self._applied_key, *(self._key(user) for user in amounts)]
            args = [number, *amounts.values()]
            try:
                totals = self._connection.call_sync(lambda c: self._push(keys=keys, args=args, client=c))
            except StateUnavailableError:
                raise
            except Exception as exc:  # e.g. a spend key of the wrong type: retrying cannot help
                logger.warning("could not add pending spend to Redis (%s): dropped", type(exc).__name__)
                self._batch = None
                return
            self._batch = None
            for user_id, total in zip(amounts, totals or (), strict=False):
                self._remember(user_id, int(total))

    def _recover(self) -> None:
        """Before Redis is declared back: the outage's spend lands first."""
        for _ in range(3):  # what was recorded while pushing goes too
            self.push_pending()
            if not self._pending.nanos:
                break
        self._outage.clear()

    def _tick(self, now: float) -> None:
        self.push_pending()
        if not self._connection.serving or now - self._refreshed_at < HEARTBEAT_S or not self._known:
            return
        users = list(self._known)
        totals = self._connection.call_sync(lambda c: c.mget([self._key(u) for u in users]))
        for user_id, total in zip(users, totals, strict=True):
            self._remember(user_id, int(total or 0))
        self._refreshed_at = now

    def close(self) -> None:
        try:
            self.push_pending()
        except Exception:  # best effort at shutdown
            logger.warning("spend still pending at close could not reach Redis")
