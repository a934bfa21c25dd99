"""Fleet health: how models are doing, and what the strategies do about it.

`circuit` and `circuits` are per-model circuit breakers (``health.circuit``): a failing model is
skipped for a cooldown, shared by every process and proxy replica through the state store
(`lucky_litellm.state.health`). `hedging` tunes a race's `hedgeAfter` to each model's observed
latency and caps the extra requests hedges cost with a token budget (``health.hedging``).
"""

from __future__ import annotations

from .circuit import Breaker, CircuitState, Policy, verdict_of
from .circuits import Circuits, ModelHealth
from .hedging import QUANTILES, HedgeBudget, HedgePolicy, HedgeState, LatencyWindow, hedge_policy

__all__ = [
    "QUANTILES",
    "Breaker",
    "CircuitState",
    "Circuits",
    "HedgeBudget",
    "HedgePolicy",
    "HedgeState",
    "LatencyWindow",
    "ModelHealth",
    "Policy",
    "hedge_policy",
    "verdict_of",
]
