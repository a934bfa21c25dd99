"""One model attempt: a `litellm.acompletion` call with retries, cost, and its telemetry span.

Every strategy runs its models through `RequestRun.attempt`, so retries, deadlines, cost
accounting and tracing behave the same whichever strategy is chosen. A strategy only decides
which attempts to start and which result wins.

Each call has a time budget inside the request's deadline (`attemptTimeout`, or a share derived
from the deadline and the strategy, see `Plan.call_budget_s`), enforced by an asyncio timeout around
the call: a hung model then fails like any transient error (retried, or the next model tried)
instead of taking the whole deadline with it. The budget is never passed to litellm as a
per-call `timeout`: litellm keys its cached HTTP clients on that value.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sys
import time
import warnings
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AttemptTimeoutError, EmptyAnswerError, IncompleteStreamError, redact, scrub_exception
from .pricing import cost_from_tokens, response_cost
from .retry import RetryPolicy
from .routing import Attempt, Routing

if TYPE_CHECKING:
    from .health import Circuits
    from .plan import Plan
    from .providers import Target
    from .telemetry import AttemptTrace, RequestTrace

__all__ = [
    "PeekedStream",
    "RequestRun",
    "cost_from_tokens",
    "record_failure",
    "record_response",
    "response_cost",
    "secrets_of",
    "usage_of",
]

_ERROR_TEXT_LIMIT = 300
_LITELLM_TIMEOUT_MARGIN_S = 1.0
"""litellm's own timeout sits a little past the plan's deadline, so that the deadline, not a
litellm.Timeout, decides when a request has run out of time."""

_ORPHANED_DISPATCH = (
    "ignore",
    re.compile(
        r"coroutine '(OpenAIChatCompletion|OpenAILikeChatHandler|AzureChatCompletion"
        r"|AnthropicChatCompletion|BaseLLMHTTPHandler)\.a\w+' was never awaited",
        re.I,
    ),
    RuntimeWarning,
    None,
    0,
)
"""A `warnings` filter for the one message litellm leaves behind when an attempt is cancelled in
the middle of `litellm.acompletion` (litellm/main.py, `acompletion`): it runs the sync
`completion(acompletion=True)` in the loop's executor (`await loop.run_in_executor(...)`), which
hands back the provider handler's coroutine, then awaits it. A cancellation landing while the
worker thread is still in `completion()` (a race's loser, a hedge, a consensus stopping early, a
per-call budget or the request's deadline) cancels only the asyncio side: the thread's result,
that coroutine, is dropped unawaited and Python prints `RuntimeWarning: coroutine
'OpenAIChatCompletion.acompletion' was never awaited` on the user's stderr. Nothing leaks (the
coroutine never started: no request was sent), and nothing outside litellm can reach it to close
it, nor tell from outside when that window is over. So the message is filtered: only litellm's
own chat handlers' coroutines, only this warning, and only once lucky has cancelled a call; the
user's own warnings (and any other RuntimeWarning) still show."""


def quiet_orphaned_dispatch() -> None:
    """Make sure `_ORPHANED_DISPATCH` is the first filter (ahead of a `-W error`/`always` the user
    or a test runner installed later); a no-op when it already is."""
    if not warnings.filters or warnings.filters[0] != _ORPHANED_DISPATCH:
        pattern, category = _ORPHANED_DISPATCH[1], _ORPHANED_DISPATCH[2]
        warnings.filterwarnings("ignore", pattern.pattern, category)


