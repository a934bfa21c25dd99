"""Fleet health: how models are doing, and what the strategies do about it.

`hedging` tunes a race's `hedgeAfter` to each model's observed latency and caps the extra requests
hedges cost with a token budget. Configured under ``health:`` in ``models.yaml``.
"""

from __future__ import annotations

from .hedging import QUANTILES, HedgeBudget, HedgePolicy, HedgeState, LatencyWindow, hedge_policy

__all__ = ["QUANTILES", "HedgeBudget", "HedgePolicy", "HedgeState", "LatencyWindow", "hedge_policy"]
