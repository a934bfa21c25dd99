"""What the fake upstream does for one call, and what it recorded about each call.

A `Behavior` is a plain value so tests can build, compare and reuse them; the server reads
one per request and never mutates it. Faults are fields rather than subclasses because a
test usually wants one knob turned on top of a normal answer (a slow 200, a 429 with
Retry-After, a stream that stops after two chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Behavior", "Call", "Outcome"]

Outcome = Literal["ok", "error", "malformed", "dropped", "cut", "cancelled", "stopped"]
"""How the server ended a call.

`ok` full answer, `error` an HTTP error status, `malformed` an unparsable body, `dropped`
connection closed without a response, `cut` a stream ended early on purpose, `cancelled` the
client went away first, `stopped` the server was stopped while the call was running.
"""


@dataclass(frozen=True, kw_only=True)
class Behavior:
    """How the fake upstream answers one request.

    Precedence when several faults are set: `hang`, then (after the latency) `drop`, then an
    error `status`, then `malformed`. `malformed` combined with an error status gives a
    non-JSON error page, like a load balancer's HTML 502.

        Behavior(content="hi", latency_ms=50)             # slow but fine
        Behavior(status=429, retry_after=0.2)             # rate limited, Retry-After: 0.2
        Behavior(content="a b c d", stream_cut_after=2)   # stream truncated after 2 chunks
    """

    content: str | None = None
    """Answer text; None means `f"answer from {model}"`."""
    latency_ms: float = 0
    """Delay before the response (or before the first stream chunk), errors included."""
    latency_fn: Callable[[int], float] | None = None
    """Per-model call index (0-based) -> latency in ms; replaces `latency_ms` when set."""
    latency_of_request: Callable[[int, Mapping[str, Any]], float] | None = None
    """(call index, request body) -> latency in ms; replaces both of the above when set. For a
    benchmark whose request `n` must meet the same latency whichever setting sends it, however
    many calls the model received before (a hedge target's call index depends on the hedges)."""
    chunk_delay_ms: float = 0
    """Delay between stream chunks."""
    prompt_tokens: int | None = None
    """Reported input tokens; None means a rough count from the request messages."""
    completion_tokens: int | None = None
    """Reported output tokens; None means the number of words in the answer."""
    honor_max_tokens: bool = False
    """Like a real model, report at most the request's `max_tokens` / `max_completion_tokens`."""
    status: int = 200
    """HTTP status; anything but 200 sends an OpenAI-style error JSON."""
    error_message: str | None = None
    """Message inside the error JSON; None gives a generic one naming the status."""
    retry_after: float | None = None
    """Seconds sent as the `Retry-After` header (any status)."""
    hang: bool = False
    """Never answer; ends only when the client disconnects or the server stops."""
    malformed: bool = False
    """Send a body that is not valid JSON (a broken SSE event when streaming)."""
    drop: bool = False
    """Close the connection without sending any response."""
    stream_cut_after: int | None = None
    """Streaming only: send this many content chunks, then end without finish_reason/[DONE]."""
    stream_cut_reset: bool = False
    """With `stream_cut_after`: break the connection instead of ending the HTTP body cleanly."""
    stream_error_after: int | None = None
    """Streaming only: send this many content chunks, then an OpenAI-style error event
    (`data: {"error": {...}}`, carrying `error_message` and `status`) and end the stream."""
    tool_calls: tuple[tuple[str, str], ...] | None = None
    """Answer with these tool calls, each `(function name, JSON arguments text)`, instead of text
    (content null, finish_reason "tool_calls"); not for streams."""
    finish_reason: str = "stop"
    """finish_reason of the answer."""
    first_chunk_delay_ms: float = 0
    """Streaming only: delay between the response headers and the first chunk (a model that
    accepted the request and is still thinking)."""
    empty_choices: bool = False
    """Answer 200 with an empty `choices` list (usage still reported)."""
    cached_tokens: int | None = None
    """Reported `prompt_tokens_details.cached_tokens` (part of the prompt tokens)."""
    response_model: str | None = None
    """`model` field of the response; None echoes the requested model so cost maps price it."""
    headers: Mapping[str, str] | None = None
    """Extra response headers (e.g. `x-ratelimit-remaining-requests`)."""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        for name in ("latency_ms", "chunk_delay_ms", "first_chunk_delay_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.stream_cut_after is not None and self.stream_cut_after < 0:
            raise ValueError("stream_cut_after must be >= 0")
        if self.stream_error_after is not None and self.stream_error_after < 0:
            raise ValueError("stream_error_after must be >= 0")
        if self.stream_cut_reset and self.stream_cut_after is None:
            raise ValueError("stream_cut_reset needs stream_cut_after")

    def latency_for(self, index: int, body: Mapping[str, Any] | None = None) -> float:
        """Latency in seconds for the model's `index`-th call, whose request body is `body`."""
        if self.latency_of_request is not None:
            ms = self.latency_of_request(index, body or {})
        else:
            ms = self.latency_fn(index) if self.latency_fn is not None else self.latency_ms
        return max(0.0, ms) / 1000.0


@dataclass(slots=True, eq=False)
class Call:
    """One request the fake upstream received. `ended_at`/`outcome` are filled in when it ends."""

    model: str
    body: dict[str, Any]
    stream: bool
    started_at: float
    """`time.monotonic()` when the request arrived."""
    headers: dict[str, str]
    index: int
    """This call's position among the calls to `model` since it was last scripted or reset."""
    behavior: Behavior = field(repr=False)
    ended_at: float | None = None
    outcome: Outcome | None = None
    generation: int = field(default=0, repr=False)
    stray: bool = False
    """Sent by an earlier marker scope and arriving late (see `FakeUpstream.reset(marker=...)`):
    answered, but kept out of `calls` and every counter."""

    @property
    def duration_ms(self) -> float | None:
        """How long the server spent on the call, or None while it is running."""
        return None if self.ended_at is None else (self.ended_at - self.started_at) * 1000.0