@dataclass
class PeekedStream:
    """A litellm stream whose first meaningful chunk has arrived, so it is known to be alive.

    `head` holds the chunks read so far (a role-only opening chunk, then the first one with
    content, a tool call or a finish_reason); they are passed on before the rest of the stream.
    """

    stream: Any
    head: list[Any]
    secrets: tuple[str, ...] = ()
    """Credentials the call was made with: removed from any error the stream raises later."""
    target: Target | None = None
    """The model streaming, so a stream nobody reads to the end (a race's loser) can be billed."""
    trace: AttemptTrace | None = None
    """The attempt's span, told about every chunk (time to first chunk, streamed response)."""

    async def aclose(self) -> None:
        close = getattr(self.stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing a broken stream must not mask the outcome
                await close()


@dataclass
class RequestRun:
    """State shared by the attempts of one `complete` call."""

    plan: Plan
    messages: Sequence[Mapping[str, Any]]
    kwargs: dict[str, Any]
    deadline: float
    routing: Routing
    trace: RequestTrace
    retry: RetryPolicy
    stream: bool = False
    circuits: Circuits | None = None
    """The registry's circuit breakers: told every attempt's outcome (None: circuits are off)."""
    probes: dict[str, str] | None = None
    """Models this request calls although their circuit is not closed (model -> circuit state:
    half-open for a probe, open when every model was open); made only when there is one."""
    started: float = field(default_factory=time.perf_counter)
    call_budget_s: float | None = field(init=False)
    """Longest one call may take (None: only the deadline bounds it); see `Plan.call_budget_s`."""

    def __post_init__(self) -> None:
        self.call_budget_s = self.plan.call_budget_s

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def share_of_deadline(self, models_left: int) -> float:
        """End (monotonic) of the next model's turn when `models_left` models may still need
        the time that is left: an equal share each, at least one call budget, never past the
        deadline. The last model gets everything that remains."""
        now = time.monotonic()
        share = (self.deadline - now) / max(models_left, 1)
        return min(now + max(share, self.call_budget_s or 0.0), self.deadline)

    def new_attempt(self, target: Target) -> Attempt:
        attempt = Attempt(model=target.spec)
        self.routing.attempts.append(attempt)
        return attempt

    def skip(self, model: str, reason: str, *, circuit_state: str | None = None) -> Attempt:
        attempt = Attempt(model=model, outcome="skipped", error=reason)
        self.routing.attempts.append(attempt)
        self.trace.skipped(attempt, circuit_state=circuit_state)
        return attempt

    async def attempt(self, target: Target, attempt: Attempt, *, until: float | None = None) -> Any:
        """Run `target` (with retries) and return its response, or a `PeekedStream` when streaming.

        `until` (monotonic) ends this model's turn before the request's deadline: its calls and
        retries stop there, so a fallback keeps time for the models after it. Leaves
        `attempt.outcome` as "pending" on success: the strategy decides won/lost.
        """
        span = self.trace.start_attempt(target, attempt)
        if self.probes is not None and target.spec in self.probes:
            span.circuit_state(self.probes[target.spec])
        started = time.perf_counter()
        attempt.started_ms = (started - self.started) * 1000
        end = self.deadline if until is None else min(until, self.deadline)
        try:
            with span.use():  # instrumentation below (httpx, litellm) nests under the attempt
                if self.retry.retries:
                    result = await self.retry.run(
                        functools.partial(self._call_bounded, target, attempt, span, end), end
                    )
                else:  # no retry wrapper: every object a call holds while litellm runs is GC work
                    result = await self._call_bounded(target, attempt, span, end)
        except asyncio.CancelledError:
            attempt.outcome = "cancelled"
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            span.call_done(attempt)
            if self.circuits is not None:
                self.circuits.cancelled(target.spec, self)
            raise
        except Exception as exc:
            record_failure(attempt, exc, secrets_of(target, self.kwargs))
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            span.call_done(attempt, error=exc)
            if self.circuits is not None:
                self.circuits.failed(target.spec, exc, self)
            raise
        attempt.latency_ms = (time.perf_counter() - started) * 1000
        if self.circuits is not None:
            self.circuits.succeeded(target.spec, self)
        if not self.stream:
            span.call_done(attempt, response=result)
        return result

    def _call_bounded(
        self, target: Target, attempt: Attempt, span: AttemptTrace, end: float
    ) -> Coroutine[Any, Any, Any]:
        """One call, cancelled at its budget's end. When only the request's deadline bounds it,
        no timer of its own is set: the deadline's expiry is the request's timeout, not a
        failure of this model. A plain function handing back the call's coroutine: one coroutine
        fewer alive per call while litellm runs (at concurrency, those are what the garbage
        collector keeps rescanning)."""
        now = time.monotonic()
        limit = end if self.call_budget_s is None else min(end, now + self.call_budget_s)
        if limit >= self.deadline:
            return self._call_once(target, attempt, span)
        budget = limit - now
        if budget <= 0:
            return _raise(AttemptTimeoutError(target.spec, 0.0))
        return _within(self._call_once(target, attempt, span), budget, target.spec)

    async def _call_once(self, target: Target, attempt: Attempt, span: AttemptTrace) -> Any:
        import litellm

        attempt.tries += 1
        kwargs = target.call_kwargs()
        kwargs.update(self.kwargs)
        if self.remaining() <= 0:
            raise asyncio.TimeoutError("deadline reached before the call started")
        # A per-call "time left" would be a different value on every call, and litellm keys its
        # cached HTTP clients on the timeout: each call would build a client and a new TCP
        # connection (measured: +4 ms per call). The plan's deadline is enforced around the
        # strategy anyway, so litellm gets the same timeout for every call of a plan.
        kwargs.setdefault("timeout", self.plan.timeout_s + _LITELLM_TIMEOUT_MARGIN_S)
        span.prepare(kwargs)
        try:
            response = await litellm.acompletion(
                model=target.litellm_model, messages=list(self.messages), **kwargs
            )
        except asyncio.CancelledError:  # maybe inside litellm's executor window: see the filter
            quiet_orphaned_dispatch()
            raise
        if not self.stream:
            record_response(attempt, response, target)  # billed even when it is no answer
            if not _has_answer(response):
                raise EmptyAnswerError(target.spec)
            return response
        peeked = PeekedStream(response, [], secrets_of(target, self.kwargs), target, span)
        try:
            while True:
                chunk = await response.__anext__()
                span.chunk(chunk)
                peeked.head.append(chunk)
                if _has_content(chunk):
                    return peeked
                if _has_finish_reason(chunk):
                    if self.kwargs.get("mock_response") is None and not finished_properly(response):
                        raise StopAsyncIteration  # litellm's stand-in "stop" for a cut stream
                    return peeked
        except StopAsyncIteration:
            await peeked.aclose()
            raise IncompleteStreamError(target.spec, len(peeked.head)) from None
        except BaseException as exc:
            await peeked.aclose()
            if isinstance(exc, asyncio.CancelledError):  # a race's loser: its prompt was processed
                from .stream import bill_partial_stream

                bill_partial_stream(attempt, target, self.messages, peeked.head)
            raise


async def _raise(error: BaseException) -> Any:
    """A coroutine that raises `error` when awaited (where the call would have failed)."""
    raise error


async def _within(call: Coroutine[Any, Any, Any], budget_s: float, model: str) -> Any:
    """Await `call` for at most `budget_s`; past it the call is cancelled (closing its
    connection) and `AttemptTimeoutError` raised."""
    if sys.version_info >= (3, 11):
        timer = asyncio.timeout(budget_s)
        try:
            async with timer:
                return await call
        except TimeoutError:
            if timer.expired():
                raise AttemptTimeoutError(model, budget_s) from None
            raise
    try:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(call, budget_s)
    except asyncio.TimeoutError:  # pragma: no cover - Python 3.10
        raise AttemptTimeoutError(model, budget_s) from None


def secrets_of(target: Target, kwargs: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The credential values a call to `target` carries (the provider's key, or one the caller
    passed), to be removed verbatim from errors."""
    keys = (target.kwargs.get("api_key"), (kwargs or {}).get("api_key"))
    return tuple(key for key in keys if isinstance(key, str) and key)


def record_failure(attempt: Attempt, exc: BaseException, secrets: Sequence[str] = ()) -> None:
    """Mark `attempt` failed with `exc`, first removing credentials from the exception itself
    (message, args, chained causes), so neither it, its traceback nor the routing shows a key."""
    scrub_exception(exc, secrets)
    attempt.outcome = "failed"
    attempt.exception = exc
    attempt.error_type = type(exc).__qualname__
    attempt.error = redact(str(exc))[:_ERROR_TEXT_LIMIT]


def _has_answer(response: Any) -> bool:
    """A response with at least one choice carrying a message: anything else is a failure."""
    choices = getattr(response, "choices", None)
    if not choices:
        return False
    return getattr(choices[0], "message", None) is not None


def _has_content(chunk: Any) -> bool:
    """True once a chunk carries part of the answer (not just the assistant role)."""
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        if delta is not None and (getattr(delta, "content", None) or getattr(delta, "tool_calls", None)):
            return True
    return False


def _has_finish_reason(chunk: Any) -> bool:
    return any(getattr(choice, "finish_reason", None) for choice in getattr(chunk, "choices", None) or ())


def finished_properly(stream: Any) -> bool:
    """Whether the upstream itself sent a finish_reason. litellm's stream wrapper invents a
    "stop" chunk when a stream just ends, which would make a cut answer look complete."""
    received = getattr(stream, "received_finish_reason", None)
    intermittent = getattr(stream, "intermittent_finish_reason", None)
    return received is not None or intermittent is not None


def usage_of(response: Any) -> tuple[int | None, int | None]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None, None
    return getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)


def record_response(attempt: Attempt, response: Any, target: Target | str) -> None:
    """Copy tokens, model, answer text and cost of a finished response onto its attempt."""
    attempt.input_tokens, attempt.output_tokens = usage_of(response)
    attempt.response_model = getattr(response, "model", None)
    try:
        attempt.content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        attempt.content = None
    attempt.cost_usd = response_cost(response, target)
