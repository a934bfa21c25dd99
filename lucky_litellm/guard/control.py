"""Start, stop and read a guarded rollout, and send user metrics (`feedback`) for its calls.

The functions act on the default registry's state (`LUCKY_STATE_URL`), so the CLI and every
process configured with the same store see the same guard; pass `models=` for another registry.
Starting, stopping and reading are administrative and synchronous (Redis round trips): call them
off the event loop. `feedback` has an async form and a `_sync` one, like `complete`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .store import GuardError, GuardState, GuardStore

logger = logging.getLogger("lucky_litellm.guard")

if TYPE_CHECKING:
    from ..registry import Models
    from ..yaml_loader import LineMap
    from .policy import GuardPolicy

__all__ = [
    "GuardReport",
    "StageReport",
    "feedback",
    "feedback_sync",
    "guard_history",
    "guard_status",
    "print_guard_status",
    "start_guard",
    "stop_guard",
]


def _store(models: Models | None) -> GuardStore:
    if models is None:
        from ..registry import default_models

        models = default_models()
    return models.state.guard


def as_policy(
    policy: GuardPolicy | Mapping[str, Any] | None, *, source: str | None = None, lines: LineMap | None = None
) -> GuardPolicy:
    """A `GuardPolicy` from a policy, a mapping of its fields (camelCase or snake_case), or None
    (the defaults); a bad one is a `ConfigError` naming each field that is wrong."""
    from .policy import validate_guard_policy

    if policy is not None and not isinstance(policy, Mapping) and not hasattr(policy, "model_dump"):
        raise GuardError(f"policy must be a GuardPolicy or a mapping, got {type(policy).__name__}")
    return validate_guard_policy(policy, source=source, lines=lines)


def start_guard(
    policy: GuardPolicy | Mapping[str, Any] | None = None, *, models: Models | None = None
) -> GuardState:
    """Start a guarded rollout: the registry path goes to the policy's first stage now, and every
    serving process sharing the store records its calls and applies the decisions."""
    return _store(models).start(as_policy(policy))


def stop_guard(*, models: Models | None = None) -> GuardState:
    """Stop the running guard; the rollout stays at its current percentage."""
    return _store(models).stop()


def guard_history(*, models: Models | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Every recorded guard event (start, advance, rollback, complete, stop), oldest first."""
    return _store(models).history(limit)


@dataclass
class StageReport:
    """One stage of a guard run: its share, how long it ran, what each path did, and the figures
    of its decision (for the current stage: the figures a decision would use now)."""

    index: int
    percent: float
    state: str
    """passed, current, rolled back, completed, stopped, or pending."""
    elapsed_s: float | None = None
    calls: dict[str, int] = field(default_factory=dict)
    action: str | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "percent": self.percent,
            "state": self.state,
            "elapsed_s": self.elapsed_s,
            "calls": self.calls,
            "action": self.action,
            "figures": self.figures,
        }


@dataclass
class GuardReport:
    """What `lucky-litellm rollout guard status` shows."""

    state: GuardState
    stages: list[StageReport]
    location: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "guard": self.state.as_dict(),
            "stages": [s.as_dict() for s in self.stages],
            "store": self.location,
        }


def guard_status(*, models: Models | None = None) -> GuardReport:
    """The guard and, per stage, each metric's difference with its confidence interval: from the
    decision events for finished stages, computed now for the current one."""
    from .decide import decide

    store = _store(models)
    state = store.read()
    if not state.run_id:
        return GuardReport(state, [], store.location)
    policy = store.policy_of(state)
    events = {
        int(e.get("stage_index", -1)): e
        for e in store.history()
        if e.get("run") == state.run_id and e.get("action") in ("advance", "finish", "rollback", "complete")
    }
    stages: list[StageReport] = []
    for index, stage in enumerate(policy.stages):
        report = StageReport(index=index, percent=stage.percent, state="pending")
        if index < len(state.stage_starts):
            end = state.stage_starts[index + 1] if index + 1 < len(state.stage_starts) else None
            if end is None:
                end = state.ended_at if state.ended_at is not None else state.now
            report.elapsed_s = round(max(0.0, end - state.stage_starts[index]), 3)
        event = events.get(index)
        if event is not None:
            report.action = str(event["action"])
            report.state = {
                "advance": "passed",
                "finish": "passed",
                "rollback": "rolled back",
                "complete": "completed",
            }[report.action]
            report.calls = {k: int(v) for k, v in (event.get("calls") or {}).items()}
            report.figures = list((event.get("decision") or {}).get("figures") or [])
        elif index == state.stage_index and state.status == "completed":
            report.state = "completed"  # reached the last stage, 100 %: nothing left to compare
        elif index == state.stage_index:
            legacy, registry = store.summaries(state.run_id, index)
            decision = decide(policy, index, legacy, registry, state.stage_elapsed_s)
            report.state = "current" if state.active else state.status.replace("_", " ")
            report.action = decision.action if state.active else None
            report.calls = {"legacy": legacy.calls, "registry": registry.calls}
            report.figures = decision.to_dict()["figures"]
        stages.append(report)
    return GuardReport(state, stages, store.location)


def print_guard_status(*, models: Models | None = None, width: int | None = None) -> GuardReport:
    """Print what `lucky-litellm rollout guard status` prints (for a guard in this process's memory,
    a rehearsal, a notebook); returns the report."""
    from rich.console import Console

    from .report import render_terminal

    report = guard_status(models=models)
    render_terminal(report, Console(width=width or 140))
    return report


async def feedback(request_id: str, name: str, value: float, *, models: Models | None = None) -> bool:
    """Store a user metric (`name`, a number: a rating, 1/0 for thumbs up, a task score) with the
    call `request_id` (`routing_of(response).request_id`), on that call's path and stage, so the
    guard compares it between paths when the policy names it (``feedback.<name>``).

    `models` is the registry that made the call; default: the default registry. Calls made through
    your own `Models(...)` are only known to its store: pass ``models=`` (or share a ``stateUrl``),
    else the call is not found.

    Returns True when stored, False when the call is unknown: no guard was running when it was
    made, it is older than a day, or it was made through another registry (`models`); the reason
    is logged at DEBUG on ``lucky_litellm.guard``. Bad arguments raise `FeedbackError` naming the
    argument."""
    stored = await _store(models).add_feedback_async(request_id, name, value)
    if not stored:
        _log_unknown(request_id, models)
    return stored


def feedback_sync(request_id: str, name: str, value: float, *, models: Models | None = None) -> bool:
    """`feedback` for synchronous code."""
    stored = _store(models).add_feedback(request_id, name, value)
    if not stored:
        _log_unknown(request_id, models)
    return stored


def _log_unknown(request_id: str, models: Models | None) -> None:
    logger.debug(
        "feedback for request %.60r not stored: that call is unknown to %s (no guard was running when "
        "it was made, it is older than a day, or it was made through another registry: pass models=)",
        request_id,
        "the default registry's store" if models is None else "this registry's store",
    )
