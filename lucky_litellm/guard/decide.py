"""The guard's decision for one stage: advance, roll back or hold, and the figures behind it.

The rule (a "kill switch" that is quick, and a promotion that is careful) uses two margins:

- **rollback** as soon as ONE metric is shown worse than legacy by more than its rollback limit
  (``rollbackMargin`` x threshold, by default 0: shown worse at all): the bound on the regression
  side of its always-valid interval lies beyond that limit. The stage minimums do not apply: a
  regression shown is a regression, whenever it is seen.
- **advance** when EVERY metric is shown not worse than its threshold (the other bound lies within
  it) and the stage has lasted its minimum calls (on each path) and seconds;
- **hold** otherwise (the last stage only holds or rolls back: there is nothing to advance to).
  When a metric is shown both within its threshold and worse than its rollback limit (a small but
  certain regression), rollback wins.

Why two margins: one margin (the threshold) for both would make the kill switch wait until the
regression is shown *beyond the threshold*, which needs the evidence of the part beyond it (a
registry 2 points worse against a +1pp threshold served ~3,000 calls first); a regression is shown
*at all* on the evidence of the whole 2 points, several times sooner.

The error budget: the bound that rolls back spends ``policy.rollback_alpha`` (alpha / (metrics x
compared stages)), so an A/A rollout is wrongly rolled back with probability at most alpha over the
whole rollout, however often and by however many processes it is checked; the bound that advances
spends ``policy.metric_alpha`` (alpha / metrics) in each stage, so a registry beyond a threshold is
wrongly advanced out of a stage with probability at most alpha (see `stats`).

`Decision` and `MetricFigure` are plain, JSON-ready values (`to_dict` / `from_dict`): they are
stored in the rollout history and drawn by `rollout guard status`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .policy import GuardPolicy, Threshold
from .stats import ROLLBACK_TAU_MULTIPLIERS, Interval, mean_difference, quantile_bounds
from .summary import PathSummary

__all__ = ["Action", "Decision", "MetricFigure", "Verdict", "decide", "figure_for"]

Action = Literal["advance", "rollback", "hold"]
Verdict = Literal["worse", "not worse", "undecided"]


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


@dataclass(frozen=True)
class MetricFigure:
    """One metric of one decision: both paths' values, the difference, its interval, the verdict.

    For a relative threshold, `difference`, `ci_low`, `ci_high` and `threshold` are relative
    changes (0.12 = registry 12 % above legacy); otherwise they are in the metric's unit (error
    rate as a fraction, latency in seconds, cost in USD). `ci_low`/`ci_high` are None while
    unbounded. The verdict always agrees with the interval: "worse" when it lies entirely beyond
    `rollback_limit` in the direction of regression (shown worse than legacy by more than the
    rollback margin), "not worse" when entirely within `threshold`, "worse" winning when both hold.
    Each end is a one-sided always-valid bound: the regression side at the policy's rollback alpha,
    the other at its (per-stage) metric alpha. `rollback_limit` is None in records written before
    it existed (they were judged against `threshold`)."""

    metric: str
    legacy: float | None
    registry: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float
    verdict: Verdict
    relative: bool = False
    higher_is_worse: bool = True
    threshold_text: str = ""
    n_legacy: int = 0
    n_registry: int = 0
    rollback_limit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "legacy": _json_number(self.legacy),
            "registry": _json_number(self.registry),
            "difference": _json_number(self.difference),
            "ci_low": _json_number(self.ci_low),
            "ci_high": _json_number(self.ci_high),
            "threshold": self.threshold,
            "verdict": self.verdict,
            "relative": self.relative,
            "higher_is_worse": self.higher_is_worse,
            "threshold_text": self.threshold_text,
            "n_legacy": self.n_legacy,
            "n_registry": self.n_registry,
            "rollback_limit": self.rollback_limit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricFigure:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True)
class Decision:
    """What to do with the rollout after looking at one stage's figures."""

    action: Action
    stage_index: int
    percent: float
    """The stage's registry share, %."""
    next_percent: float
    """Share to set now: the next stage's on advance, 0 on rollback, unchanged on hold."""
    figures: list[MetricFigure] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "stage_index": self.stage_index,
            "percent": self.percent,
            "next_percent": self.next_percent,
            "reason": self.reason,
            "figures": [figure.to_dict() for figure in self.figures],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            action=data["action"],
            stage_index=int(data["stage_index"]),
            percent=float(data["percent"]),
            next_percent=float(data["next_percent"]),
            figures=[MetricFigure.from_dict(f) for f in data.get("figures", [])],
            reason=str(data.get("reason", "")),
        )


