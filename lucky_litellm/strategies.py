"""The four ways of running several models: first, fallback, race (optionally hedged), consensus.

Each strategy only decides which attempts to start and which result wins; the attempt itself
(retries, cost, spans) is `RequestRun.attempt`. Every task a strategy starts is cancelled and
awaited before the strategy returns or raises, so no call outlives its request.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .calls import PeekedStream, RequestRun
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

    Any failure moves on, 4xx included: a bad key or an unknown model at one provider says
    nothing about the next one (retries, in contrast, are only for transient errors)."""
    for target in targets:
        attempt = run.new_attempt(target)
        try:
            result = await run.attempt(target, attempt)
        except Exception:
            continue
        return _won(run, attempt, result)
    raise _fail(run)


async def race(run: RequestRun, targets: Sequence[Target]) -> Any:
    """All models at once (or one by one after `hedge_after`); the first success wins."""
    hedge = run.plan.hedge_after_s
    tasks: dict[asyncio.Task[Any], Attempt] = {}
    queue = list(targets)

    def launch() -> None:
        target = queue.pop(0)
        attempt = run.new_attempt(target)
        tasks[asyncio.create_task(run.attempt(target, attempt), name=f"lucky:{target.spec}")] = attempt

    if hedge is None:
        while queue:
            launch()
    else:
        launch()
    pending = set(tasks)
    try:
        while pending:
            timeout = hedge if (hedge is not None and queue) else None
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # hedge delay passed with no answer: start the next model
                launch()
                pending = {task for task in tasks if not task.done()}
                continue
            for task in _in_launch_order(done, tasks):
                if task.exception() is None:
                    return _won(run, tasks[task], task.result())
            if queue:  # a failure does not wait for the hedge delay
                launch()
                pending = {task for task in tasks if not task.done()}
        raise _fail(run)
    finally:
        await _cancel_all(tasks)


def _in_launch_order(done: set[asyncio.Task[Any]], tasks: dict[asyncio.Task[Any], Attempt]) -> list[Any]:
    return [task for task in tasks if task in done]


async def _cancel_all(tasks: dict[asyncio.Task[Any], Attempt]) -> None:
    """Cancel the losers and wait for them, closing streams they had opened; completed losers
    keep their cost (they are billed) and are marked lost."""
    for task in tasks:
        if not task.done():
            task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    for task, attempt in tasks.items():
        if task.cancelled() or task.exception() is not None or attempt.outcome == "won":
            continue
        result = task.result()
        if attempt.outcome == "pending":
            attempt.outcome = "lost"
        if isinstance(result, PeekedStream):
            await result.aclose()


_PUNCTUATION = re.compile(r"[\s\.\!\?\,;:]+$")
_SPACES = re.compile(r"\s+")


def normalise_answer(text: str | None) -> str:
    """Key under which answers count as "the same": case, spacing and end punctuation ignored."""
    if not text:
        return ""
    return _PUNCTUATION.sub("", _SPACES.sub(" ", text.strip().lower()))


async def consensus(run: RequestRun, targets: Sequence[Target]) -> Any:
    """All models; the largest group of equal answers wins if its share reaches `min_agreement`."""
    attempts = [run.new_attempt(target) for target in targets]
    tasks = {
        asyncio.create_task(run.attempt(t, a), name=f"lucky:{t.spec}"): a
        for t, a in zip(targets, attempts, strict=True)
    }
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await _cancel_all(tasks)
    answers: dict[str, list[tuple[Attempt, Any]]] = {}
    for task, attempt in tasks.items():
        if task.cancelled() or task.exception() is not None:
            continue
        answers.setdefault(normalise_answer(attempt.content), []).append((attempt, task.result()))
    if not answers:
        raise _fail(run)
    asked = len(targets)
    # largest group; ties go to the group whose first member comes first in provider order
    best = max(answers.values(), key=lambda group: (len(group), -attempts.index(group[0][0])))
    agreement = len(best) / asked
    required = run.plan.min_agreement
    reached = agreement >= required if required is not None else agreement > 0.5
    run.routing.votes = {group[0][0].content or "": len(group) for group in answers.values()}
    run.routing.agreement = agreement
    run.routing.answers = {a.model: a.content or "" for a in attempts if a.outcome != "failed"}
    if not reached:
        for attempt in attempts:
            if attempt.outcome == "pending":
                attempt.outcome = "lost"
        raise ConsensusError(
            run.plan.spec, {k: v for k, v in run.routing.votes.items()}, agreement, required or 0.5, attempts
        )
    winner, response = best[0]
    for attempt, _ in best[1:]:
        attempt.outcome = "won"
    return _won(run, winner, response)


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
