"""Rehearse a guarded rollout without calling anything: a fast, seeded simulation.

Simulated users (ids ``user-0`` … ``user-<n>``, bucketed exactly as `bucketing.py` does, so the
same users stay on the registry path as the percentage rises) make calls; each call takes the
registry or the legacy path by the current stage's percentage, succeeds or fails, takes some
time and costs something, drawn from each path's `PathBehavior`. The calls go into one
`PathSummary` per path and stage, `decide` is called every `check_every` calls (1 = after every
call), and its advance / rollback is applied, until the rollout is rolled back, reaches its last
stage, or `max_calls` have been made::

    from lucky_litellm.guard import GuardPolicy
    from lucky_litellm.testing import PathBehavior, RolloutScenario, simulate_rollout

    scenario = RolloutScenario(
        legacy=PathBehavior(error_rate=0.01),
        registry=PathBehavior(error_rate=0.03),  # 2 points worse
        policy=GuardPolicy(minSeconds=0),
    )
    result = simulate_rollout(scenario, seed=1)
    result.rolled_back, result.registry_calls_until_rollback

Calls are drawn in vectorised batches (numpy) between two checks, so a run of a few hundred
thousand calls takes milliseconds; time advances by ``1 / calls_per_second`` per call, so the
stages' ``minSeconds`` mean something. Nothing here touches the network or a store.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from ..bucketing import BUCKETS, bucket_of
from ..guard.decide import Decision, decide
from ..guard.policy import GuardPolicy
from ..guard.summary import (
    LATENCY_BUCKETS,
    LATENCY_GROWTH,
    LATENCY_MIN_S,
    Moments,
    PathSummary,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PathBehavior", "RolloutScenario", "SimResult", "SimSummary", "simulate_many", "simulate_rollout"]


@dataclass(frozen=True)
class PathBehavior:
    """How one path behaves: its error rate, latency distribution, cost per call and feedback.

    Latency of a successful call is lognormal (median `latency_median_s`, shape `latency_sigma`);
    with probability `tail_share` it is multiplied by a Pareto factor (shape `tail_alpha`), for a
    heavy tail. Cost is lognormal around a mean of `cost_usd` (spread `cost_sigma`). A share
    `feedback_rate` of calls gets feedback, each named metric a 0/1 value that is 1 with the given
    probability (``{"thumbs_up": 0.8}``)."""

    error_rate: float = 0.01
    latency_median_s: float = 0.8
    latency_sigma: float = 0.5
    tail_share: float = 0.0
    tail_alpha: float = 2.5
    cost_usd: float = 0.002
    cost_sigma: float = 0.3
    feedback: Mapping[str, float] = field(default_factory=dict)
    feedback_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "tail_share", "feedback_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be from 0 to 1, got {value!r}")
        if self.latency_median_s <= 0 or self.latency_sigma < 0 or self.tail_alpha <= 0:
            raise ValueError("latency_median_s and tail_alpha must be positive, latency_sigma not negative")
        if self.cost_usd < 0 or self.cost_sigma < 0:
            raise ValueError("cost_usd and cost_sigma must not be negative")
        for name, p in self.feedback.items():
            if not 0 <= p <= 1:
                raise ValueError(f"feedback {name!r} must be a probability from 0 to 1, got {p!r}")


@dataclass(frozen=True)
class RolloutScenario:
    """Both paths, the guard policy, and how the rollout is driven."""

    legacy: PathBehavior = field(default_factory=PathBehavior)
    registry: PathBehavior = field(default_factory=PathBehavior)
    policy: GuardPolicy = field(default_factory=GuardPolicy)
    check_every: int = 100
    """Calls between two decisions (1 = after every call)."""
    max_calls: int = 2_000_000
    """The run stops (neither rolled back nor complete) after this many calls."""
    calls_per_second: float = 100.0
    users: int = 20_000
    """Size of the simulated user population; each call comes from one of them at random."""
    salt: str = "lucky"
    start_stage: int = 0

    def __post_init__(self) -> None:
        if self.check_every < 1 or self.max_calls < 1 or self.users < 1 or self.calls_per_second <= 0:
            raise ValueError("check_every, max_calls, users and calls_per_second must be positive")
        self.policy.check_stage(self.start_stage)


@dataclass(frozen=True)
class SimResult:
    """How one seeded run ended. `decisions` holds the advances and the rollback (holds are
    only counted in `checks`); `last` is the last decision taken."""

    seed: int
    final_percent: float
    stage_index: int
    rolled_back: bool
    completed: bool
    """Reached the last stage (100 % with the default stages)."""
    calls: int
    registry_calls: int
    calls_until_rollback: int | None
    registry_calls_until_rollback: int | None
    checks: int
    decisions: list[Decision]
    last: Decision | None


@dataclass(frozen=True)
class SimSummary:
    """Rates over many seeds."""

    runs: int
    rolled_back: float
    completed: float
    results: list[SimResult]

    def share(self, predicate: Any) -> float:
        return sum(1 for r in self.results if predicate(r)) / self.runs if self.runs else 0.0


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is in the test extra
        raise ImportError(
            "the rollout simulator needs numpy, the 'sim' extra: pip install -e '.[sim]' from a clone"
        ) from exc
    return numpy


@functools.lru_cache(maxsize=8)
def _population(users: int, salt: str) -> list[int]:
    """The simulated users' buckets, sorted, as `bucketing.bucket_of` computes them (cached)."""
    return sorted(bucket_of(f"user-{i}", salt) for i in range(users))