def _verdict(threshold: Threshold, rollback_limit: float, low: float, high: float) -> Verdict:
    """Rollback wins: "worse" is checked first, against the rollback limit."""
    limit = threshold.amount
    if threshold.higher_is_worse:
        if low > rollback_limit:
            return "worse"
        if high < limit:
            return "not worse"
    else:
        if high < rollback_limit:
            return "worse"
        if low > limit:
            return "not worse"
    return "undecided"


def figure_for(
    metric: str,
    threshold: Threshold,
    legacy: PathSummary,
    registry: PathSummary,
    alpha: float,
    *,
    rollback_alpha: float | None = None,
    rollback_limit: float | None = None,
) -> MetricFigure:
    """One metric's figure: "not worse" judged at error budget `alpha` against the threshold,
    "worse" at `rollback_alpha` against `rollback_limit` (both default to the former: one margin).
    See the module docstrings here and of `stats`."""
    rb_alpha = alpha if rollback_alpha is None else rollback_alpha
    rb_limit = threshold.amount if rollback_limit is None else rollback_limit
    if metric == "p95_latency":
        return _p95_figure(threshold, legacy, registry, alpha, rb_alpha, rb_limit)
    if metric == "error_rate":
        l_m, r_m, bernoulli = legacy.error_moments, registry.error_moments, True
    elif metric == "cost":
        l_m, r_m, bernoulli = legacy.cost_moments, registry.cost_moments, False
    else:
        name = metric.removeprefix("feedback.")
        l_m, r_m, bernoulli = legacy.feedback_moments(name), registry.feedback_moments(name), False
    relative = threshold.amount if threshold.relative else None
    if relative is None:
        tau = threshold.margin
    else:
        base = l_m.mean or 0.0
        tau = abs(threshold.amount) * abs(base)
    # the advance side tests against the threshold, the rollback side against the rollback limit
    # (for a relative threshold, each on its own linear form m_R - (1 + limit) m_L)
    interval: Interval | None = mean_difference(
        l_m, r_m, alpha=alpha, relative=relative, tau=tau, bernoulli=bernoulli
    )
    rollback: Interval | None = mean_difference(
        l_m,
        r_m,
        alpha=rb_alpha,
        relative=None if relative is None else rb_limit,
        tau=tau,
        bernoulli=bernoulli,
        multipliers=ROLLBACK_TAU_MULTIPLIERS,
    )
    l_mean, r_mean = l_m.mean, r_m.mean
    if interval is None or rollback is None:
        difference = None
        if l_mean is not None and r_mean is not None:
            if relative is None:
                difference = r_mean - l_mean
            elif l_mean > 0:
                difference = r_mean / l_mean - 1
        return _figure(
            metric, threshold, rb_limit, l_mean, r_mean, difference, None, None, "undecided", l_m.n, r_m.n
        )
    if threshold.higher_is_worse:
        low, high = rollback.low, interval.high
    else:
        low, high = interval.low, rollback.high
    verdict = _verdict(threshold, rb_limit, low, high)
    return _figure(
        metric, threshold, rb_limit, l_mean, r_mean, interval.estimate, low, high, verdict, l_m.n, r_m.n
    )


