"""The four ways of running several models: first, fallback, race (optionally hedged), consensus.

Each strategy only decides which attempts to start and which result wins; the attempt itself
(retries, cost, spans) is `RequestRun.attempt`. Every task a strategy starts is cancelled and
awaited before the strategy returns or raises, so no call outlives its request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .calls import PeekedStream, RequestRun
from .consensus import Tally, answer_of, normalise_answer
from .errors import AllModelsFailedError, ConsensusError
from .routing import Attempt

if TYPE_CHECKING:
    from .providers import Target

__all__ = ["STRATEGIES", "normalise_answer", "run_strategy"]

StrategyFn = Callable[[RequestRun, Sequence["Target"]], Awaitable[Any]]


def _fail(run: RequestRun) -> AllModelsFailedError:
    exceptions = [a.exception for a in run.routing.attempts if a.exception is not None]
    return AllModelsFailedError(run.plan.spec, run.routing.attempts, exceptions)


def _won(run: RequestRun, attempt: Attempt, result: Any) -> Any:
    attempt.outcome = "won"
    run.routing.winner = attempt.model
    return result


async def first(run: RequestRun, targets: Sequence[Target]) -> Any:
    """Only the first model, with its retries."""
    attempt = run.new_attempt(targets[0])
    try:
        result = await run.attempt(targets[0], attempt)
    except Exception as exc:
        raise _fail(run) from exc
    return _won(run, attempt, result)


async def fallback(run: RequestRun, targets: Sequence[Target]) -> Any:
    """Models in order until one succeeds; each failure is recorded.

    Each model's turn (its calls and retries) ends at its share of the time left, so a hung
    model cannot starve the ones after it; the last model gets whatever remains. Any failure
    moves on, 4xx included: a bad key or an unknown model at one provider says nothing about
    the next one (retries, in contrast, are only for transient errors)."""
    for position, target in enumerate(targets):
        attempt = run.new_attempt(target)
        try:
            result = await run.attempt(target, attempt, until=run.share_of_deadline(len(targets) - position))
        except Exception:
            continue
        return _won(run, attempt, result)
    raise _fail(run)


async def race(run: RequestRun, targets: Sequence[Target]) -> Any:
    """All models at once, or one by one with `hedgeAfter`; the first success wins.

    With `hedgeAfter`, the next model starts when the one in flight has not answered within the
    delay (a hedge), or at once when it failed (a failover, not a hedge). The delay is fixed, or
    with `hedgeAfter: auto` the observed latency quantile of the model in flight (`Plan.hedging`),
    whose budget may refuse a hedge: the request then asks again after each further delay (the
    bucket refills as requests arrive, so a request stuck on a slow call gets its hedge once a
    burst of late requests has passed), and counts as refused only if it never got one.
    Only the winner's latency goes into its model's window: a cancelled loser's time says only
    that it had not answered yet."""
    policy = run.plan.hedging
    fixed = run.plan.hedge_after_s
    budget = None if policy is None else policy.budget
    tasks: dict[asyncio.Task[Any], Attempt] = {}
    queue = list(targets)

    def launch() -> float | None:
        """Start the next model; how long to give it before hedging (None: nothing left to start)."""
        target = queue.pop(0)
        attempt = run.new_attempt(target)
        tasks[asyncio.create_task(run.attempt(target, attempt), name=f"lucky:{target.spec}")] = attempt
        if not queue:
            return None
        return fixed if policy is None else policy.delay_s(target.spec)

    delay: float | None = None
    refused = False  # the budget refused the hedge now due; asked again after each delay
    if fixed is None and policy is None:
        while queue:
            launch()
    else:
        if budget is not None:
            budget.admit()
        delay = launch()
        if delay is not None:
            run.routing.hedge_delay_ms = delay * 1000
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the hedge delay passed with no answer: start the next model
                if budget is not None and not budget.try_spend():
                    refused = True
                    continue
                refused = False
                run.routing.hedges += 1
                delay = launch()
                pending = {task for task in tasks if not task.done()}
                continue
            for task in _in_launch_order(done, tasks):
                if task.exception() is None:
                    attempt = tasks[task]
                    if policy is not None:
                        policy.observe(attempt.model, attempt.latency_ms)
                    return _won(run, attempt, task.result())
            if queue:  # a failure does not wait for the hedge delay
                refused = False
                delay = launch()
                pending = {task for task in tasks if not task.done()}
        raise _fail(run)
    finally:
        if refused:
            run.routing.hedges_refused += 1
        await _cancel_all(tasks, run)


def _in_launch_order(done: set[asyncio.Task[Any]], tasks: dict[asyncio.Task[Any], Attempt]) -> list[Any]:
    return [task for task in tasks if task in done]


async def _cancel_all(tasks: dict[asyncio.Task[Any], Attempt], run: RequestRun | None = None) -> None:
    """Cancel the losers and wait for them, closing streams they had opened; completed losers
    keep their cost (they are billed, streams for the prompt and what they had sent) and are
    marked lost."""
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    if running:  # the finished ones need no waiting (a race's loser often has finished too)
        await asyncio.gather(*running, return_exceptions=True)
    for task, attempt in tasks.items():
        if task.cancelled() or task.exception() is not None or attempt.outcome == "won":
            continue
        result = task.result()
        if attempt.outcome == "pending":
            attempt.outcome = "lost"
        if isinstance(result, PeekedStream):
            await result.aclose()
            if run is not None and result.target is not None:
                from .stream import bill_partial_stream

                bill_partial_stream(attempt, result.target, run.messages, result.head)


async def consensus(run: RequestRun, targets: Sequence[Target]) -> Any:
    """All models at once; the largest group of equal answers wins if it reaches the quorum.

    Decides as soon as the outcome is certain (a group reached the quorum and no pending answer
    could overtake it, or no group can reach it any more), then cancels the calls still running;
    answers that arrived meanwhile are billed and marked lost. The vote counting is `Tally`."""
    attempts = [run.new_attempt(target) for target in targets]
    tasks = {
        asyncio.create_task(run.attempt(t, a), name=f"lucky:{t.spec}"): a
        for t, a in zip(targets, attempts, strict=True)
    }
    index = {task: i for i, task in enumerate(tasks)}
    tally = Tally(len(targets), run.plan.min_agreement)
    pending = set(tasks)
    try:
        while pending and not tally.decided():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in _in_launch_order(done, tasks):
                if task.exception() is None:
                    tally.vote(index[task], task.result())
                else:
                    tally.abstain(index[task])
    finally:
        await _cancel_all(tasks)
    run.routing.votes = tally.votes
    run.routing.agreement = tally.agreement
    run.routing.answers = {
        a.model: _shown(task) for task, a in tasks.items() if a.outcome in ("lost", "won", "pending")
    }
    group = tally.winner()
    if group is None:
        if not run.routing.answers:
            raise _fail(run)
        raise ConsensusError(
            run.plan.spec,
            tally.votes,
            tally.agreement,
            run.plan.min_agreement,
            attempts,
            asked=tally.asked,
            needed=tally.needed,
        )
    for ballot in group[1:]:
        attempts[ballot.index].outcome = "won"
    return _won(run, attempts[group[0].index], group[0].response)


def _shown(task: asyncio.Task[Any]) -> str:
    """How an answer that arrived is shown in `Routing.answers`: its text, or its tool calls."""
    response = task.result()
    answer = answer_of(response)
    if answer is not None and answer[0].startswith("tool:"):
        return answer[1]
    try:
        return response.choices[0].message.content or ""
    except (AttributeError, IndexError, TypeError):
        return ""


STRATEGIES: dict[str, StrategyFn] = {
    "first": first,
    "fallback": fallback,
    "race": race,
    "consensus": consensus,
}


async def run_strategy(run: RequestRun, targets: Sequence[Target]) -> Any:
    started = time.perf_counter()
    try:
        with run.trace.use():  # `lucky.complete` is the current span while the strategy runs
            return await STRATEGIES[run.plan.strategy](run, targets)
    finally:
        run.routing.latency_ms = (time.perf_counter() - started) * 1000
