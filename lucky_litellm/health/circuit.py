"""One model's circuit breaker: what counts against a model, and the closed/open/half-open machine.

A model's circuit opens after `consecutiveFailures` failures in a row, or when the share of
failures over a sliding window (`errorRate`, once it holds `minCalls` calls) is too high, or for
a 429's Retry-After. While open, strategies skip the model. When the cooldown has passed the
circuit is half-open: one probe at a time is let through; a success closes the circuit (and
clears its window), a failure opens it for another cooldown.

What counts as a failure: timeouts, connection errors, 5xx, an answer without choices, a stream
cut short: whatever says the *model* is unwell. A 4xx caused by the request (400, 401, 403, 404,
422, any 4xx that is not transient) says nothing about the model and never counts; nor does a
race loser or hedge that was cancelled because another model answered first.

The same rules run in Lua when the state is shared through Redis (`state.health`); this module
is the in-process half, used alone with the memory store and for immediate local decisions in
a fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import EmptyAnswerError
from ..retry import is_transient, retry_after_seconds, status_of

if TYPE_CHECKING:
    from ..config import CircuitConfig

__all__ = ["BUCKETS", "Breaker", "CircuitState", "Policy", "Verdict", "verdict_of"]

CircuitState = Literal["closed", "open", "half-open"]
Verdict = Literal["failure", "ignore", "rate-limited"]
BUCKETS = 10
"""The error-rate window is kept as this many buckets: it slides by a tenth of its length."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The thresholds of `health.circuit`, in seconds."""

    consecutive_failures: int = 5
    error_rate: float | None = 0.5
    min_calls: int = 20
    window_s: float = 60.0
    cooldown_s: float = 5.0
    max_retry_after_s: float = 600.0

    @classmethod
    def from_config(cls, config: CircuitConfig) -> Policy:
        return cls(
            consecutive_failures=config.consecutive_failures,
            error_rate=config.error_rate,
            min_calls=config.min_calls,
            window_s=config.window_s,
            cooldown_s=config.cooldown_s,
            max_retry_after_s=config.max_retry_after_s,
        )

    @property
    def bucket_s(self) -> float:
        return self.window_s / BUCKETS


def verdict_of(exc: BaseException) -> tuple[Verdict, float | None]:
    """Whether `exc` counts against the model: a failure, a 429 (with its Retry-After, if it
    sent one), or nothing (the request's own fault, or not an error of the model)."""
    status = status_of(exc)
    if status == 429:
        return "rate-limited", retry_after_seconds(exc)
    if isinstance(exc, EmptyAnswerError) or is_transient(exc):
        return "failure", None
    return "ignore", None


