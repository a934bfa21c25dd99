"""Always-valid confidence intervals for comparing the registry path with the legacy path.

**Why a confidence sequence.** The guard looks at its figures after every call if it likes, in
every process, for as long as a stage lasts. A fixed-sample test (a t-test, a z-test) looked at
that often is wrong: its 5 % false-alarm rate holds for one look, and repeated looks push the
chance of a spurious "significant" result towards 1. A *confidence sequence* is a sequence of
bounds that hold at **all** times at once with probability 1 - alpha, so any stopping rule built
on it (roll back now, advance now) keeps its error rate however often it is checked and however
many processes check it.

**Which one.** The normal-mixture boundary (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. 14, whose two-sided form is
the always-valid CI of the mixture SPRT of Johari, Pekelis & Walsh 2017, used by Optimizely). Each
side is a one-sided bound at alpha, for an estimate with variance V and a mixing variance tau^2
set to the effect size we care about (the threshold):

    distance(V) = sqrt( 2 V (V + tau^2) / tau^2 * log( sqrt((V + tau^2) / V) / (2 alpha) + 1 ) ).

The bound on the regression side decides "worse" against the rollback limit (a wrong rollback has
probability at most its alpha), the other bound "not worse" against the threshold (a wrong advance,
likewise); the guard gives the two sides different budgets and mixing scales (`decide`). A mean's
bound is the tighter of two sequences (tau = threshold and 8 x threshold on the advance side, 2 x
and 16 x on the rollback side; alpha / 2 each), so a gross regression is caught early and a
marginal one still efficiently.

It was chosen over an mSPRT because it yields an *interval*, which is what the guard needs: one
comparison against the threshold in each direction gives "worse", "not worse" or "undecided"
from the same object, and the interval is what `rollout guard status` draws. It was chosen over
the empirical-Bernstein sequence because the figures (error rate, cost, feedback) are not bounded
by a known range, and its width grows like sqrt(V log(1/V)) rather than with the range.
The variance is estimated from the data (the "asymptotic" confidence sequence of Waudby-Smith et
al. 2021): exact for Gaussian estimates, accurate once a path has a few dozen calls, which is why
no metric gives a verdict before `MIN_SAMPLES` observations per path.

p95 latency is not a mean, so it gets a confidence sequence of its own: the share of calls at or
below the true p95 is exactly 95 % whatever the latency distribution, so a confidence sequence for
that share (the same boundary, variance 0.95 x 0.05 / n) turns into ranks of the latency
histogram between which each path's p95 lies at all times (Howard & Ramdas 2022, "Sequential
estimation of quantiles"). The two paths' bounds (each at alpha / 2) bound the p95 ratio.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

from .summary import Moments, PathSummary, latency_bucket_bounds

__all__ = [
    "MIN_SAMPLES",
    "P95_TAU",
    "ROLLBACK_TAU_MULTIPLIERS",
    "TAU_MULTIPLIERS",
    "Interval",
    "mean_difference",
    "normal_mixture_halfwidth",
    "quantile_bounds",
]

MIN_SAMPLES = 30
"""Observations each path needs before a metric gives any verdict (plug-in variances)."""
P95_TAU = 0.015
"""Mixing scale of the p95 share's confidence sequence: tightest around a few thousand calls."""
TAU_MULTIPLIERS = (1.0, 8.0)
"""A mean's bound is the tighter of two normal-mixture sequences, tuned to the threshold and to
8x it (each at alpha / 2): one tuned to the threshold alone would take long to show a gross
regression (its width shrinks slowly while the variance is far above tau^2)."""
ROLLBACK_TAU_MULTIPLIERS = (2.0, 16.0)
"""The same for the bound that rolls back, tuned to its own test: with the default rollback limit
of 0 it must show the WHOLE regression (typically a threshold's size or more, e.g. 2 points
against +1pp), not the part beyond the threshold, so its mixing scales are twice the advance
side's. Measured against (1, 8): a +2pp error regression at the 1 % stage is shown in a median
~1,100 instead of ~1,180 registry calls, a gross one (1 % -> 20 %) no later."""


def normal_mixture_halfwidth(variance: float, tau2: float, alpha: float) -> float:
    """Distance from the estimate to a one-sided normal-mixture bound at `alpha`.

    `variance` is the variance of the estimate now (sigma^2/n), `tau2` the mixing variance; the
    estimate stays below truth + this (or above truth - this) at ALL times with probability at
    least 1 - alpha (Howard et al. 2021, one-sided normal mixture, eq. 14, with rho = sigma^4/tau^2
    so that it reads in the estimate's scale)."""
    if variance <= 0:
        return 0.0
    if tau2 <= 0 or not math.isfinite(variance):
        return math.inf
    ratio = (variance + tau2) / variance
    return math.sqrt(2 * variance * ratio * variance / tau2 * math.log(math.sqrt(ratio) / (2 * alpha) + 1))


