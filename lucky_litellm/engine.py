"""The request lease: one object per `complete` call that owns everything the call must give back.

A `Lease` holds the request's concurrency slot, its budget reservation, its deadline and its
spans, and settles them exactly once, whichever way the request ends: an answer, an error, the
caller's cancellation, the deadline, or (for streams, through `LuckyStream`) the stream's end, an
early close, or the stream being garbage-collected unclosed. Settling never raises into the caller:
the state store records a settlement locally without waiting (`state.spend.settle`) and brings it
to the shared ledger itself; any failure there is logged, and the answer is returned.

    async with Lease(models, plan, messages, ...) as lease:
        return await lease.execute()      # a response, or a LuckyStream that now owns the settling

The deadline clock starts only after litellm (and its tokenizer) finished loading (`warm_up`,
started in a background thread by `Models()`), so a cold process never spends a request's deadline
importing litellm on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .calls import PeekedStream, RequestRun
from .errors import (
    AllModelsFailedError,
    BudgetExceededError,
    BudgetUnavailableError,
    LuckyError,
    NoModelsAvailableError,
    StrategyTimeoutError,
    StreamingNotSupportedError,
    UnpricedModelError,
)
from .pricing import Estimate, estimate, estimate_cost, estimate_prompt_tokens, fit_budget, warn_unpriced
from .retry import RetryPolicy
from .routing import Routing, attach_routing
from .strategies import run_strategy
from .sync import register_exit_hook

if TYPE_CHECKING:
    from .config import UserConfig
    from .health import Circuits
    from .plan import Plan
    from .providers import Target
    from .registry import Models

__all__ = ["Lease", "is_warm", "start_warm_up", "until", "warm_up"]

logger = logging.getLogger("lucky_litellm.engine")

T = TypeVar("T")

_RESERVE_TRIES = 3
"""A reservation refused for lack of budget is re-sized (capped at what is left) and retried at
most this many times: it can lose to a concurrent reservation each time."""


# -- cold start ------------------------------------------------------------------------------------

_warm: concurrent.futures.Future[None] | None = None
_warm_lock = threading.Lock()


def _load() -> None:
    """Import litellm and load the tokenizer the estimates use (both take seconds, once)."""
    import litellm  # noqa: F401

    from .pricing import completion_tokens_of_text, count_prompt_tokens

    count_prompt_tokens([{"role": "user", "content": "warm up"}])
    completion_tokens_of_text("warm up")


def start_warm_up() -> concurrent.futures.Future[None]:
    """Start loading litellm in a background thread (once per process); returns its future."""
    global _warm
    with _warm_lock:
        if _warm is None:
            future: concurrent.futures.Future[None] = concurrent.futures.Future()

            def run() -> None:
                try:
                    _load()
                except BaseException as exc:  # requests then load what they need themselves
                    # a CLI that exits while litellm imports makes the import fail ("can't
                    # register atexit after shutdown"): nobody is left to need the warning
                    exiting = _exiting or not threading.main_thread().is_alive()
                    log = logger.debug if exiting else logger.warning
                    log("warming up litellm failed: %s", type(exc).__name__)
                future.set_result(None)

            # a daemon joined at exit within WARM_UP_EXIT_TIMEOUT_S: a process that exits while
            # litellm is still importing must wait for the import (frozen mid-import, the thread
            # would hold the import lock, and litellm's client finalizers, which import, would
            # deadlock the interpreter's shutdown), but not forever (a non-daemon thread is
            # joined without a timeout)
            thread = threading.Thread(target=run, name="lucky-litellm-warm-up", daemon=True)
            thread.start()
            register_exit_hook(functools.partial(_join_at_exit, thread))
            _warm = future
        return _warm


WARM_UP_EXIT_TIMEOUT_S = 120.0
"""How long exiting waits for litellm to finish importing (seconds normally, a minute on a machine
under heavy load); past it the process exits regardless."""


_exiting = False


def _join_at_exit(thread: threading.Thread) -> None:
    global _exiting
    _exiting = True
    thread.join(WARM_UP_EXIT_TIMEOUT_S)


_warm_done: concurrent.futures.Future[None] | None = None
"""`_warm` once seen done: `Future.done()` takes a lock, and `is_warm` runs twice per request."""


def is_warm() -> bool:
    """Whether litellm is loaded (a cheap check for the hot path, before `await warm_up()`)."""
    global _warm_done
    warm = _warm
    if warm is None:
        return False
    if warm is _warm_done:
        return True
    if warm.done():
        _warm_done = warm
        return True
    return False


async def warm_up() -> None:
    """Wait (without blocking the event loop) until litellm and the tokenizer are loaded."""
    future = _warm if _warm is not None else start_warm_up()
    if not future.done():
        await asyncio.wrap_future(future)


_HAS_TIMEOUT = hasattr(asyncio, "timeout")


async def until(coro: Coroutine[Any, Any, T], deadline: float) -> T:
    """Await `coro` until `deadline` (monotonic); raises `TimeoutError` when it passes."""
    remaining = deadline - time.monotonic()
    if _HAS_TIMEOUT:
        async with asyncio.timeout(remaining):
            return await coro
    return await asyncio.wait_for(coro, remaining)  # pragma: no cover - Python 3.10


@functools.lru_cache(maxsize=64)
def _retry_policy(retries: int) -> RetryPolicy:
    """One `RetryPolicy` per retry count, shared by the requests of every plan: it keeps no
    per-request state, and one object fewer per request is less for the garbage collector."""
    return RetryPolicy(retries)


# -- the lease -------------------------------------------------------------------------------------


class Lease:
    """One request's lifetime: slot, budget reservation, deadline, spans; settled exactly once."""

    def __init__(
        self,
        models: Models,
        plan: Plan,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        stream: bool = False,
        rollout_path: str = "registry",
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if stream and plan.strategy == "consensus":
            raise StreamingNotSupportedError(
                f"{plan.spec!r} uses consensus, which needs whole answers: call it without stream=True"
            )
        self.models = models
        self.plan = plan
        self.messages = messages
        self.stream = stream
        owner = user_id or plan.user_id
        self.owner = owner
        user_config: UserConfig | None = models._users.get(owner) if owner else None
        self.user_config = user_config
        self.max_concurrent = (user_config.defaults.max_concurrent if user_config else None) or (
            models.config.defaults.max_concurrent
        )
        self.cost_limit = user_config.defaults.cost_limit if user_config else None
        # trackCost: false turns pricing off, except where a budget needs it
        self.track_cost = models.config.track_cost or self.cost_limit is not None

        call_kwargs: dict[str, Any] = {**plan.params, **(kwargs or {})}
        call_kwargs.setdefault("num_retries", 0)
        call_kwargs.setdefault("max_retries", 0)
        options = call_kwargs.get("stream_options")
        self.include_usage = bool(isinstance(options, Mapping) and options.get("include_usage"))
        """Whether the caller asked for the usage chunk (the engine always asks, for billing)."""
        if stream:
            call_kwargs["stream"] = True
            call_kwargs["stream_options"] = {**(options or {}), "include_usage": True}
        self.kwargs = call_kwargs

        self.routing = Routing(
            spec=plan.spec,
            strategy=plan.strategy,
            models=plan.models,
            experiment=plan.experiment,
            user_id=owner,
            request_id=request_id,
            rollout_path=rollout_path,
        )
        self.deadline = float("inf")
        self.targets: Sequence[Target] = plan.targets  # replaced (never changed) when maxCost drops some
        self.run: RequestRun | None = None
        self.trace: Any = None
        self._slot_key: str | None = None
        self._reserved = 0.0
        self._settled = False
        self._handed_off = False

    # -- entering: warm-up, deadline, slot, budget -----------------------------------------------

    async def __aenter__(self) -> Lease:
        if not is_warm():
            await warm_up()  # before the deadline clock starts
        plan = self.plan
        self.deadline = time.monotonic() + plan.timeout_s
        self.trace = self.models.telemetry.start_request(self.routing, self.messages, self.kwargs)
        run = self.run = RequestRun(
            plan=plan,
            messages=self.messages,
            kwargs=self.kwargs,
            deadline=self.deadline,
            routing=self.routing,
            trace=self.trace,
            retry=_retry_policy(plan.retries),
            stream=self.stream,
            circuits=self.models.circuits,
        )
        for model, reason in plan.skipped:
            run.skip(model, reason)
        try:
            owner, limit = self.owner, self.max_concurrent
            if owner and limit:
                await self.models.limiter.acquire(owner, limit, self.deadline - time.monotonic())
                self._slot_key = owner
            await self._budget()
        except BaseException as exc:
            self.settle(exc)
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None and self._handed_off:
            return  # the stream settles when it ends
        self.settle(exc)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def _budget(self) -> None:
        """Drop models over `maxCost`, then reserve the worst case of the rest against `costLimit`."""
        plan, run = self.plan, self.run
        assert run is not None
        budgeted = self.owner is not None and self.cost_limit is not None
        unpriced = plan.unpriced  # decided once per plan
        if unpriced:
            if budgeted:  # litellm would price it at $0: the reservation could not bound it
                assert self.cost_limit is not None
                raise UnpricedModelError(self.owner, unpriced, self.cost_limit)
            if self.track_cost:
                warn_unpriced(unpriced)
        if not budgeted and plan.max_cost is None:
            return
        prompt_tokens = estimate_prompt_tokens(self.messages)
        max_tokens = self.kwargs.get("max_tokens") or self.kwargs.get("max_completion_tokens")
        if plan.max_cost is not None:
            kept: list[Target] = []
            for target in self.targets:
                cost = estimate_cost(target, prompt_tokens, max_tokens)
                if cost is not None and cost > plan.max_cost:
                    run.skip(target.spec, f"estimated cost ${cost:.6f} exceeds maxCost ${plan.max_cost:.6f}")
                else:
                    kept.append(target)
            if not kept:
                reasons = [f"{a.model}: {a.error}" for a in run.routing.attempts]
                raise NoModelsAvailableError(plan.spec, reasons)
            self.targets = kept
        if budgeted:
            estimates = [estimate(target, prompt_tokens, max_tokens) for target in self.targets]
            await self._reserve(estimates, capped=bool(max_tokens))

    # -- the state store: every call the lease makes to it is in this section --------------------

    async def _reserve(self, estimates: Sequence[Estimate], *, capped: bool) -> None:
        """Reserve the most this request can cost. Without `max_tokens` that is the models' maximum
        output, or, when the budget cannot pay for that, `max_tokens` is capped at what the rest of
        the budget can buy: the reservation is a true bound, so concurrent requests cannot
        overspend together. The common case (the worst case fits) is one store call."""
        owner, limit = self.owner, self.cost_limit
        assert owner is not None and limit is not None
        together = self.plan.strategy in ("race", "consensus")  # may bill every model
        worst = fit_budget(estimates, together=together, remaining=float("inf"), capped=True)
        amount, cap = worst if worst is not None else (0.0, None)
        for attempt in range(_RESERVE_TRIES + 1):
            try:
                await self._store_reserve(owner, amount, limit)
            except BudgetExceededError as exc:
                if capped or attempt == _RESERVE_TRIES:
                    raise
                spent = exc.spent_usd  # the total the store just checked against
                fitted = fit_budget(estimates, together=together, remaining=limit - spent, capped=False)
                if fitted is None:
                    raise
                amount, cap = fitted
                continue
            self._reserved = amount
            if cap is not None:
                self.kwargs["max_tokens"] = cap
            return

    async def _store_reserve(self, owner: str, amount: float, limit: float) -> None:
        """The one store call a request waits for; a store failure refuses it with a typed error."""
        try:
            await self.models.state.spend.reserve(owner, amount, limit)
        except LuckyError:
            raise
        except Exception as exc:
            raise BudgetUnavailableError(
                owner, f"the spend store failed ({type(exc).__name__}) while reserving"
            ) from None

    def _settle_spend(self) -> None:
        """Replace the reservation by the actual cost. Never raises and never waits: the store
        records the difference locally and brings it to the shared ledger itself."""
        owner, routing = self.owner, self.routing
        if owner is None or self.cost_limit is None:
            return  # spend of users without a budget is in stats(): the ledger stays bounded
        try:
            spent = self.models.state.spend.settle(owner, self._reserved, routing.cost_usd)
        except Exception as exc:
            logger.warning("could not settle the spend of %r (%s)", owner, type(exc).__name__)
            return
        try:
            self.models.alerts.observe(owner, spent, self.cost_limit, self.trace.span)
        except Exception:  # an alert callback must not take the answer away
            logger.exception("cost alert callback failed")

    # -- running ---------------------------------------------------------------------------------

    async def execute(self) -> Any:
        """Run the strategy within the deadline; a stream takes over the settling."""
        run = self.run
        assert run is not None
        try:
            circuits = run.circuits
            if circuits is not None and circuits.unhealthy and self.plan.circuit:
                strategy = self._run_admitted(run, circuits)  # some circuit is not closed
            else:
                strategy = run_strategy(run, self.targets)
            if _HAS_TIMEOUT:  # `until` inlined: one coroutine fewer alive for the whole request
                async with asyncio.timeout(self.deadline - time.monotonic()):
                    result = await strategy
            else:  # pragma: no cover - Python 3.10
                result = await until(strategy, self.deadline)
        except (TimeoutError, asyncio.TimeoutError):
            raise StrategyTimeoutError(self.plan.spec, self.plan.timeout_s, self.routing.attempts) from None
        except AllModelsFailedError:
            if self.remaining() <= 0:  # the time ran out, e.g. before any call could start
                raise StrategyTimeoutError(
                    self.plan.spec, self.plan.timeout_s, self.routing.attempts
                ) from None
            raise
        if isinstance(result, PeekedStream):
            from .stream import LuckyStream

            winner = next(a for a in self.routing.attempts if a.outcome == "won")
            target = next(t for t in self.targets if t.spec == winner.model)
            stream = LuckyStream(
                self,
                result,
                winner,
                target,
                include_usage=self.include_usage,
                check_finish="mock_response" not in self.kwargs,
            )
            self._handed_off = True
            return attach_routing(stream, self.routing)
        return attach_routing(result, self.routing)

    async def _run_admitted(self, run: RequestRun, circuits: Circuits) -> Any:
        """The strategy over the plan's models minus those whose circuit is open (or half-open
        with its probe taken). Only runs while some circuit is not closed."""
        targets = await circuits.admit(run, self.targets, self.plan.when_all_open or circuits.when_all_open)
        return await run_strategy(run, targets)

    # -- settling --------------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        return self._settled

    def settle(self, error: BaseException | None = None) -> None:
        """Bill what was spent, free the slot, close the spans: exactly once, never raising."""
        if self._settled:
            return
        self._settled = True
        routing = self.routing
        run = self.run
        if run is not None and run.probes and run.circuits is not None:
            run.circuits.release_all(run)
        try:
            if not self.track_cost:
                for attempt in routing.attempts:
                    attempt.cost_usd = 0.0
            routing.cost_usd = sum(attempt.cost_usd for attempt in routing.attempts)
            self._settle_spend()
        finally:
            if self._slot_key is not None:
                self.models.limiter.release(self._slot_key)
                self._slot_key = None
            try:
                if self.trace is not None:
                    self.trace.finish(routing, error)
                if self.user_config is None or self.user_config.performance_tracking:
                    self.models._stats.record(routing, self.owner, self.cost_limit)
            except Exception:
                logger.exception("recording the end of a request failed")
