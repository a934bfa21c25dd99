"""Guarded rollout: the registry path advances stage by stage while it is shown no worse than the
legacy path, and is rolled back as soon as one metric is shown worse (issue #17).

The decision core is pure and cheap: `PathSummary` (mergeable counters per path and stage),
`GuardPolicy` (stages, minimums, thresholds), `decide` (an always-valid confidence sequence per
metric, see `stats`). The shared state, the recording of calls and the CLI build on it.
"""

from __future__ import annotations

from .decide import Decision, MetricFigure, decide
from .policy import GuardPolicy, Stage, Threshold, parse_threshold, validate_guard_policy
from .summary import CallObservation, FeedbackObservation, PathSummary, SummaryError

__all__ = [
    "CallObservation",
    "Decision",
    "FeedbackObservation",
    "GuardPolicy",
    "MetricFigure",
    "PathSummary",
    "Stage",
    "SummaryError",
    "Threshold",
    "decide",
    "parse_threshold",
    "validate_guard_policy",
]
