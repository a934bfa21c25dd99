"""Adaptive hedging: when to start the next model of a race, and how many hedges the fleet can afford.

`hedgeAfter: auto` (or ``p90``/``p95``/``p99``; ``auto`` is p95, as in "The Tail at Scale") waits
for the observed latency quantile of the model in flight before starting the next one: a model that
usually answers in 300 ms is hedged after about 300 ms, one that needs 4 s after about 4 s, and a
model whose latency drifts carries its hedge delay along. The quantile comes from a `LatencyWindow`
per model (its last `window` successful latencies in this process; the lower of that window's
quantile and its most recent quarter's, so a burst of slow answers does not hold the delay up for
a whole window), clamped to ``[floor, ceiling]``;
until ``minSamples`` latencies are known the ``initial`` delay applies (clamped the same way).

Every hedge is an extra request. `HedgeBudget` is gRPC's retry throttling applied to hedges: each
request of the plan adds ``tokenRatio`` of a token (up to ``maxTokens``), each hedge spends one, and
no hedge starts while the bucket holds ``maxTokens / 2`` or less. Hedges are thus at most about
``tokenRatio`` of the requests (10 % by default) plus ``maxTokens / 2``, however slow the upstream:
when it is slow for everyone, hedging stops instead of doubling the load on it.

Nothing here allocates per call on the hot path beyond a dict lookup: a record is one store into a
preallocated ring, and the quantile is re-sorted at most every ``window / 32`` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..config.schema import HedgingConfig

__all__ = [
    "QUANTILES",
    "HedgeBudget",
    "HedgePolicy",
    "HedgeState",
    "LatencyWindow",
    "hedge_policy",
]

QUANTILES: Final = {"auto": 0.95, "p90": 0.90, "p95": 0.95, "p99": 0.99}
"""`hedgeAfter` words -> the latency quantile they hedge at (``auto`` follows ``health.hedging.quantile``)."""


class LatencyWindow:
    """The last `size` latencies (ms) of one model in a ring; quantiles are computed lazily.

    A quantile is the lower of the whole window's and its most recent quarter's. A high quantile
    of a count window holds a burst of slow answers until they age out of it: a client stall, or a
    few seconds of extra load, delays every request in flight at once, and 10 such answers in 200
    are the whole top 5 %, so `auto` went on hedging late for 200 answers (measured: ~720 ms for
    a fast path of ~250 ms, after one 650 ms stall). With the recent quarter, a burst stops
    holding the delay up after `size / 4` answers, while a lasting rise shows in both as fast as
    in the window alone (its 10th slow answer of 200 moves the whole window's p95).

    `record` is O(1) and allocates nothing; `quantile` sorts again only once `refresh` records
    have arrived since the last sort (1 for small windows, so tests see every sample), so a
    hedged request costs two sorts (`size` and `size / 4` floats) every `size / 32` requests."""

    __slots__ = ("_all", "_count", "_next", "_recent", "_sorted_at", "_values", "recent", "refresh", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.recent = max(1, size // 4)
        self.refresh = max(1, size // 32)
        self._values = [0.0] * size
        self._next = 0
        self._count = 0
        self._sorted_at = -1
        self._all: list[float] = []
        self._recent: list[float] = []

    def record(self, latency_ms: float) -> None:
        self._values[self._next] = latency_ms
        self._next = (self._next + 1) % self.size
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, self.size)

    def quantile(self, q: float) -> float:
        """The `q` quantile (nearest rank) of the latencies held, or of the most recent quarter of
        them if that is lower; 0.0 when there are none."""
        count = self._count
        if count == 0:
            return 0.0
        if count - self._sorted_at >= self.refresh:
            held = min(count, self.size)
            self._all = sorted(self._values[:held])
            recent = min(held, self.recent)
            start = self._next - recent
            self._recent = sorted(
                self._values[start : self._next]
                if start >= 0
                else self._values[start:] + self._values[: self._next]
            )
            self._sorted_at = count
        return min(_nearest_rank(self._all, q), _nearest_rank(self._recent, q))


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


class HedgeBudget:
    """gRPC retry throttling for hedges: a token bucket that starts full.

    `admit` (one per request) adds `ratio` of a token up to `max_tokens`; `try_spend` (one per
    hedge) takes a whole token, and refuses while the bucket holds `max_tokens / 2` or less."""

    __slots__ = ("max_tokens", "ratio", "tokens")

    def __init__(self, max_tokens: float, ratio: float) -> None:
        self.max_tokens = max_tokens
        self.ratio = ratio
        self.tokens = max_tokens

    def admit(self) -> None:
        tokens = self.tokens + self.ratio
        self.tokens = tokens if tokens < self.max_tokens else self.max_tokens

    def try_spend(self) -> bool:
        if self.tokens <= self.max_tokens / 2:
            return False
        self.tokens -= 1.0
        return True

    def __repr__(self) -> str:
        return f"HedgeBudget(tokens={self.tokens:.1f}/{self.max_tokens:g}, ratio={self.ratio:g})"


@dataclass
class HedgeState:
    """What one registry (`Models`) has learnt: latency windows per model, budgets per plan.

    Kept across config reloads and provider updates, so a new plan starts from what the old one
    observed. A model's window keeps the size it was created with (``health.hedging.window`` is
    a registry-wide setting)."""

    windows: dict[str, LatencyWindow] = field(default_factory=dict)
    budgets: dict[str, HedgeBudget] = field(default_factory=dict)

    def window(self, model: str, size: int) -> LatencyWindow:
        window = self.windows.get(model)
        if window is None:
            window = self.windows[model] = LatencyWindow(size)
        return window

    def budget(self, key: str, max_tokens: float, ratio: float) -> HedgeBudget:
        """The bucket of one plan (tier or experiment); a reload that changes its settings keeps
        the tokens it holds, within the new maximum."""
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = HedgeBudget(max_tokens, ratio)
        elif (budget.max_tokens, budget.ratio) != (max_tokens, ratio):
            budget.max_tokens, budget.ratio = max_tokens, ratio
            budget.tokens = min(budget.tokens, max_tokens)
        return budget


@dataclass(frozen=True, eq=False)
class HedgePolicy:
    """How one plan hedges: a fixed delay or a latency quantile, and its budget (None: unlimited)."""

    state: HedgeState
    fixed_s: float | None
    """A fixed `hedgeAfter` in seconds; None hedges at `quantile`."""
    quantile: float
    floor_s: float
    ceiling_s: float
    initial_s: float
    min_samples: int
    window: int
    budget: HedgeBudget | None

    def delay_s(self, model: str) -> float:
        """How long to wait for `model` (just started) before hedging it."""
        if self.fixed_s is not None:
            return self.fixed_s
        window = self.state.windows.get(model)
        if window is None or window._count < self.min_samples:
            return self.initial_s
        delay = window.quantile(self.quantile) / 1000.0
        if delay < self.floor_s:
            return self.floor_s
        return self.ceiling_s if delay > self.ceiling_s else delay

    def observe(self, model: str, latency_ms: float) -> None:
        """A successful attempt of `model` took `latency_ms` (cancelled losers are not recorded)."""
        if self.fixed_s is None:
            window = self.state.windows.get(model)
            if window is None:
                window = self.state.window(model, self.window)
            window.record(latency_ms)

    def describe(self) -> str:
        """In words, for `Plan.describe` and `lucky-litellm resolve`."""
        if self.fixed_s is not None:
            text = f"{self.fixed_s * 1000:g} ms"
        else:
            text = (
                f"p{self.quantile * 100:g} of the model's last {self.window} latencies, within "
                f"{self.floor_s * 1000:g}-{self.ceiling_s * 1000:g} ms ({self.initial_s * 1000:g} ms "
                f"until {self.min_samples} are known)"
            )
        if self.budget is not None:
            text += (
                f"; budget {self.budget.ratio:.0%} extra requests "
                f"(token bucket, maxTokens {self.budget.max_tokens:g})"
            )
        return text

    def __repr__(self) -> str:
        return f"HedgePolicy({self.describe()})"


def hedge_policy(
    state: HedgeState, hedge_after: float | str | None, config: HedgingConfig, budget_key: str
) -> HedgePolicy | None:
    """The policy of a race whose `hedgeAfter` is `hedge_after` (ms or a quantile word).

    None (the race's plain code path) for no `hedgeAfter`, and for a fixed one while no budget
    is configured explicitly: a fixed `hedgeAfter` keeps its old behaviour unless
    ``health.hedging.budget`` is written in the config. A quantile hedge gets the budget unless
    it is turned off (``budget: null``)."""
    if hedge_after is None:
        return None
    fixed = not isinstance(hedge_after, str)
    budget_config = config.budget
    if fixed and "budget" not in config.model_fields_set:
        return None
    if fixed and budget_config is None:
        return None
    budget = (
        None
        if budget_config is None
        else state.budget(budget_key, budget_config.max_tokens, budget_config.token_ratio)
    )
    word = config.quantile if hedge_after == "auto" else str(hedge_after)
    floor, ceiling = config.floor, config.ceiling
    return HedgePolicy(
        state=state,
        fixed_s=None if isinstance(hedge_after, str) else float(hedge_after) / 1000.0,
        quantile=QUANTILES.get(word, QUANTILES["auto"]),
        floor_s=floor / 1000.0,
        ceiling_s=ceiling / 1000.0,
        initial_s=min(max(config.initial, floor), ceiling) / 1000.0,
        min_samples=config.min_samples,
        window=config.window,
        budget=budget,
    )
