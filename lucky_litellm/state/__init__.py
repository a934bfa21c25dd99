"""Shared state for fleets: rollout flags and per-user spend, in this process or in Redis.

`state_from_url(LUCKY_STATE_URL)` gives a `State`: its `flags` (a cached, versioned snapshot
read with no I/O on the request path) and its `spend` (reservations awaited through
`redis.asyncio`, settlements that never wait). See `flags`, `spend` and `redis` for the rules
that keep a kill switch through restarts and budgets through outages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..errors import StateUnavailableError
from ..guard.store import GuardStore, MemoryGuardStore, RedisGuardStore
from .flags import FlagState, FlagStore, RedisFlagStore
from .memory import MemoryFlagStore, MemorySpendStore
from .redis import RedisConnection, safe_url
from .spend import OutagePolicy, RedisSpendStore, SpendStore

__all__ = [
    "FlagState",
    "FlagStore",
    "MemoryFlagStore",
    "MemorySpendStore",
    "OutagePolicy",
    "RedisConnection",
    "RedisFlagStore",
    "RedisSpendStore",
    "SpendStore",
    "State",
    "StateUnavailableError",
    "state_from_url",
]


@dataclass
class State:
    """The flags and the spend ledger of one registry, and where they live."""

    flags: FlagStore
    spend: SpendStore
    connection: RedisConnection | None = None
    guard: GuardStore = field(default=None)  # type: ignore[assignment]  # set in __post_init__
    """The guarded rollout's state (`lucky_litellm.guard`), next to the flags it drives."""

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = MemoryGuardStore(self.flags)

    @property
    def shared(self) -> bool:
        """Whether other processes see this state (Redis), or only this one (memory)."""
        return self.connection is not None

    @property
    def location(self) -> str:
        return self.flags.location

    def spent(self, user_id: str) -> float:
        """A user's total spend for synchronous code. Read from the store, except on a thread
        running an event loop (a proxy's pre-call check, a stats route): blocking there would
        freeze every request, so it answers from what this process knows (refreshed every
        second while serving, plus its own spend since)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.spend.spent_sync(user_id)
        return self.spend.cached(user_id)

    def close(self) -> None:
        self.guard.close()
        self.spend.close()
        self.flags.close()
        if self.connection is not None:
            self.connection.close()


def memory_state(initial: FlagState | None = None) -> State:
    return State(MemoryFlagStore(initial), MemorySpendStore())


def state_from_url(
    url: str | None,
    *,
    initial: FlagState | None = None,
    on_outage: OutagePolicy = "local-share",
    prefix: str = "lucky:",
) -> State:
    """The state for `LUCKY_STATE_URL`: none or ``memory://`` → this process; ``redis://``,
    ``rediss://`` or ``unix://`` → Redis (needs the `redis` extra)."""
    if not url or url.startswith("memory:"):
        return memory_state(initial)
    if url.startswith(("redis://", "rediss://", "unix://")):
        connection = RedisConnection(url, prefix=prefix)
        spend = RedisSpendStore(connection, on_outage=on_outage)
        flags = RedisFlagStore(connection, initial=initial)
        guard = RedisGuardStore(connection, flags)
        connection.start()
        return State(flags, spend, connection, guard)
    raise StateUnavailableError(f"unsupported state store URL scheme in {safe_url(url)!r} (use redis://)")