def _p95_figure(
    threshold: Threshold,
    legacy: PathSummary,
    registry: PathSummary,
    alpha: float,
    rb_alpha: float,
    rb_limit: float,
) -> MetricFigure:
    # higher latency is worse: the registry's lower bound and legacy's upper bound roll back
    n_l, n_r = legacy.latency_count, registry.latency_count
    l_q = quantile_bounds(legacy, 0.95, alpha / 2, rb_alpha / 2)
    r_q = quantile_bounds(registry, 0.95, rb_alpha / 2, alpha / 2)
    if l_q is None or r_q is None:
        l_est = legacy.latency_quantile(0.95)
        r_est = registry.latency_quantile(0.95)
        return _figure(
            "p95_latency", threshold, rb_limit, l_est, r_est, None, None, None, "undecided", n_l, n_r
        )
    (l_est, l_low, l_high), (r_est, r_low, r_high) = l_q, r_q
    if threshold.relative:
        difference = r_est / l_est - 1 if l_est > 0 else math.inf
        low = r_low / l_high - 1 if l_high > 0 and math.isfinite(l_high) else -1.0
        high = r_high / l_low - 1 if l_low > 0 else math.inf
    else:
        difference = r_est - l_est
        low, high = r_low - l_high, r_high - l_low
    verdict = _verdict(threshold, rb_limit, low, high)
    return _figure("p95_latency", threshold, rb_limit, l_est, r_est, difference, low, high, verdict, n_l, n_r)


def _figure(
    metric: str,
    threshold: Threshold,
    rollback_limit: float,
    legacy: float | None,
    registry: float | None,
    difference: float | None,
    low: float | None,
    high: float | None,
    verdict: Verdict,
    n_legacy: float,
    n_registry: float,
) -> MetricFigure:
    return MetricFigure(
        metric=metric,
        legacy=legacy,
        registry=registry,
        difference=difference,
        ci_low=None if low is None or math.isinf(low) else low,
        ci_high=None if high is None or math.isinf(high) else high,
        threshold=threshold.amount,
        verdict=verdict,
        relative=threshold.relative,
        higher_is_worse=threshold.higher_is_worse,
        threshold_text=threshold.text,
        n_legacy=int(n_legacy),
        n_registry=int(n_registry),
        rollback_limit=rollback_limit,
    )


def _worse_text(figure: MetricFigure, margin: float) -> str:
    if margin == 0:
        return f"{figure.metric} (threshold {figure.threshold_text}, rollback on any regression)"
    return f"{figure.metric} (threshold {figure.threshold_text}, rollback beyond {margin:g}x it)"


def decide(
    policy: GuardPolicy,
    stage_index: int,
    legacy: PathSummary,
    registry: PathSummary,
    stage_elapsed_s: float,
) -> Decision:
    """Advance, roll back or hold the stage `stage_index`, from this stage's two summaries.

    Pure and cheap (no I/O): call it as often as you like, after every call if you want; the
    intervals stay valid however often they are looked at."""
    stages = policy.stages
    stage = stages[policy.check_stage(stage_index)]
    percent = stage.percent
    alpha, rollback_alpha = policy.metric_alpha, policy.rollback_alpha
    figures = [
        figure_for(
            metric,
            threshold,
            legacy,
            registry,
            alpha,
            rollback_alpha=rollback_alpha,
            rollback_limit=policy.rollback_limit(threshold),
        )
        for metric, threshold in policy.metrics.items()
    ]
    worse = [f for f in figures if f.verdict == "worse"]
    if worse:
        names = ", ".join(_worse_text(f, policy.rollback_margin) for f in worse)
        return Decision("rollback", stage_index, percent, 0.0, figures, f"shown worse: {names}")
    if stage_index == len(stages) - 1:
        return Decision("hold", stage_index, percent, percent, figures, "last stage: nothing to advance to")
    pending = [f.metric for f in figures if f.verdict != "not worse"]
    if pending:
        return Decision(
            "hold", stage_index, percent, percent, figures, f"not yet shown not worse: {', '.join(pending)}"
        )
    min_calls = stage.min_calls if stage.min_calls is not None else policy.min_calls
    if legacy.calls < min_calls or registry.calls < min_calls:
        reason = (
            f"every metric not worse; waiting for {min_calls} calls per path "
            f"(legacy {legacy.calls}, registry {registry.calls})"
        )
        return Decision("hold", stage_index, percent, percent, figures, reason)
    min_seconds = stage.min_seconds if stage.min_seconds is not None else policy.min_seconds
    if stage_elapsed_s < min_seconds:
        reason = f"every metric not worse; stage held {stage_elapsed_s:.0f} s of {min_seconds:.0f} s"
        return Decision("hold", stage_index, percent, percent, figures, reason)
    next_percent = stages[stage_index + 1].percent
    return Decision(
        "advance",
        stage_index,
        percent,
        next_percent,
        figures,
        f"every metric shown not worse: {next_percent:g} %",
    )
