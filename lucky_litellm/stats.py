"""In-process performance figures, readable without an OpenTelemetry collector (`Models.stats()`).

Memory stays bounded however long the process lives and however many distinct models and users
it sees: latencies go into a log-bucketed sketch (percentiles within 1 %, at most
`LatencySketch.MAX_BUCKETS` buckets, lifetime rather than a recent window), counters are plain
numbers, and the model and user tables keep the most recently used `max_models` / `max_users`
entries, dropping the least recently used one when full.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import UsageError
from .routing import Routing

__all__ = ["DEFAULT_MAX_MODELS", "DEFAULT_MAX_USERS", "LatencySketch", "Stats"]

DEFAULT_MAX_MODELS = 1_000
DEFAULT_MAX_USERS = 10_000

_V = TypeVar("_V")


class LatencySketch:
    """Quantiles of a stream of positive values with bounded relative error (a DDSketch).

    Value v falls into bucket ceil(log_gamma(v)); a bucket's estimate is within `RELATIVE_ERROR`
    of every value in it. Values are clamped to [`MIN_MS`, `MAX_MS`], so the number of buckets
    can never exceed `MAX_BUCKETS` (about 1,200) whatever is recorded.
    """

    RELATIVE_ERROR = 0.01
    MIN_MS = 0.001
    MAX_MS = 10_000_000.0  # ~2.8 hours
    _GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
    _LOG_GAMMA = math.log(_GAMMA)
    MAX_BUCKETS = math.ceil(math.log(MAX_MS) / _LOG_GAMMA) - math.floor(math.log(MIN_MS) / _LOG_GAMMA) + 1

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, value_ms: float) -> None:
        value = min(max(value_ms, self.MIN_MS), self.MAX_MS)
        index = math.ceil(math.log(value) / self._LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def quantile(self, q: float) -> float | None:
        """The value at fraction `q` (0..1) of the recorded values, or None when empty."""
        if not self.count:
            return None
        rank = round(q * (self.count - 1))  # nearest rank
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                estimate = 2 * self._GAMMA**index / (self._GAMMA + 1)
                return min(max(estimate, self.min), self.max)
        return self.max  # pragma: no cover - rank < count always ends the loop

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class _ModelStats:
    calls: int = 0
    errors: int = 0
    wins: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency: LatencySketch = field(default_factory=LatencySketch)

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "wins": self.wins,
            "cancelled": self.cancelled,
            "error_rate": self.errors / self.calls if self.calls else 0.0,
            "p50_ms": _rounded(self.latency.quantile(0.50)),
            "p95_ms": _rounded(self.latency.quantile(0.95)),
            "p99_ms": _rounded(self.latency.quantile(0.99)),
            "mean_ms": _rounded(self.latency.mean),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass
class _UserStats:
    calls: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    cost_limit: float | None = None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _touch(table: OrderedDict[str, _V], key: str, factory: Callable[[], _V], limit: int) -> tuple[_V, bool]:
    """The entry for `key`, created (evicting the least recently used if full) and marked recent."""
    entry = table.get(key)
    if entry is not None:
        table.move_to_end(key)
        return entry, False
    evicted = False
    while len(table) >= limit:
        table.popitem(last=False)
        evicted = True
    entry = table[key] = factory()
    return entry, evicted


class Stats:
    """Counters per model and per user; `enabled=False` (performanceTracking: false) records nothing."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        max_models: int = DEFAULT_MAX_MODELS,
        max_users: int = DEFAULT_MAX_USERS,
    ) -> None:
        if max_models < 1 or max_users < 1:
            raise UsageError("max_models and max_users must be at least 1")
        self.enabled = enabled
        self.max_models = max_models
        self.max_users = max_users
        self._lock = threading.Lock()
        self._models: OrderedDict[str, _ModelStats] = OrderedDict()
        self._users: OrderedDict[str, _UserStats] = OrderedDict()
        self._evicted_models = 0
        self._evicted_users = 0

    def record(self, routing: Routing, user_id: str | None, cost_limit: float | None) -> None:
        """Count one finished request: each attempt under its model, the request under its user."""
        if not self.enabled:
            return
        with self._lock:
            for attempt in routing.attempts:
                if attempt.outcome == "skipped":
                    continue
                stats, evicted = _touch(self._models, attempt.model, _ModelStats, self.max_models)
                self._evicted_models += evicted
                stats.calls += 1
                if attempt.outcome == "failed":
                    stats.errors += 1
                elif attempt.outcome == "won":
                    stats.wins += 1
                if attempt.outcome == "cancelled":
                    # a cancelled call's duration says when another model answered, not how fast this one is
                    stats.cancelled += 1
                else:
                    stats.latency.add(attempt.latency_ms)
                stats.input_tokens += attempt.input_tokens or 0
                stats.output_tokens += attempt.output_tokens or 0
                stats.cost_usd += attempt.cost_usd
            if user_id is not None:
                user, evicted = _touch(self._users, user_id, _UserStats, self.max_users)
                self._evicted_users += evicted
                user.calls += 1
                user.errors += routing.winner is None
                user.cost_usd += routing.cost_usd
                user.cost_limit = cost_limit

    def snapshot(self, spent: Callable[[str], float] | None = None) -> dict[str, Any]:
        """Per model: calls, errors, wins, latency percentiles, tokens, cost. Per user: requests,
        errors, cost in this process, total spend (from `spent`, e.g. the shared flag store) and
        the share of `costLimit` used."""
        with self._lock:
            models = {name: stats.summary() for name, stats in self._models.items()}
            users_raw = [
                (user_id, user.calls, user.errors, user.cost_usd, user.cost_limit)
                for user_id, user in self._users.items()
            ]
            evicted = {"models": self._evicted_models, "users": self._evicted_users}
        users = {}
        for user_id, calls, errors, cost, limit in users_raw:  # `spent` may do I/O: outside the lock
            total = spent(user_id) if spent else cost
            users[user_id] = {
                "calls": calls,
                "errors": errors,
                "cost_usd": cost,
                "spent_usd": total,
                "cost_limit": limit,
                "budget_used": (total / limit) if limit else None,
            }
        return {"enabled": self.enabled, "models": models, "users": users, "evicted": evicted}

    def reset(self) -> None:
        with self._lock:
            self._models.clear()
            self._users.clear()
            self._evicted_models = 0
            self._evicted_users = 0
