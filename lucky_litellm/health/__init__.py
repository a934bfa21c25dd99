"""Fleet health: per-model circuit breakers (`circuit`, `circuits`), shared through the state store.

`Models` builds one `Circuits` from ``health.circuit`` in models.yaml; with ``LUCKY_STATE_URL=
redis://...`` every process and proxy replica shares it (`lucky_litellm.state.health`).
"""

from __future__ import annotations

from .circuit import Breaker, CircuitState, Policy, verdict_of
from .circuits import Circuits, ModelHealth

__all__ = ["Breaker", "CircuitState", "Circuits", "ModelHealth", "Policy", "verdict_of"]
