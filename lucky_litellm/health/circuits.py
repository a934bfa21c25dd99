"""The circuits of one registry: the check before an attempt, the outcome after it, the snapshot.

The hot path costs next to nothing: before a strategy runs, the engine reads one attribute
(`unhealthy`, false while every circuit is closed) and only then looks at the models of the plan;
after an attempt, its outcome is a few integer updates under a lock. Nothing on the request path
waits for the state store, except asking for the fleet's probe slot of a half-open circuit
(once per cooldown, not per call).

With a shared store (Redis), each process decides on its own calls at once (a model failing
here opens here immediately), and the syncer thread pushes the counts every 0.1 s and reads back
the fleet's circuits (`state.health.RedisHealthStore`), so a circuit opened by any process is
seen by every other one within a few tenths of a second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CircuitOpenError, StateUnavailableError
from .circuit import Breaker, CircuitState, Policy, verdict_of

if TYPE_CHECKING:
    from ..calls import RequestRun
    from ..config import CircuitConfig, WhenAllOpen
    from ..providers import Target
    from ..state.health import RedisHealthStore, SharedCircuit

__all__ = ["Circuits", "ModelHealth"]

logger = logging.getLogger("lucky_litellm.health")

_DEADLINE_SLACK_S = 0.01
"""An attempt cancelled this close to the request's deadline was cut by the deadline: it timed out."""


@dataclass(frozen=True)
class ModelHealth:
    """One model's circuit as this process sees it (`Models.health()`, `lucky-litellm health`)."""

    model: str
    state: CircuitState
    consecutive_failures: int
    calls: int
    """Calls over the sliding window (fleet-wide with a shared store)."""
    failures: int
    cooldown_remaining_s: float
    """Until an open circuit lets a probe through (0 unless open)."""
    opens: int
    reason: str
    last_error: str
    last_failure_ago_s: float | None

    @property
    def error_rate(self) -> float | None:
        return None if not self.calls else self.failures / self.calls

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "calls": self.calls,
            "failures": self.failures,
            "error_rate": self.error_rate,
            "cooldown_remaining_s": round(self.cooldown_remaining_s, 3),
            "opens": self.opens,
            "reason": self.reason,
            "last_error": self.last_error,
            "last_failure_ago_s": None
            if self.last_failure_ago_s is None
            else round(self.last_failure_ago_s, 3),
        }


