"""Moved to `lucky_litellm.state` (flags, spend, Redis connection, memory): kept as an alias."""

from __future__ import annotations

from .errors import StateUnavailableError as FlagStoreUnavailableError
from .state import FlagState, FlagStore, MemoryFlagStore, RedisFlagStore, State, state_from_url

__all__ = [
    "FlagState",
    "FlagStore",
    "FlagStoreUnavailableError",
    "MemoryFlagStore",
    "RedisFlagStore",
    "State",
    "state_from_url",
]
