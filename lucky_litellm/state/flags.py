"""Rollout flags: a versioned snapshot, read from a cache on the request path.

A kill switch must survive anything short of losing every copy of it. Redis holds the flags
(``<prefix>flags`` hash: enabled, percent, salt, version, seeded; ``<prefix>test_users`` set),
and every process keeps the newest state it has read. The rules, enforced by one Lua script so
each step is atomic:

- every write bumps `version`; flags written by an operator are authoritative (``seeded=0``);
- a process that has never read the shared state never writes its configured defaults into
  Redis: reading an empty Redis leaves it empty;
- a process that has read the flags re-seeds an empty Redis (a restart without persistence)
  with the newest state it knows (``seeded=1``), and a re-seeded state is replaced by a known
  state with a higher version, so the newest known state wins whoever reaches Redis first;
- a write by a process that knows nothing, on an empty Redis, first waits briefly for a running
  process to re-seed, so an operator's ``rollout percent`` never resurrects ``enabled: true``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..bucketing import RolloutPolicy
from ..errors import StateUnavailableError
from .redis import REFRESH_S, RedisConnection

__all__ = ["FlagState", "FlagStore", "RedisFlagStore", "UnreadableFlagsError"]

logger = logging.getLogger("lucky_litellm.state")

RESEED_WAIT_S = 1.5
"""How long a write that found Redis empty waits for a running process to re-seed the flags."""


class UnreadableFlagsError(StateUnavailableError):
    """Someone wrote something into the flags hash that is not a valid rollout state."""


@dataclass(frozen=True)
class FlagState:
    """A snapshot of the rollout flags; `version` grows with every write (0: never written)."""

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
    """Rollout flags. `current()` is the request path: a cached snapshot, no I/O, never raises.
    Writes and `read()` are administrative and synchronous (CLI, admin code); thread-safe."""

    shared: bool = False
    """Whether other processes see this store's flags."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the flags are read from, for people."""

    @abstractmethod
    def current(self) -> FlagState:
        """The flags as last known; fast (a field read), never raises, never blocks."""

    def read(self) -> FlagState:
        """The flags read now from the store (the CLI's `status`); raises `StateUnavailableError`."""
        return self.current()

    @abstractmethod
    def set_enabled(self, enabled: bool) -> FlagState: ...

    @abstractmethod
    def set_percent(self, percent: float) -> FlagState:
        """Validated by `RolloutPolicy.check_percent` (a `RolloutError` leaves the flags as they were)."""

    @abstractmethod
    def add_test_user(self, user_id: str) -> FlagState: ...

    @abstractmethod
    def remove_test_user(self, user_id: str) -> FlagState: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# KEYS: flags hash, test-user set. ARGV: operation, its value, whether the caller knows the
# shared state (1/0), then its state: enabled, percent, salt, version, test users...
# A known state seeds an empty hash, or replaces a re-seeded one with a lower version; an
# operation on an empty hash by a caller that knows nothing starts from the caller's state.
# Returns {} when the hash is (still) empty, else the flags hash and the test users.
_SYNC_FLAGS = """
local function write_state()
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'enabled', ARGV[4], 'percent', ARGV[5], 'salt', ARGV[6],
             'version', ARGV[7], 'seeded', '1')
  for i = 8, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
end
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[3] == '1' then
  if not exists then
    write_state()
  elseif redis.call('HGET', KEYS[1], 'seeded') == '1'
         and tonumber(redis.call('HGET', KEYS[1], 'version') or '0') < tonumber(ARGV[7]) then
    write_state()
  end
end
local op = ARGV[1]
if op ~= 'read' then
  if redis.call('EXISTS', KEYS[1]) == 0 then write_state() end
  if op == 'enabled' or op == 'percent' then redis.call('HSET', KEYS[1], op, ARGV[2])
  elseif op == 'add_user' then redis.call('SADD', KEYS[2], ARGV[2])
  elseif op == 'remove_user' then redis.call('SREM', KEYS[2], ARGV[2])
  else return redis.error_reply('unknown flag operation ' .. op) end
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('HSET', KEYS[1], 'seeded', '0')
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
"""