class Circuits:
    """Per-model circuit breakers of a registry, in this process or shared through `store`."""

    def __init__(self, config: CircuitConfig, store: RedisHealthStore | None = None) -> None:
        self.policy = Policy.from_config(config)
        self._buckets_per_s = 1 / self.policy.bucket_s
        self.when_all_open: WhenAllOpen = config.when_all_open
        self.store = store
        self.shared = store is not None
        self.unhealthy = False
        """True while some circuit is open or half-open: the one field the hot path reads."""
        self._breakers: dict[str, Breaker] = {}
        self._lock = threading.Lock()
        self._active = False
        if store is not None:
            store.attach(self)

    def __repr__(self) -> str:
        where = "shared" if self.shared else "this process"
        return f"Circuits({self.policy}, {where})"

    @property
    def active(self) -> bool:
        """Whether this process uses its circuits (only then does the syncer refresh them)."""
        return self._active

    def _breaker(self, model: str) -> Breaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.setdefault(model, Breaker(model))
        return breaker

    def _recompute(self) -> None:
        self.unhealthy = any(breaker.opened for breaker in self._breakers.values())

    # -- before the strategy ---------------------------------------------------------------------

    async def admit(
        self, run: RequestRun, targets: Sequence[Target], when_all_open: WhenAllOpen
    ) -> list[Target]:
        """The targets whose circuit lets them through; the others are recorded as skipped
        attempts (reason ``circuit open``). A half-open model is kept when this request gets its
        probe slot. Every model open: `CircuitOpenError`, or the least recently failed one."""
        self._active = True
        now = time.monotonic()
        kept: list[Target] = []
        refused: list[tuple[Target, Breaker, str, float]] = []
        for target in targets:
            breaker = self._breakers.get(target.spec)
            if breaker is None or not breaker.opened:
                kept.append(target)
                continue
            if now < breaker.open_until:
                refused.append((target, breaker, "open", breaker.open_until - now))
            elif await self._take_probe(breaker, run):
                if run.probes is None:
                    run.probes = {}
                run.probes[target.spec] = "half-open"
                kept.append(target)
            else:
                refused.append((target, breaker, "half-open", 0.0))
        forced: Target | None = None
        if not kept and refused:
            if when_all_open == "fail":
                for target, breaker, state, wait in refused:
                    run.skip(target.spec, _skip_reason(breaker, state, wait), circuit_state=state)
                raise CircuitOpenError(
                    run.plan.spec,
                    {target.spec: wait for target, _, _, wait in refused},
                    {target.spec: breaker.reason or "failing" for target, breaker, _, _ in refused},
                )
            forced = min(refused, key=lambda item: item[1].last_failure)[0]
            if run.probes is None:
                run.probes = {}
            run.probes[forced.spec] = "open"
            kept.append(forced)
        for target, breaker, state, wait in refused:
            if target is not forced:
                run.skip(target.spec, _skip_reason(breaker, state, wait), circuit_state=state)
        return kept

    async def _take_probe(self, breaker: Breaker, run: RequestRun) -> bool:
        """The probe slot of a half-open circuit: one per process, and one per fleet when shared
        (a key set with NX in Redis; refused, the store is not asked again for a moment)."""
        with self._lock:
            if breaker.probing:
                return False
            breaker.probing = True
        store = self.store
        if store is None:
            return True
        now = time.monotonic()
        if now < breaker.probe_blocked_until:
            breaker.probing = False
            return False
        try:
            wait = await store.take_probe(breaker.model, max(run.remaining(), 0.05) + 0.5)
        except StateUnavailableError:
            return True  # the store is away: this process probes on its own
        except BaseException:
            breaker.probing = False
            raise
        if wait is None:
            return True
        breaker.probing = False
        breaker.probe_blocked_until = time.monotonic() + min(wait, 0.1)
        return False

    # -- after an attempt --------------------------------------------------------------------------

    def succeeded(self, model: str, run: RequestRun) -> None:
        """An attempt of `model` answered (for a stream: its first chunk arrived).

        The hot path: a closed circuit in the same window bucket as the last call costs a few
        attribute updates, without the lock (a success lost to a concurrent push of the syncer
        only makes an error rate a hair higher; failures and transitions take the lock)."""
        breaker = self._breakers.get(model)
        if breaker is not None and not breaker.opened and run.probes is None:
            breaker.consecutive = 0
            if int(time.monotonic() * self._buckets_per_s) == breaker.current:
                breaker.oks[breaker.index] += 1
                if self.shared:
                    breaker.pending_ok += 1
                    breaker.pending_trailing = 0
                    breaker.pending_had_ok = breaker.pending = True
                return
        self._succeeded(model, run)

    def _succeeded(self, model: str, run: RequestRun) -> None:
        self._active = True
        probes = run.probes
        probe = probes is not None and model in probes
        breaker = self._breaker(model)
        with self._lock:
            if probe:
                assert probes is not None
                del probes[model]
                breaker.probing = False
                breaker.pending_probe_done = self.shared
            closed = breaker.success(time.monotonic(), self.policy, probe, self.shared)
        if closed:
            logger.info("circuit of %s closed", model)
            self._recompute()

    def failed(self, model: str, exc: BaseException, run: RequestRun) -> None:
        """An attempt of `model` failed with `exc` (after its retries)."""
        self._active = True
        verdict, retry_after = verdict_of(exc)
        probes = run.probes
        probe = probes is not None and model in probes
        breaker = self._breakers.get(model) or self._breaker(model)
        with self._lock:
            if probe:
                assert probes is not None
                del probes[model]
                breaker.probing = False
                if self.shared:
                    breaker.pending = breaker.pending_probe_done = True
            if verdict == "ignore":
                return
            if verdict == "rate-limited" and retry_after is None:
                verdict = "failure"  # a 429 that did not say how long: an ordinary failure
            opened = breaker.failure(
                time.monotonic(),
                self.policy,
                type(exc).__name__,
                retry_after if verdict == "rate-limited" else None,
                probe,
                self.shared,
            )
        if opened:
            logger.warning("circuit of %s opened: %s", model, breaker.reason)
            self.unhealthy = True

    def cancelled(self, model: str, run: RequestRun) -> None:
        """An attempt of `model` was cancelled: by the request's deadline (a timeout of the
        model), or because another model answered first (a race loser: not the model's fault)."""
        if run.remaining() <= _DEADLINE_SLACK_S:
            self.failed(model, asyncio.TimeoutError("the request's deadline passed during the call"), run)
        else:
            self.release(model, run)

    def release(self, model: str, run: RequestRun) -> None:
        """Give back a probe slot that ended without a verdict (the model was not needed)."""
        probes = run.probes
        if probes is None or model not in probes:
            return
        breaker = self._breaker(model)
        with self._lock:
            del probes[model]
            breaker.probing = False
            if self.shared:
                breaker.pending = True
                breaker.pending_probe_done = True

    def release_all(self, run: RequestRun) -> None:
        """At the end of a request: probe slots it took but never used go back."""
        if run.probes:
            for model in list(run.probes):
                self.release(model, run)

    # -- the shared store's side (syncer thread) -----------------------------------------------

    def take_pending(self) -> list[tuple[Breaker, tuple[Any, ...]]]:
        """What happened since the last push, per model, reset here (under the lock)."""
        taken = []
        with self._lock:
            for breaker in self._breakers.values():
                if not breaker.pending:
                    continue
                taken.append(
                    (
                        breaker,
                        (
                            breaker.pending_ok,
                            breaker.pending_fail,
                            breaker.pending_trailing,
                            breaker.pending_had_ok,
                            breaker.pending_probe_ok,
                            breaker.pending_retry_after,
                            breaker.pending_probe_done,
                            breaker.pending_error,
                        ),
                    )
                )
                breaker.pending = False
                breaker.pending_ok = breaker.pending_fail = breaker.pending_trailing = 0
                breaker.pending_had_ok = breaker.pending_probe_ok = breaker.pending_probe_done = False
                breaker.pending_retry_after = -1.0
                breaker.pending_error = ""
        return taken

    def put_back(self, taken: list[tuple[Breaker, tuple[Any, ...]]]) -> None:
        """A push that did not land: its counts go out with the next one."""
        with self._lock:
            for breaker, (ok, fail, trailing, had_ok, probe_ok, retry_after, probe_done, error) in taken:
                breaker.pending = True
                breaker.pending_ok += ok
                breaker.pending_fail += fail
                if not breaker.pending_had_ok:
                    breaker.pending_trailing += trailing
                breaker.pending_had_ok = breaker.pending_had_ok or had_ok
                breaker.pending_probe_ok = breaker.pending_probe_ok or probe_ok
                breaker.pending_retry_after = max(breaker.pending_retry_after, retry_after)
                breaker.pending_probe_done = breaker.pending_probe_done or probe_done
                breaker.pending_error = breaker.pending_error or error

    def apply_shared(self, circuits: Sequence[SharedCircuit], now: float) -> None:
        """The fleet's view, read from the store at monotonic `now`: it replaces this process's
        view of each model, except where calls ended here since the push (next tick)."""
        with self._lock:
            for shared in circuits:
                breaker = self._breakers.get(shared.model)
                if breaker is None:
                    breaker = self._breakers[shared.model] = Breaker(shared.model)
                if breaker.pending:
                    continue
                was_open = breaker.opened
                breaker.opened = shared.opened
                breaker.open_until = now + shared.open_for_s
                breaker.consecutive = shared.consecutive
                breaker.reason = shared.reason
                breaker.shared_window = (shared.calls, shared.failures)
                breaker.opens = max(breaker.opens, shared.opens)
                if shared.last_error:
                    breaker.last_error = shared.last_error
                if shared.last_failure_ago_s is not None:
                    breaker.last_failure = now - shared.last_failure_ago_s
                if not breaker.opened and was_open:
                    breaker.clear_window()
            self.unhealthy = any(breaker.opened for breaker in self._breakers.values())

    # -- reading -----------------------------------------------------------------------------------

    def health(self) -> list[ModelHealth]:
        """Every model this process has seen called (or the fleet has, when shared), by name."""
        self._active = True
        now = time.monotonic()
        out = []
        for model in sorted(self._breakers):
            breaker = self._breakers[model]
            state = breaker.state(now)
            calls, failures = breaker.shared_window or breaker.window(now, self.policy)
            out.append(
                ModelHealth(
                    model=model,
                    state=state,
                    consecutive_failures=breaker.consecutive,
                    calls=calls,
                    failures=failures,
                    cooldown_remaining_s=max(breaker.open_until - now, 0.0) if state == "open" else 0.0,
                    opens=breaker.opens,
                    reason=breaker.reason,
                    last_error=breaker.last_error,
                    last_failure_ago_s=None
                    if breaker.last_failure == float("-inf")
                    else now - breaker.last_failure,
                )
            )
        return out

    def state_of(self, model: str) -> CircuitState:
        """The circuit of `model` now, as this process sees it (closed when never seen)."""
        self._active = True
        breaker = self._breakers.get(model)
        return "closed" if breaker is None else breaker.state(time.monotonic())

    def reset(self, model: str | None = None) -> None:
        """Forget this process's view of one model's circuit, or of all (tests, operators)."""
        with self._lock:
            if model is None:
                self._breakers.clear()
            else:
                self._breakers.pop(model, None)
        self._recompute()


def _skip_reason(breaker: Breaker, state: str, wait: float) -> str:
    if state == "half-open":
        return f"circuit open (half-open: a probe is in flight; {breaker.reason})"
    return f"circuit open for {wait:.1f} s more ({breaker.reason})"
