"""A resolved spec: exactly what `complete` would run, computed before any call is made."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .config.schema import WhenAllOpen
    from .health import HedgePolicy
    from .providers import Target

__all__ = ["Plan", "Strategy"]

Strategy = Literal["first", "race", "fallback", "consensus"]


@dataclass(frozen=True)
class Plan:
    """What would run for a spec: strategy, candidate models, deadline and cost bounds.

    `skipped` holds candidates dropped while resolving (disabled provider), each with its reason,
    so `routing_of` can show them next to the models that were tried.
    """

    spec: str
    strategy: Strategy
    targets: tuple[Target, ...]
    timeout_s: float
    retries: int
    max_cost: float | None = None
    hedge_after_s: float | None = None
    min_agreement: float | None = None
    attempt_timeout_s: float | None = None
    """Explicit per-call budget (`attemptTimeout`); None derives one from the deadline and the
    strategy (see `call_budget_s`)."""
    experiment: str | None = None
    tier: str | None = None
    user_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    hedging: HedgePolicy | None = field(default=None, compare=False)
    """race: how the hedge delay is chosen and budgeted (``hedgeAfter: auto``, or a fixed delay
    under an explicit budget); None runs a fixed `hedge_after_s` (or no hedging) as always."""
    circuit: bool = True
    """Whether open circuits skip models of this plan (an experiment's ``health.circuit.enabled``)."""
    when_all_open: WhenAllOpen | None = None
    """The experiment's ``health.circuit.whenAllOpen``; None: the registry's."""

    @functools.cached_property
    def unpriced(self) -> tuple[str, ...]:
        """litellm models of this plan that nobody can price (`pricing.is_priced`), found once
        per plan (plans are cached), on first use, once litellm is loaded: a `costLimit` cannot
        bound their spend, so budgeted calls refuse them and others warn once per model."""
        from .pricing import is_priced

        return tuple(dict.fromkeys(t.litellm_model for t in self.targets if not is_priced(t)))

    @property
    def models(self) -> list[str]:
        return [target.spec for target in self.targets]

    @property
    def call_budget_s(self) -> float | None:
        """Longest one call may take, in seconds; None leaves it to the deadline alone.

        `attemptTimeout` when the plan sets one. Otherwise `first` with retries gives a call half
        the deadline, so a hang can be retried once in the other half; `fallback` bounds each
        model by its share of the time left instead (`RequestRun.share_of_deadline`); `race` and
        `consensus` run their models side by side, so one hung model costs no other its time.
        """
        if self.attempt_timeout_s is not None:
            return self.attempt_timeout_s
        if self.strategy == "first" and self.retries > 0:
            return self.timeout_s / 2
        return None

    def _attempt_budget(self) -> str:
        """The per-attempt budget in words, for `describe` (and so `lucky-litellm resolve`)."""
        if self.attempt_timeout_s is not None:
            return f"attemptTimeout: {self.attempt_timeout_s * 1000:.0f} ms per call"
        if self.strategy == "first" and self.retries > 0:
            return f"{self.timeout / 2:.0f} ms per call (half the deadline, so a hang is retried once)"
        if self.strategy == "fallback" and len(self.targets) > 1:
            first = self.timeout / len(self.targets)
            return f"an equal share of the time left per model ({first:.0f} ms for the first)"
        return "the deadline"

    @property
    def timeout(self) -> float:
        """Deadline in milliseconds, the unit of the YAML configs."""
        return self.timeout_s * 1000.0

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "strategy": self.strategy,
            "models": self.models,
            "litellm_models": [target.litellm_model for target in self.targets],
            "timeout_ms": self.timeout,
            "attempt_timeout_ms": None if self.attempt_timeout_s is None else self.attempt_timeout_s * 1000,
            "attempt_budget": self._attempt_budget(),
            "max_cost": self.max_cost,
            "retries": self.retries,
            "hedge_after_ms": None if self.hedge_after_s is None else self.hedge_after_s * 1000,
            "hedging": None if self.hedging is None else self.hedging.describe(),
            "min_agreement": self.min_agreement,
            "experiment": self.experiment,
            "tier": self.tier,
            "user_id": self.user_id,
            "skipped": [{"model": model, "reason": reason} for model, reason in self.skipped],
            "circuit": self.circuit,
        }
