"""The guard checked after EVERY call, for many seeds at once (lockstep, vectorised over seeds).

`simulate_rollout(check_every=1)` calls `decide` after each call, which costs tens of
microseconds a call in Python: fine for one rehearsal, too slow for hundreds of seeds over
thousands of calls. `simulate_every_call` runs all seeds side by side instead: call t of every
seed is drawn at once, each seed's counters are numpy arrays, and the decision of every seed after
every call is computed with the same formulas as `decide` (`guard.stats`), vectorised: both
margins (the rollback side of each interval at the policy's rollback alpha against its rollback
limit, the advance side at its metric alpha against the threshold), rollback winning. One stage
is simulated (`scenario.start_stage`): each seed ends at its first advance or rollback, or after
`scenario.max_calls` calls.

It is a second implementation of the decision, so it proves itself: with ``record=k`` it returns
the first k seeds' calls, which the tests replay through `PathSummary` and the real `decide` after
every call, requiring the same action at the same call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from ..guard.policy import Threshold
from ..guard.stats import MIN_SAMPLES, P95_TAU, ROLLBACK_TAU_MULTIPLIERS, TAU_MULTIPLIERS
from ..guard.summary import LATENCY_BUCKETS, latency_bucket_bounds
from .rollout_sim import COST_LEVELS, RolloutScenario, _numpy, _population, _registry_share, _tables_for

__all__ = ["EveryCallResult", "RecordedCall", "simulate_every_call"]

SUPPORTED = ("error_rate", "p95_latency", "cost")


@dataclass(frozen=True)
class RecordedCall:
    """One call of a recorded seed: its path, outcome, latency bucket and cost."""

    registry: bool
    ok: bool
    bucket: int
    cost_usd: float


@dataclass(frozen=True)
class EveryCallResult:
    """Per seed: the first action other than hold and the call (1-based) it was taken after;
    ``("hold", max_calls)`` for a seed that never left the stage."""

    seeds: list[int]
    actions: list[str]
    calls: list[int]
    recorded: list[list[RecordedCall]] = field(default_factory=list)

    def share(self, action: str) -> float:
        return self.actions.count(action) / len(self.actions) if self.actions else 0.0

    @property
    def rolled_back(self) -> float:
        return self.share("rollback")

    @property
    def advanced(self) -> float:
        return self.share("advance")


def _halfwidth(np: Any, variance: Any, tau2: Any, alpha: float) -> Any:
    """`stats.normal_mixture_halfwidth`, elementwise (0 where the variance is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(variance > 0, variance, 1.0)
        ratio = (safe + tau2) / safe
        width = np.sqrt(2 * safe * ratio * safe / tau2 * np.log(np.sqrt(ratio) / (2 * alpha) + 1))
    width = np.where(tau2 > 0, width, np.inf)
    return np.where(variance > 0, width, 0.0)


def _tuned(np: Any, variance: Any, tau: Any, alpha: float, multipliers: tuple[float, ...]) -> Any:
    share = alpha / len(multipliers)
    widths = [_halfwidth(np, variance, (k * tau) ** 2, share) for k in multipliers]
    return np.minimum.reduce(widths)


def _mean_bounds(
    np: Any,
    threshold: Threshold,
    n: Any,
    total: Any,
    total_sq: Any,
    alpha: float,
    bernoulli: bool,
    rollback_alpha: float,
    rollback_limit: float,
) -> tuple[Any, Any, Any]:
    """(valid, low, high) per seed, as `decide.figure_for` from `stats.mean_difference` (index 0 =
    legacy, 1 = registry): the bound on the regression side tests the rollback limit at
    `rollback_alpha`, the other the threshold at `alpha`."""
    n_l, n_r = n
    valid = (n_l >= MIN_SAMPLES) & (n_r >= MIN_SAMPLES)
    safe_l, safe_r = np.maximum(n_l, 1), np.maximum(n_r, 1)
    m_l, m_r = total[0] / safe_l, total[1] / safe_r
    if bernoulli:
        p_l, p_r = (total[0] + 1) / (n_l + 2), (total[1] + 1) / (n_r + 2)
        v_l, v_r = p_l * (1 - p_l), p_r * (1 - p_r)
    else:
        v_l = np.maximum(0.0, (total_sq[0] - total[0] ** 2 / safe_l) / np.maximum(n_l - 1, 1))
        v_r = np.maximum(0.0, (total_sq[1] - total[1] ** 2 / safe_r) / np.maximum(n_r - 1, 1))
    worse_side = (rollback_alpha, ROLLBACK_TAU_MULTIPLIERS)
    other_side = (alpha, TAU_MULTIPLIERS)
    low_side, high_side = (worse_side, other_side) if threshold.higher_is_worse else (other_side, worse_side)
    if not threshold.relative:
        variance = v_r / safe_r + v_l / safe_l
        tau = np.full_like(m_l, threshold.margin)
        diff = m_r - m_l
        return (
            valid,
            diff - _tuned(np, variance, tau, *low_side),
            diff + _tuned(np, variance, tau, *high_side),
        )
    t = threshold.amount
    valid = valid & (m_l > 0)
    tau = abs(t) * np.abs(m_l)
    base = np.where(m_l > 0, m_l, 1.0)

    def bound(limit: float, side: tuple[float, tuple[float, ...]], sign: int) -> Any:
        scale = 1 + limit  # the linear form m_R - (1 + limit) m_L, as `stats.mean_difference`
        width = _tuned(np, v_r / safe_r + scale * scale * v_l / safe_l, tau, *side)
        return limit + (m_r - scale * m_l + sign * width) / base

    low_limit, high_limit = (rollback_limit, t) if threshold.higher_is_worse else (t, rollback_limit)
    return valid, bound(low_limit, low_side, -1), bound(high_limit, high_side, 1)


def _quantile_bounds(
    np: Any, hist: Any, total: Any, first: int, alpha: float, high_alpha: float, q: float = 0.95
) -> tuple[Any, Any, Any]:
    """(valid, low, high) of each seed's q latency quantile, as `stats.quantile_bounds`."""
    valid = total >= MIN_SAMPLES
    safe = np.maximum(total, 1)
    width = _halfwidth(np, q * (1 - q) / safe, P95_TAU * P95_TAU, alpha)
    width_high = _halfwidth(np, q * (1 - q) / safe, P95_TAU * P95_TAU, high_alpha)
    rank_low = np.floor(total * (q - width))
    rank_high = np.ceil(total * (q + width_high)) + 1
    # one searchsorted over all rows at once: row r's cumulative counts, shifted by r * stride,
    # form a single increasing array
    seeds, width_cols = hist.shape
    stride = int(total.max()) + 2 if len(total) else 1
    shifts = np.arange(seeds) * stride
    flat = (hist.cumsum(axis=1) + shifts[:, None]).ravel()
    starts = np.arange(seeds) * width_cols
    low_col = np.clip(np.searchsorted(flat, np.maximum(rank_low, 1) + shifts) - starts, 0, width_cols - 1)
    high_col = np.clip(
        np.searchsorted(flat, np.minimum(rank_high, total) + shifts) - starts, 0, width_cols - 1
    )
    edges_low, edges_high = _edges(np)
    low = np.where(rank_low < 1, 0.0, edges_low[first + low_col])
    high = np.where(rank_high > total, np.inf, edges_high[first + high_col])
    return valid, low, high


@functools.cache
def _edges(np: Any) -> tuple[Any, Any]:
    """Lower and upper edge of every latency bucket, as arrays."""
    bounds = [latency_bucket_bounds(i) for i in range(LATENCY_BUCKETS)]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def simulate_every_call(scenario: RolloutScenario, seeds: int = 200, *, record: int = 0) -> EveryCallResult:
    """Seeds ``0..seeds-1`` of one stage of `scenario`, each decided after every call."""
    np = _numpy()
    policy = scenario.policy
    unsupported = [m for m in policy.metrics if m not in SUPPORTED]
    if unsupported:
        raise ValueError(f"simulate_every_call supports {', '.join(SUPPORTED)}; not {', '.join(unsupported)}")
    stage = scenario.start_stage
    percent = policy.percent(stage)
    last_stage = policy.is_last(stage)
    min_calls, min_seconds = policy.stage_min_calls(stage), policy.stage_min_seconds(stage)
    alpha, rollback_alpha = policy.metric_alpha, policy.rollback_alpha
    share = _registry_share(_population(scenario.users, scenario.salt), percent)
    behaviors = (scenario.legacy, scenario.registry)
    tables = [_tables_for(b) for b in behaviors]
    first = min(t.first for t in tables)
    width = max(t.first + len(t.latency_p) for t in tables) - first
    rng = np.random.default_rng([seeds, 17])  # one stream for the lockstep, fixed by the seed count
    rows = np.arange(seeds)
    n = np.zeros((2, seeds))
    errors = np.zeros((2, seeds))
    cost, cost_sq = np.zeros((2, seeds)), np.zeros((2, seeds))
    latency_n = np.zeros((2, seeds))
    hist = np.zeros((2, seeds, width), dtype=np.int32)
    error_rate = np.array([b.error_rate for b in behaviors])
    done_action = np.array(["hold"] * seeds, dtype=object)
    done_call = np.full(seeds, scenario.max_calls)
    active = np.ones(seeds, dtype=bool)
    recorded: list[list[RecordedCall]] = [[] for _ in range(record)]
    for call in range(1, scenario.max_calls + 1):
        path = (rng.random(seeds) < share).astype(np.int64)  # 1 = registry
        ok = rng.random(seeds) >= error_rate[path]
        u = rng.random(seeds)
        bucket = np.empty(seeds, dtype=np.int64)
        level = rng.integers(0, COST_LEVELS, seeds)
        price = np.empty(seeds)
        for index, table in enumerate(tables):
            mine = path == index
            offsets = np.minimum(
                table.latency_cdf.searchsorted(u[mine], side="right"), len(table.latency_p) - 1
            )
            bucket[mine] = table.first + offsets
            price[mine] = table.cost_levels[level[mine]] if behaviors[index].cost_usd > 0 else 0.0
        live = active
        for index in range(2):
            mine = live & (path == index)
            n[index] += mine
            errors[index] += mine & ~ok
            cost[index] += np.where(mine, price, 0.0)
            cost_sq[index] += np.where(mine, price * price, 0.0)
            counted = mine & ok
            latency_n[index] += counted
            hist[index, rows[counted], bucket[counted] - first] += 1
        for seed in range(record):
            if active[seed]:
                recorded[seed].append(
                    RecordedCall(bool(path[seed]), bool(ok[seed]), int(bucket[seed]), float(price[seed]))
                )
        worse_any = np.zeros(seeds, dtype=bool)
        all_not_worse = np.ones(seeds, dtype=bool)
        for metric, threshold in policy.metrics.items():
            if metric == "p95_latency":
                # as `decide`: the registry's lower and legacy's upper bound roll back
                valid_l, l_low, l_high = _quantile_bounds(
                    np, hist[0], latency_n[0], first, alpha / 2, rollback_alpha / 2
                )
                valid_r, r_low, r_high = _quantile_bounds(
                    np, hist[1], latency_n[1], first, rollback_alpha / 2, alpha / 2
                )
                valid = valid_l & valid_r
                with np.errstate(divide="ignore", invalid="ignore"):
                    if threshold.relative:
                        low = np.where((l_high > 0) & np.isfinite(l_high), r_low / l_high - 1, -1.0)
                        high = np.where(l_low > 0, r_high / l_low - 1, np.inf)
                    else:
                        low, high = r_low - l_high, r_high - l_low
            elif metric == "error_rate":
                valid, low, high = _mean_bounds(
                    np,
                    threshold,
                    n,
                    errors,
                    errors,
                    alpha,
                    True,
                    rollback_alpha,
                    policy.rollback_limit(threshold),
                )
            else:
                valid, low, high = _mean_bounds(
                    np,
                    threshold,
                    n,
                    cost,
                    cost_sq,
                    alpha,
                    False,
                    rollback_alpha,
                    policy.rollback_limit(threshold),
                )
            # latency and cost are worse when higher (the simulator has no feedback metric)
            worse_any |= valid & (low > policy.rollback_limit(threshold))
            all_not_worse &= valid & (high < threshold.amount)
        rollback = active & worse_any
        advance = (
            active
            & ~worse_any
            & all_not_worse
            & (not last_stage)
            & (n[0] >= min_calls)
            & (n[1] >= min_calls)
            & (call / scenario.calls_per_second >= min_seconds)
        )
        done_action[rollback] = "rollback"
        done_action[advance] = "advance"
        done_call[rollback | advance] = call
        active = active & ~rollback & ~advance
        if not active.any():
            break
    return EveryCallResult(list(range(seeds)), list(done_action), [int(c) for c in done_call], recorded)
