"""Who is in the rollout: a pure, stable decision from the flags and a user id.

Users are hashed with a salt into 10,000 buckets with blake2b (never Python's `hash()`, which is
salted per process), so a user gets the same answer in every process and every replica, and a
user in the rollout at 10 % is still in it at 50 %: raising the percentage only adds users.

Order of the rules: the kill switch (models disabled) sends everyone to the legacy path, test
users included; then test users take the registry path; then anonymous calls (no user id) take
the registry path only at 100 %, since there is nothing to keep them sticky; then the bucket.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from .errors import LuckyError

__all__ = ["BUCKETS", "Decision", "RolloutError", "RolloutPolicy", "bucket_of", "in_rollout"]

BUCKETS = 10_000

Path = Literal["registry", "legacy"]
Reason = Literal["killed", "test_user", "percent", "anonymous", "outside_percent"]


class RolloutError(LuckyError, ValueError):
    """A rollout setting is invalid (e.g. a percentage outside 0–100)."""


def bucket_of(user_id: str, salt: str) -> int:
    """The user's bucket in [0, 10000): stable across processes, machines and Python versions."""
    # surrogatepass: any str hashes (a lone surrogate from a JSON body must not raise), and valid
    # ids encode exactly as with plain UTF-8, so existing buckets do not move.
    key = f"{salt}:{user_id}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_rollout(user_id: str | None, percent: float, salt: str) -> bool:
    """Whether the user's bucket falls under `percent` (0–100). Anonymous users (no id) have no
    stable bucket, so they are in only at 100 %."""
    if not user_id:
        return percent >= 100
    return bucket_of(user_id, salt) < percent * (BUCKETS // 100)


@dataclass(frozen=True)
class Decision:
    """Which path a call takes, and why (shown in routing and telemetry)."""

    path: Path
    reason: Reason


@dataclass(frozen=True)
class RolloutPolicy:
    """The rollout rules as a value: `RolloutPolicy(percent=25).decide("user-1")`."""

    enabled: bool = True
    percent: float = 100.0
    test_users: frozenset[str] = field(default_factory=frozenset)
    salt: str = "lucky"

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", self.check_percent(self.percent))
        object.__setattr__(self, "test_users", frozenset(self.test_users))

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "KILLED"
        return (
            f"RolloutPolicy({state}, percent={self.percent:g}, test_users={len(self.test_users)}, "
            f"salt={self.salt!r})"
        )

    def decide(self, user_id: str | None) -> Decision:
        if not self.enabled:
            return Decision("legacy", "killed")
        if user_id and user_id in self.test_users:
            return Decision("registry", "test_user")
        if not user_id:
            return Decision("registry" if self.percent >= 100 else "legacy", "anonymous")
        if in_rollout(user_id, self.percent, self.salt):
            return Decision("registry", "percent")
        return Decision("legacy", "outside_percent")

    @staticmethod
    def check_percent(value: object) -> float:
        """The percentage as a float in [0, 100]; anything else is a `RolloutError` naming it.

        Any real number is accepted (int, float, Decimal, numpy scalars); booleans are refused
        because `True` would silently mean 1 %.
        """
        if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
            raise RolloutError(f"rollout percent must be a number from 0 to 100, got {value!r}")
        try:
            percent = float(value)
        except (ValueError, OverflowError):  # a signalling NaN, a Fraction too big for a float
            percent = math.nan
        if math.isnan(percent) or not 0 <= percent <= 100:
            raise RolloutError(f"rollout percent must be from 0 to 100, got {value!r}")
        return percent