class Breaker:
    """The circuit of one model in this process (plain fields, updated under `Circuits`' lock).

    `pending_*` hold what happened since the last push to a shared store: counts only, so a
    batch is a handful of integers however many calls it covers."""

    __slots__ = (
        "bucket_nos",
        "consecutive",
        "current",
        "fails",
        "index",
        "last_error",
        "last_failure",
        "model",
        "oks",
        "open_until",
        "opened",
        "opens",
        "pending",
        "pending_error",
        "pending_fail",
        "pending_had_ok",
        "pending_ok",
        "pending_probe_done",
        "pending_probe_ok",
        "pending_retry_after",
        "pending_trailing",
        "probe_blocked_until",
        "probing",
        "reason",
        "shared_window",
    )

    def __init__(self, model: str) -> None:
        self.model = model
        self.opened = False
        """Open or half-open (which one depends on the time: see `state`)."""
        self.open_until = 0.0
        """Monotonic time at which an open circuit becomes half-open."""
        self.consecutive = 0
        self.oks = [0] * BUCKETS
        self.fails = [0] * BUCKETS
        self.bucket_nos = [-1] * BUCKETS
        self.current = -1
        """Number of the window bucket the latest call fell in (its slot: `index`)."""
        self.index = 0
        self.reason = ""
        self.last_error = ""
        self.last_failure = -math.inf
        self.opens = 0
        self.probing = False
        """A probe of this process is in flight (half-open lets one through at a time)."""
        self.probe_blocked_until = 0.0
        """Another process holds the fleet's probe: do not ask the store again before this time."""
        self.shared_window: tuple[int, int] | None = None
        """(calls, failures) over the window fleet-wide, as last read from a shared store."""
        self.pending = False
        self.pending_ok = self.pending_fail = self.pending_trailing = 0
        self.pending_had_ok = self.pending_probe_ok = self.pending_probe_done = False
        self.pending_retry_after = -1.0
        self.pending_error = ""

    # -- reading ---------------------------------------------------------------------------------

    def state(self, now: float) -> CircuitState:
        if not self.opened:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def window(self, now: float, policy: Policy) -> tuple[int, int]:
        """(calls, failures) in this process over the sliding window."""
        current = int(now * (1 / policy.bucket_s))
        calls = failures = 0
        for index in range(BUCKETS):
            if self.bucket_nos[index] > current - BUCKETS:
                calls += self.oks[index] + self.fails[index]
                failures += self.fails[index]
        return calls, failures

    # -- events ----------------------------------------------------------------------------------

    def _bucket(self, now: float, policy: Policy) -> int:
        number = int(now * (1 / policy.bucket_s))
        if number == self.current:
            return self.index
        index = number % BUCKETS
        if self.bucket_nos[index] != number:
            self.bucket_nos[index] = number
            self.oks[index] = self.fails[index] = 0
        if number > self.current:
            self.current, self.index = number, index
        return index

    def success(self, now: float, policy: Policy, probe: bool, shared: bool) -> bool:
        """A call answered. Returns True when this closed the circuit."""
        self.consecutive = 0
        self.oks[self._bucket(now, policy)] += 1
        if shared:
            self.pending = True
            self.pending_ok += 1
            self.pending_trailing = 0
            self.pending_had_ok = True
            if probe:
                self.pending_probe_ok = True
        if self.opened and (probe or now >= self.open_until):
            self.opened = False
            self.reason = ""
            self.clear_window()
            return True
        return False

    def failure(
        self,
        now: float,
        policy: Policy,
        error: str,
        retry_after: float | None,
        probe: bool,
        shared: bool,
    ) -> bool:
        """A call failed (`retry_after` set: a 429 that said how long). Returns True when this
        opened the circuit (or re-opened it after a probe)."""
        self.consecutive += 1
        self.fails[self._bucket(now, policy)] += 1
        self.last_failure = now
        self.last_error = error
        if shared:
            self.pending = True
            self.pending_fail += 1
            self.pending_trailing += 1
            self.pending_error = error
            if retry_after is not None:
                self.pending_retry_after = max(self.pending_retry_after, retry_after)
        if retry_after is not None:
            retry_after = min(retry_after, policy.max_retry_after_s)
            return self._open(
                max(self.open_until, now + retry_after) if self.opened else now + retry_after,
                f"rate limited (429, Retry-After {retry_after:g} s)",
            )
        if self.opened:
            if probe or now >= self.open_until:  # the probe failed: another cooldown
                return self._open(now + policy.cooldown_s, f"probe failed ({error})", again=True)
            return False
        if self.consecutive >= policy.consecutive_failures:
            return self._open(
                now + policy.cooldown_s, f"{self.consecutive} failures in a row (last: {error})"
            )
        if policy.error_rate is not None:
            calls, failures = self.window(now, policy)
            if calls >= policy.min_calls and failures >= policy.error_rate * calls:
                return self._open(
                    now + policy.cooldown_s,
                    f"error rate {failures / calls:.0%} over {calls} calls (last: {error})",
                )
        return False

    def clear_window(self) -> None:
        """A closed circuit starts counting afresh: old failures must not re-open it at once."""
        self.oks = [0] * BUCKETS
        self.fails = [0] * BUCKETS

    def _open(self, until: float, reason: str, *, again: bool = False) -> bool:
        was = self.opened
        self.opened = True
        self.open_until = until
        self.reason = reason
        if not was:
            self.opens += 1
        return not was or again
