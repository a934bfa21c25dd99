"""What happened during one `complete` call, attached to the response the caller gets.

The response stays litellm's own `ModelResponse`; the routing record rides along in its
`_hidden_params`, the place litellm itself keeps per-response metadata, so nothing about the
object's shape changes for code that already handles litellm responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Attempt", "Outcome", "Routing", "attach_routing", "routing_of"]

Outcome = Literal["won", "lost", "cancelled", "failed", "skipped", "pending"]

ROUTING_KEY = "lucky_routing"


@dataclass
class Attempt:
    """One model tried by a strategy (retries of the same model are counted in `tries`)."""

    model: str
    outcome: Outcome = "pending"
    latency_ms: float = 0.0
    started_ms: float = 0.0
    """When the attempt started, in ms after the request started (shows hedging delays)."""
    cost_usd: float = 0.0
    error: str | None = None
    error_type: str | None = None
    tries: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_model: str | None = None
    content: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "outcome": self.outcome,
            "latency_ms": round(self.latency_ms, 3),
            "started_ms": round(self.started_ms, 3),
            "cost_usd": self.cost_usd,
            "error": self.error,
            "error_type": self.error_type,
            "tries": self.tries,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass
class Routing:
    """How a spec was resolved and run: the answer to "which model answered, and what did it cost?"."""

    spec: str
    strategy: str
    models: list[str]
    experiment: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    rollout_path: str = "registry"
    winner: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    votes: dict[str, int] | None = None
    agreement: float | None = None
    answers: dict[str, str] | None = None
    cached: bool = False
    """Answered by a cache middleware (`lucky_litellm.middleware.cache`): no model was called."""
    hedge_delay_ms: float | None = None
    """race with `hedgeAfter`: how long the first model was given before a hedge (ms)."""
    hedges: int = 0
    """Models a hedged race started because the one in flight was slow (failovers not counted)."""
    hedges_refused: int = 0
    """Hedges the hedge budget refused until the request ended (the upstream was slow for too many
    requests); a refused hedge is asked for again after each further delay, and one the budget
    granted later counts in `hedges` instead."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "strategy": self.strategy,
            "models": list(self.models),
            "experiment": self.experiment,
            "user_id": self.user_id,
            "request_id": self.request_id,
            "rollout_path": self.rollout_path,
            "winner": self.winner,
            "attempts": [attempt.as_dict() for attempt in self.attempts],
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 3),
            "votes": self.votes,
            "agreement": self.agreement,
            "hedge_delay_ms": None if self.hedge_delay_ms is None else round(self.hedge_delay_ms, 3),
            "hedges": self.hedges,
            "hedges_refused": self.hedges_refused,
        }


def attach_routing(response: Any, routing: Routing) -> Any:
    """Store `routing` on a litellm response (or our stream wrapper) and return the response."""
    hidden = getattr(response, "_hidden_params", None)
    if hidden is None:
        hidden = {}
        try:
            response._hidden_params = hidden
        except (AttributeError, TypeError, ValueError):
            object.__setattr__(response, "_hidden_params", hidden)
    hidden[ROUTING_KEY] = routing
    return response


def routing_of(response: Any) -> Routing:
    """The `Routing` record of a response returned by `complete`.

    Raises `LookupError` for objects that did not come from lucky_litellm, rather than
    returning a half-empty record that would hide the mistake.
    """
    hidden = getattr(response, "_hidden_params", None)
    routing = hidden.get(ROUTING_KEY) if isinstance(hidden, dict) else None
    if not isinstance(routing, Routing):
        raise LookupError(f"{type(response).__name__} was not returned by lucky_litellm.complete")
    return routing