@dataclass(frozen=True)
class Interval:
    """An estimate and its always-valid interval (bounds may be infinite when unknown)."""

    estimate: float
    low: float
    high: float


def _variance(moments: Moments, *, bernoulli: bool) -> float:
    if bernoulli:
        # (k + 1) / (n + 2): a path with no error yet does not claim a variance of 0
        p = (moments.total + 1) / (moments.n + 2)
        return p * (1 - p)
    variance = moments.variance
    return variance if variance is not None else math.inf


def tuned_halfwidth(
    variance: float, tau: float, alpha: float, multipliers: tuple[float, ...] = TAU_MULTIPLIERS
) -> float:
    """The tightest of the `multipliers` one-sided bounds (a union bound: each at alpha / k)."""
    share = alpha / len(multipliers)
    return min(normal_mixture_halfwidth(variance, (k * tau) ** 2, share) for k in multipliers)


def mean_difference(
    legacy: Moments,
    registry: Moments,
    *,
    alpha: float,
    relative: float | None = None,
    tau: float,
    bernoulli: bool = False,
    multipliers: tuple[float, ...] = TAU_MULTIPLIERS,
) -> Interval | None:
    """Interval for registry's mean minus legacy's, or None before `MIN_SAMPLES` on each path.

    With `relative` = t, the test is on ``m_R - (1 + t) m_L`` (so "registry at most t% above
    legacy" is a linear question with zeros allowed), and the interval is reported in relative
    terms, ``m_R / m_L - 1``: ``t + (m_R - (1 + t) m_L) / m_L``. `tau` is the mixing scale in the
    tested quantity's unit (the threshold's size), `multipliers` the mixing scales tried (in units of
    `tau`; see `tuned_halfwidth`)."""
    if legacy.n < MIN_SAMPLES or registry.n < MIN_SAMPLES:
        return None
    m_l, m_r = legacy.total / legacy.n, registry.total / registry.n
    v_l, v_r = _variance(legacy, bernoulli=bernoulli), _variance(registry, bernoulli=bernoulli)
    if relative is None:
        variance = v_r / registry.n + v_l / legacy.n
        width = tuned_halfwidth(variance, tau, alpha, multipliers)
        diff = m_r - m_l
        return Interval(diff, diff - width, diff + width)
    if m_l <= 0:
        return None  # a ratio to nothing: no relative statement can be made
    scale = 1 + relative
    variance = v_r / registry.n + scale * scale * v_l / legacy.n
    width = tuned_halfwidth(variance, tau, alpha, multipliers)
    tested = m_r - scale * m_l
    return Interval(m_r / m_l - 1, relative + (tested - width) / m_l, relative + (tested + width) / m_l)


def quantile_bounds(
    summary: PathSummary, q: float, alpha: float, high_alpha: float | None = None
) -> tuple[float, float, float] | None:
    """(estimate, low, high) of the `q` latency quantile of `summary`, valid at all times: `low` at
    `alpha`, `high` at `high_alpha` (default `alpha`; the guard spends a different budget on the
    side that rolls back).

    None before `MIN_SAMPLES` latencies. `high` is infinite while too few calls lie above the
    quantile for any upper bound."""
    hist = summary.latency
    indexes = sorted(hist)
    cumulative = list(itertools.accumulate(map(hist.__getitem__, indexes)))  # C loops: checked often
    total = cumulative[-1] if cumulative else 0
    if total < MIN_SAMPLES:
        return None
    variance = q * (1 - q) / total
    width = normal_mixture_halfwidth(variance, P95_TAU * P95_TAU, alpha)
    width_high = (
        width if high_alpha is None else normal_mixture_halfwidth(variance, P95_TAU * P95_TAU, high_alpha)
    )
    rank_mid = max(1, math.ceil(q * total))
    rank_low = math.floor(total * (q - width))
    rank_high = math.ceil(total * (q + width_high)) + 1

    def bucket(rank: int) -> tuple[float, float]:
        return latency_bucket_bounds(indexes[bisect.bisect_left(cumulative, rank)])

    mid = bucket(rank_mid)
    estimate = math.sqrt(mid[0] * mid[1]) if mid[0] > 0 and math.isfinite(mid[1]) else mid[1]
    low = 0.0 if rank_low < 1 else bucket(rank_low)[0]
    high = math.inf if rank_high > total else bucket(rank_high)[1]
    return estimate, low, high