def _registry_share(population: list[int], percent: float) -> float:
    """Share of the population on the registry path at `percent` (as `bucketing.in_rollout`)."""
    return bisect.bisect_left(population, percent * (BUCKETS // 100)) / len(population)


COST_LEVELS = 64
"""Cost per call takes one of this many equally likely lognormal quantiles (a discretised lognormal)."""
_TAIL_POINTS = 256


@dataclass(frozen=True)
class _Tables:
    """One path's distributions as histograms, so a batch of any size is one multinomial draw.

    Latency is drawn straight into the guard's buckets (bucket ``first + i`` with probability
    ``latency_p[i]``, exact for the lognormal and its Pareto-tailed mixture), cost as one of
    `COST_LEVELS` equally likely levels whose mean is exactly ``cost_usd``. The guard only ever sees
    bucket counts and cost sums, so this is the same experiment as drawing call by call."""

    first: int
    latency_p: Any
    latency_cdf: Any
    cost_levels: Any
    cost_squares: Any
    cost_p: Any


@functools.lru_cache(maxsize=64)
def _tables(
    median_s: float, sigma: float, tail_share: float, tail_alpha: float, cost: float, cost_sigma: float
) -> _Tables:
    np = _numpy()
    normal = NormalDist()
    # latency: CDF at every bucket edge, F(x) = (1 - s) Phi((ln x - ln m) / sigma) + s E[Phi(... x / (1 + P))]
    edges = LATENCY_MIN_S * LATENCY_GROWTH ** np.arange(LATENCY_BUCKETS + 1, dtype=np.float64)
    log_edges = np.log(edges / median_s)
    if tail_share > 0:
        u = (np.arange(_TAIL_POINTS) + 0.5) / _TAIL_POINTS
        shifts = np.concatenate(([0.0], np.log1p((1 - u) ** (-1 / tail_alpha) - 1)))
        weights = np.concatenate(([1 - tail_share], np.full(_TAIL_POINTS, tail_share / _TAIL_POINTS)))
    else:
        shifts, weights = np.zeros(1), np.ones(1)
    z = (log_edges[:, None] - shifts[None, :]) / max(sigma, 1e-9)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    cdf = (0.5 * (1 + erf(z / math.sqrt(2)))) @ weights
    cdf[0], cdf[-1] = 0.0, 1.0  # bucket 0 holds everything faster, the last everything slower
    p = np.diff(cdf)
    present = np.flatnonzero(p > 1e-12)
    first, last = int(present[0]), int(present[-1])
    latency_p = p[first : last + 1] / p[first : last + 1].sum()
    # cost: equally likely quantiles of a lognormal, scaled so the mean is exactly `cost`
    levels = np.array(
        [math.exp(cost_sigma * normal.inv_cdf((j + 0.5) / COST_LEVELS)) for j in range(COST_LEVELS)]
    )
    levels *= cost / levels.mean() if cost > 0 else 0.0
    return _Tables(
        first, latency_p, np.cumsum(latency_p), levels, levels * levels, np.full(COST_LEVELS, 1 / COST_LEVELS)
    )


def _tables_for(behavior: PathBehavior) -> _Tables:
    return _tables(
        behavior.latency_median_s,
        behavior.latency_sigma,
        behavior.tail_share,
        behavior.tail_alpha,
        behavior.cost_usd,
        behavior.cost_sigma,
    )


def _draw(rng: np.random.Generator, behavior: PathBehavior, n: int, summary: PathSummary) -> None:
    """Add `n` calls of one path to `summary`: a handful of draws whatever `n`."""
    if n <= 0:
        return
    tables = _tables_for(behavior)
    if n == 1:  # checked after every call: scalar draws beat numpy's per-array overhead
        _draw_one(rng, behavior, tables, summary)
        return
    np = _numpy()
    failed = int(rng.binomial(n, behavior.error_rate)) if behavior.error_rate > 0 else 0
    ok = n - failed
    summary.calls += n
    summary.errors += failed
    if behavior.cost_usd > 0:
        if n >= 4 * COST_LEVELS:
            picks = rng.multinomial(n, tables.cost_p)
        else:
            picks = np.bincount(rng.integers(0, COST_LEVELS, n), minlength=COST_LEVELS)
        summary.cost_sum += float(picks @ tables.cost_levels)
        summary.cost_sumsq += float(picks @ tables.cost_squares)
    if ok:
        hist = summary.latency
        if ok * 2 < len(tables.latency_p):  # few calls: cheaper to place each one
            offsets = tables.latency_cdf.searchsorted(rng.random(ok), side="right")
            for offset in offsets.tolist():
                key = tables.first + min(offset, len(tables.latency_p) - 1)
                hist[key] = hist.get(key, 0) + 1
        else:
            counts = rng.multinomial(ok, tables.latency_p)
            present = np.flatnonzero(counts)
            for offset, count in zip(present.tolist(), counts[present].tolist(), strict=True):
                key = tables.first + offset
                hist[key] = hist.get(key, 0) + count
    if behavior.feedback_rate > 0 and behavior.feedback:
        rated = int(rng.binomial(n, behavior.feedback_rate))
        for name, p in behavior.feedback.items():
            ones = int(rng.binomial(rated, p))
            moments = summary.feedback.setdefault(name, Moments())
            moments.n += rated
            moments.total += ones
            moments.total_sq += ones


def _draw_one(
    rng: np.random.Generator, behavior: PathBehavior, tables: _Tables, summary: PathSummary
) -> None:
    """One call, from the same tables with scalar draws."""
    summary.calls += 1
    if behavior.cost_usd > 0:
        cost = float(tables.cost_levels[int(rng.random() * COST_LEVELS)])
        summary.cost_sum += cost
        summary.cost_sumsq += cost * cost
    if rng.random() < behavior.error_rate:
        summary.errors += 1
    else:
        offset = int(tables.latency_cdf.searchsorted(rng.random(), side="right"))
        key = tables.first + min(offset, len(tables.latency_p) - 1)
        summary.latency[key] = summary.latency.get(key, 0) + 1
    if behavior.feedback_rate > 0 and behavior.feedback and rng.random() < behavior.feedback_rate:
        for name, p in behavior.feedback.items():
            value = 1.0 if rng.random() < p else 0.0
            moments = summary.feedback.setdefault(name, Moments())
            moments.n += 1
            moments.total += value
            moments.total_sq += value


def simulate_rollout(scenario: RolloutScenario, seed: int) -> SimResult:
    """One seeded run of `scenario` (deterministic for a seed)."""
    np = _numpy()
    rng = np.random.default_rng(seed)
    population = _population(scenario.users, scenario.salt)
    policy = scenario.policy
    stage = scenario.start_stage
    legacy, registry = PathSummary(), PathSummary()
    calls = registry_calls = checks = 0
    stage_started_call = 0
    decisions: list[Decision] = []
    last: Decision | None = None
    share = _registry_share(population, policy.percent(stage))
    while calls < scenario.max_calls:
        batch = min(scenario.check_every, scenario.max_calls - calls)
        # each call comes from a user drawn at random: the registry's count is binomial(batch, share)
        n_registry = int(rng.binomial(batch, share))
        _draw(rng, scenario.registry, n_registry, registry)
        _draw(rng, scenario.legacy, batch - n_registry, legacy)
        calls += batch
        registry_calls += n_registry
        elapsed = (calls - stage_started_call) / scenario.calls_per_second
        last = decide(policy, stage, legacy, registry, elapsed)
        checks += 1
        if last.action == "rollback":
            decisions.append(last)
            return SimResult(
                seed,
                0.0,
                stage,
                True,
                False,
                calls,
                registry_calls,
                calls,
                registry_calls,
                checks,
                decisions,
                last,
            )
        if last.action == "advance":
            decisions.append(last)
            stage += 1
            share = _registry_share(population, policy.percent(stage))
            legacy, registry = PathSummary(), PathSummary()
            stage_started_call = calls
            if policy.is_last(stage):
                break
    completed = policy.is_last(stage)
    return SimResult(
        seed,
        policy.percent(stage),
        stage,
        False,
        completed,
        calls,
        registry_calls,
        None,
        None,
        checks,
        decisions,
        last,
    )


def simulate_many(scenario: RolloutScenario, seeds: Iterable[int] | int = 200) -> SimSummary:
    """`simulate_rollout` for each seed (``200`` means seeds 0..199); rates over the runs."""
    seed_list: Sequence[int] = range(seeds) if isinstance(seeds, int) else list(seeds)
    results = [simulate_rollout(scenario, seed) for seed in seed_list]
    runs = len(results)
    return SimSummary(
        runs=runs,
        rolled_back=sum(r.rolled_back for r in results) / runs if runs else 0.0,
        completed=sum(r.completed for r in results) / runs if runs else 0.0,
        results=results,
    )