class RedisFlagStore(FlagStore):
    """Flags shared through Redis. `initial` (the models config's rollout section) is what this
    process uses until it has read Redis; it is never written there on its own."""

    shared = True

    def __init__(
        self,
        connection: RedisConnection,
        *,
        initial: FlagState | None = None,
        refresh_s: float = REFRESH_S,
        reseed_wait_s: float = RESEED_WAIT_S,
    ) -> None:
        self._connection = connection
        self._flags_key = f"{connection.prefix}flags"
        self._users_key = f"{connection.prefix}test_users"
        self._refresh_s = refresh_s
        self._reseed_wait_s = reseed_wait_s
        self._lock = threading.Lock()
        self._snapshot = initial or FlagState()
        self._known = False
        """Whether `_snapshot` came from Redis (only then may it seed Redis)."""
        self._read_at = float("-inf")
        self._writes = 0
        self._bad_flags_logged = False
        self._script = connection.sync_client.register_script(_SYNC_FLAGS)
        connection.on_tick(self._tick)
        connection.on_recovery(self._refresh)
        connection.on_fork(self._forked)
        with contextlib.suppress(StateUnavailableError):
            self._refresh()  # the first read, before any request: a kill switch applies at once

    def _forked(self) -> None:
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisFlagStore({self._connection.location})"

    @property
    def location(self) -> str:
        return self._connection.location

    @property
    def known(self) -> bool:
        """Whether this process has read the shared flags at least once."""
        return self._known

    def current(self) -> FlagState:
        connection = self._connection
        if not connection.serving:  # the first request (or the first in a forked child)
            connection.serving = True
            connection.ensure_started()
        return self._snapshot

    def read(self) -> FlagState:
        self._refresh(raise_errors=True)
        return self._snapshot

    # -- syncing -------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if now - self._read_at >= self._refresh_s:
            self._refresh()

    def _refresh(self, raise_errors: bool = False) -> None:
        writes = self._writes
        try:
            fresh = self._run("read")
        except UnreadableFlagsError as exc:  # garbage in Redis must not fail requests
            if raise_errors:
                raise
            if not self._bad_flags_logged:
                self._bad_flags_logged = True
                logger.warning("%s; keeping the last known flags", exc)
            return
        self._bad_flags_logged = False
        self._read_at = time.monotonic()
        if fresh is not None:
            with self._lock:
                if self._writes == writes:  # a write during the read knows better
                    self._snapshot, self._known = fresh, True

    def _run(self, operation: str, value: str = "") -> FlagState | None:
        seed = self._snapshot  # what an empty Redis gets: the newest flags this process knew
        args: list[Any] = [
            operation,
            value,
            int(self._known),
            int(seed.enabled),
            repr(float(seed.percent)),
            seed.salt,
            seed.version,
            *sorted(seed.test_users),
        ]
        keys = [self._flags_key, self._users_key]
        try:
            reply = self._connection.call_sync(lambda c: self._script(keys=keys, args=args, client=c))
        except StateUnavailableError:
            raise
        except Exception as exc:  # e.g. a key of the wrong type: Redis answered, but not with flags
            raise UnreadableFlagsError(f"could not use the rollout flags in Redis ({exc})") from None
        if not reply:
            return None
        raw, users = reply
        return _parse_flags(raw, users)

    # -- writes --------------------------------------------------------------------------------

    def _write(self, operation: str, value: str) -> FlagState:
        if not self._known:
            self._await_shared_state()
        fresh = self._run(operation, value)
        assert fresh is not None  # a write always leaves the hash in place
        with self._lock:
            self._writes += 1
            self._snapshot, self._known = fresh, True
            self._read_at = time.monotonic()
        return fresh

    def _await_shared_state(self) -> None:
        """Before this process's first write: read the flags, and if Redis is empty (restarted
        without persistence) give running processes a moment to re-seed what they know."""
        self._refresh(raise_errors=True)
        if self._known or not self._connection.other_replicas():
            return  # a fresh Redis, or nobody running who could know better
        deadline = time.monotonic() + self._reseed_wait_s
        while not self._known and time.monotonic() < deadline:
            time.sleep(0.05)
            self._refresh(raise_errors=True)

    def set_enabled(self, enabled: bool) -> FlagState:
        return self._write("enabled", str(int(bool(enabled))))

    def set_percent(self, percent: float) -> FlagState:
        return self._write("percent", repr(RolloutPolicy.check_percent(percent)))

    def add_test_user(self, user_id: str) -> FlagState:
        return self._write("add_user", user_id)

    def remove_test_user(self, user_id: str) -> FlagState:
        return self._write("remove_user", user_id)


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
        raise UnreadableFlagsError(f"unreadable rollout flags in Redis: {fields!r} ({exc})") from None


def updated(state: FlagState, change: Callable[[FlagState], FlagState]) -> FlagState:
    """`change(state)` with the version bumped: how an in-process store writes."""
    return replace(change(state), version=state.version + 1)
