"""What the guard knows about one path (registry or legacy) in one stage: mergeable counters.

Every figure the decision needs is a sum, so a summary is a flat mapping of counters that any
number of processes can add to concurrently (Redis ``HINCRBYFLOAT``) and that merges by adding:

- ``calls``, ``errors``: every call of the path, and the failed ones (error rate);
- ``cost``, ``cost_sq``: sum and sum of squares of each call's cost in USD, failed calls included
  (a registry path whose retries cost money while failing must show it);
- ``lat:<i>``: a latency histogram of the *successful* calls over fixed log-spaced buckets (bucket
  ``i`` holds ``[LATENCY_MIN_S·γ^i, LATENCY_MIN_S·γ^(i+1))`` with ``γ = LATENCY_GROWTH``), so p95 can
  be bounded from counts alone, every process buckets alike, and memory stays bounded. Failed
  calls are left out: a path that fails fast must not look faster for it (errors count in
  ``errors``);
- ``fb:<name>:n``, ``fb:<name>:sum``, ``fb:<name>:sq``: user feedback (``ll.feedback``) per name.

`PathSummary.increments(obs)` gives the deltas one observation adds, `from_counters` reads a
mapping back (Redis returns bytes), `to_counters` writes one, `merge` adds two summaries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..errors import LuckyError

__all__ = [
    "LATENCY_BUCKETS",
    "LATENCY_GROWTH",
    "LATENCY_MIN_S",
    "CallObservation",
    "FeedbackObservation",
    "Moments",
    "Observation",
    "Path",
    "PathSummary",
    "SummaryError",
    "latency_bucket",
    "latency_bucket_bounds",
]

Path = Literal["registry", "legacy"]
PATHS: tuple[Path, ...] = ("registry", "legacy")

LATENCY_MIN_S = 1e-4
"""Lower edge of bucket 0 (0.1 ms); faster calls land in bucket 0."""
LATENCY_GROWTH = 1.02
"""Ratio between consecutive bucket edges: a p95 is known to within 2 %."""
LATENCY_MAX_S = 24 * 3600.0
LATENCY_BUCKETS = math.ceil(math.log(LATENCY_MAX_S / LATENCY_MIN_S) / math.log(LATENCY_GROWTH))
"""Number of buckets (about 1,400); slower calls than `LATENCY_MAX_S` land in the last one."""
_LOG_GROWTH = math.log(LATENCY_GROWTH)

FEEDBACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
"""Feedback names: they become parts of counter names and of policy keys (``feedback.<name>``)."""


class SummaryError(LuckyError, ValueError):
    """An observation or a stored counter cannot be used (a negative latency, a garbled value)."""


def _check_path(path: object) -> Path:
    if path not in PATHS:
        raise SummaryError(f"path must be 'registry' or 'legacy', got {path!r}")
    return path


def _finite(name: str, value: object, *, non_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SummaryError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or (non_negative and number < 0):
        rule = "a finite number at least 0" if non_negative else "a finite number"
        raise SummaryError(f"{name} must be {rule}, got {value!r}")
    return number


@dataclass(frozen=True)
class CallObservation:
    """One completed call on one path: did it succeed, how long it took, what it cost."""

    path: Path
    ok: bool
    latency_s: float
    cost_usd: float

    def __post_init__(self) -> None:
        _check_path(self.path)
        object.__setattr__(self, "ok", bool(self.ok))
        object.__setattr__(self, "latency_s", _finite("latency_s", self.latency_s, non_negative=True))
        object.__setattr__(self, "cost_usd", _finite("cost_usd", self.cost_usd, non_negative=True))


@dataclass(frozen=True)
class FeedbackObservation:
    """One user-reported value (``ll.feedback(request_id, name, value)``) for a call on `path`."""

    path: Path
    name: str
    value: float

    def __post_init__(self) -> None:
        _check_path(self.path)
        if not isinstance(self.name, str) or not FEEDBACK_NAME.match(self.name):
            raise SummaryError(
                "feedback name must be 1-64 characters: a letter or digit, then letters, digits, "
                f"'_', '.' or '-' (got {self.name!r})"
            )
        object.__setattr__(self, "value", _finite("feedback value", self.value))


Observation = CallObservation | FeedbackObservation


def latency_bucket(latency_s: float) -> int:
    """The histogram bucket of a latency: the same in every process and every version."""
    if latency_s <= LATENCY_MIN_S:
        return 0
    index = math.floor(math.log(latency_s / LATENCY_MIN_S) / _LOG_GROWTH)
    return min(index, LATENCY_BUCKETS - 1)


_EDGES = [0.0] + [LATENCY_MIN_S * LATENCY_GROWTH**i for i in range(1, LATENCY_BUCKETS)] + [math.inf]


def latency_bucket_bounds(index: int) -> tuple[float, float]:
    """Lower and upper edge (seconds) of bucket `index` (bucket 0 starts at 0, the last has no end)."""
    index = min(max(index, 0), LATENCY_BUCKETS - 1)
    return _EDGES[index], _EDGES[index + 1]


@dataclass
class Moments:
    """Count, sum and sum of squares of a stream of values: mean and variance, mergeable."""

    n: float = 0.0
    total: float = 0.0
    total_sq: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n > 0 else None

    @property
    def variance(self) -> float | None:
        """Unbiased sample variance (None below 2 values); never negative despite rounding."""
        if self.n < 2:
            return None
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))


def _number(key: str, value: float | str | bytes) -> float:
    try:
        number = float(value.decode() if isinstance(value, bytes) else value)
    except (ValueError, UnicodeDecodeError):
        raise SummaryError(f"counter {key!r} is not a number") from None
    if not math.isfinite(number):
        raise SummaryError(f"counter {key!r} is not finite")
    return number


@dataclass
class PathSummary:
    """Counters of one path in one stage. Mutable for in-memory use (`add`); `merge` is pure."""

    calls: int = 0
    errors: int = 0
    cost_sum: float = 0.0
    cost_sumsq: float = 0.0
    latency: dict[int, int] = field(default_factory=dict)
    """Successful calls per latency bucket (see `latency_bucket`)."""
    feedback: dict[str, Moments] = field(default_factory=dict)

    # ------------------------------------------------------------------ building

    @staticmethod
    def increments(obs: Observation) -> dict[str, float]:
        """The counter deltas one observation adds: field name → amount, ready for ``HINCRBYFLOAT``."""
        if isinstance(obs, FeedbackObservation):
            prefix = f"fb:{obs.name}:"
            return {prefix + "n": 1.0, prefix + "sum": obs.value, prefix + "sq": obs.value * obs.value}
        if not isinstance(obs, CallObservation):
            raise SummaryError(f"expected a CallObservation or FeedbackObservation, got {type(obs).__name__}")
        deltas = {
            "calls": 1.0,
            "errors": 0.0 if obs.ok else 1.0,
            "cost": obs.cost_usd,
            "cost_sq": obs.cost_usd * obs.cost_usd,
        }
        if obs.ok:
            deltas[f"lat:{latency_bucket(obs.latency_s)}"] = 1.0
        return deltas

    def add(self, obs: Observation) -> None:
        """Count one observation in this summary (in place)."""
        if isinstance(obs, FeedbackObservation):
            moments = self.feedback.setdefault(obs.name, Moments())
            moments.n += 1
            moments.total += obs.value
            moments.total_sq += obs.value * obs.value
            return
        if not isinstance(obs, CallObservation):
            raise SummaryError(f"expected a CallObservation or FeedbackObservation, got {type(obs).__name__}")
        self.calls += 1
        self.cost_sum += obs.cost_usd
        self.cost_sumsq += obs.cost_usd * obs.cost_usd
        if obs.ok:
            index = latency_bucket(obs.latency_s)
            self.latency[index] = self.latency.get(index, 0) + 1
        else:
            self.errors += 1

    @classmethod
    def from_counters(cls, mapping: Mapping[str, float | str | bytes] | Mapping[bytes, bytes]) -> PathSummary:
        """A summary from stored counters (str or bytes keys and values, as Redis returns them).

        Fields this module does not define are ignored, so a store may keep other fields (a stage
        start time) in the same hash; a known field with a garbled value is a `SummaryError`."""
        summary = cls()
        for raw_key, raw_value in mapping.items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if key == "calls":
                summary.calls = round(_number(key, raw_value))
            elif key == "errors":
                summary.errors = round(_number(key, raw_value))
            elif key == "cost":
                summary.cost_sum = _number(key, raw_value)
            elif key == "cost_sq":
                summary.cost_sumsq = _number(key, raw_value)
            elif key.startswith("lat:"):
                try:
                    index = int(key[4:])
                except ValueError:
                    raise SummaryError(f"counter {key!r} is not a latency bucket") from None
                count = round(_number(key, raw_value))
                if count:
                    bucket = min(max(index, 0), LATENCY_BUCKETS - 1)
                    summary.latency[bucket] = summary.latency.get(bucket, 0) + count
            elif key.startswith("fb:") and key.count(":") >= 2:
                name, _, part = key[3:].rpartition(":")
                if part not in ("n", "sum", "sq") or not FEEDBACK_NAME.match(name):
                    continue
                moments = summary.feedback.setdefault(name, Moments())
                value = _number(key, raw_value)
                if part == "n":
                    moments.n = float(round(value))
                elif part == "sum":
                    moments.total = value
                else:
                    moments.total_sq = value
        return summary

    def to_counters(self) -> dict[str, float]:
        """The flat counters (`from_counters(s.to_counters()) == s`)."""
        counters: dict[str, float] = {
            "calls": float(self.calls),
            "errors": float(self.errors),
            "cost": self.cost_sum,
            "cost_sq": self.cost_sumsq,
        }
        for index, count in sorted(self.latency.items()):
            counters[f"lat:{index}"] = float(count)
        for name, moments in sorted(self.feedback.items()):
            counters[f"fb:{name}:n"] = moments.n
            counters[f"fb:{name}:sum"] = moments.total
            counters[f"fb:{name}:sq"] = moments.total_sq
        return counters

    def merge(self, other: PathSummary) -> PathSummary:
        """A new summary counting both (the counters of several processes, or stages)."""
        latency = dict(self.latency)
        for index, count in other.latency.items():
            latency[index] = latency.get(index, 0) + count
        feedback = {name: Moments(m.n, m.total, m.total_sq) for name, m in self.feedback.items()}
        for name, m in other.feedback.items():
            mine = feedback.setdefault(name, Moments())
            mine.n += m.n
            mine.total += m.total
            mine.total_sq += m.total_sq
        return PathSummary(
            calls=self.calls + other.calls,
            errors=self.errors + other.errors,
            cost_sum=self.cost_sum + other.cost_sum,
            cost_sumsq=self.cost_sumsq + other.cost_sumsq,
            latency=latency,
            feedback=feedback,
        )

    __add__ = merge

    # ------------------------------------------------------------------ figures

    @property
    def error_moments(self) -> Moments:
        """Errors as 0/1 values per call (sum of squares = sum)."""
        return Moments(float(self.calls), float(self.errors), float(self.errors))

    @property
    def cost_moments(self) -> Moments:
        return Moments(float(self.calls), self.cost_sum, self.cost_sumsq)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def mean_cost(self) -> float | None:
        return self.cost_sum / self.calls if self.calls else None

    @property
    def latency_count(self) -> int:
        """Successful calls in the latency histogram."""
        return sum(self.latency.values())

    def iter_latency(self) -> Iterator[tuple[int, int]]:
        """(bucket, count) in increasing latency."""
        return iter(sorted(self.latency.items()))

    def latency_rank_bounds(self, rank: int) -> tuple[float, float]:
        """Edges of the bucket holding the `rank`-th smallest latency (1-based, clamped)."""
        total = self.latency_count
        if not total:
            return 0.0, math.inf
        rank = min(max(rank, 1), total)
        seen = 0
        for index, count in self.iter_latency():
            seen += count
            if seen >= rank:
                return latency_bucket_bounds(index)
        return latency_bucket_bounds(LATENCY_BUCKETS - 1)  # pragma: no cover - seen reaches total

    def latency_quantile(self, q: float) -> float | None:
        """The `q` quantile (0..1) of successful calls' latency, seconds, within 2 % (bucket middle)."""
        total = self.latency_count
        if not total:
            return None
        low, high = self.latency_rank_bounds(math.ceil(q * total))
        if math.isinf(high):
            return low
        return math.sqrt(low * high) if low > 0 else high / 2

    def feedback_moments(self, name: str) -> Moments:
        return self.feedback.get(name, Moments())
