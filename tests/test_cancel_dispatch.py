"""A cancelled attempt prints nothing: no "coroutine ... was never awaited" from litellm.

`litellm.acompletion` runs the sync `completion(acompletion=True)` in the loop's default executor
(`loop.run_in_executor`), gets the provider's coroutine back from the worker thread, then awaits
it. A race's loser cancelled while the thread is still in `completion()` drops that coroutine
unawaited, and Python printed `RuntimeWarning: coroutine 'OpenAIChatCompletion.acompletion' was
never awaited` on the user's stderr (seen in `lucky_litellm demo` about one run in two).

The tests hold the loser's worker thread in that window with a gate on the default executor (real
litellm, real HTTP to the fake upstream), so the cancellation lands there every time.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from lucky_litellm import routing_of
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B, C = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4o-mini"
_STUCK_S = 60.0
"""Only a guard against a hung test: every wait below ends on an event long before."""


def _model_of(fn: Callable[..., Any]) -> str | None:
    """The model of litellm's `partial(ctx.run, partial(completion, model=...))`, else None."""
    if isinstance(fn, partial) and fn.args and isinstance(fn.args[0], partial):
        model = fn.args[0].keywords.get("model")
        return model if isinstance(model, str) else None
    return None


class DispatchGate(ThreadPoolExecutor):
    """The loop's default executor. The `held` model's `completion()` returns its coroutine, then
    its thread waits for `release`: that call sits in the window where a cancellation orphans
    the coroutine. Other models' calls wait until the held one is in the window, so a race's
    winner answers (and the loser is cancelled) while the loser is there."""

    def __init__(self, loop: asyncio.AbstractEventLoop, held: str) -> None:
        super().__init__(max_workers=4)
        self.loop, self.held = loop, held
        self.release = threading.Event()
        self.returned = asyncio.Event()
        self._in_window = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        model = _model_of(fn)
        if model is None:
            return super().submit(fn, *args, **kwargs)
        held = model == self.held

        def run() -> Any:
            result = fn(*args, **kwargs)
            if held:
                self._in_window.set()
                self.release.wait(_STUCK_S)
            else:
                self._in_window.wait(_STUCK_S)
            return result

        future = super().submit(run)
        if held:  # runs before asyncio's own callback: `returned` is set after the result is handed over
            future.add_done_callback(lambda _: self.loop.call_soon_threadsafe(self.returned.set))
        return future


@pytest.fixture
async def gate() -> AsyncIterator[DispatchGate]:
    loop = asyncio.get_running_loop()
    executor = DispatchGate(loop, held=B)
    loop.set_default_executor(executor)
    yield executor
    executor.release.set()


def experiment(strategy: str, *providers: str, **extra: object) -> dict[str, object]:
    return {"experiments": {"x": {"strategy": strategy, "providers": list(providers), **extra}}}


async def _unawaited_after(gate: DispatchGate, run: Any) -> tuple[Any, list[str]]:
    """Run `run()` (which cancels the held call in its window), let the held thread hand its
    coroutine back, drop it, and return the result with the "never awaited" warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)  # as `-W always`/`-W error` would show it
        result = await run()
        gate.release.set()
        await asyncio.wait_for(gate.returned.wait(), _STUCK_S)
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
    return result, [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def test_race_loser_cancelled_between_completion_and_its_await_warns_nothing(models, gate):
    models.load_user_config("u", experiment("race", A, B))
    response, unawaited = await _unawaited_after(gate, lambda: models.complete("user:u:x", MESSAGES))
    assert {a.model: a.outcome for a in routing_of(response).attempts} == {A: "won", B: "cancelled"}
    assert unawaited == []


async def test_consensus_stopping_early_warns_nothing_for_the_call_it_cancels(models, fake_upstream, gate):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4o-mini", Behavior(content="Paris"))
    models.load_user_config("u", experiment("consensus", A, B, C))
    response, unawaited = await _unawaited_after(gate, lambda: models.complete("user:u:x", MESSAGES))
    assert response.choices[0].message.content == "Paris"  # two of three agree: B cannot change it
    assert {a.model: a.outcome for a in routing_of(response).attempts}[B] == "cancelled"
    assert unawaited == []


async def test_hedge_cancelled_when_the_first_model_answers_warns_nothing(models, fake_upstream, gate):
    models.load_user_config("u", experiment("race", A, B, hedgeAfter=0))
    response, unawaited = await _unawaited_after(gate, lambda: models.complete("user:u:x", MESSAGES))
    assert {a.model: a.outcome for a in routing_of(response).attempts} == {A: "won", B: "cancelled"}
    assert unawaited == []


async def test_fallback_call_cut_by_its_share_of_the_deadline_warns_nothing(models, fake_upstream, gate):
    """Here no other model answers first: the held call's time budget (its share of the
    request's deadline) cancels it, and the next model answers."""
    gate.held = A
    models.load_user_config("u", experiment("fallback", A, B, timeout=200))
    response, unawaited = await _unawaited_after(gate, lambda: models.complete("user:u:x", MESSAGES))
    routing = routing_of(response)
    assert routing.winner == B and routing.attempts[0].error_type == "AttemptTimeoutError"
    assert unawaited == []


def test_the_filter_hides_only_litellms_orphaned_handler_coroutine():
    from lucky_litellm.calls import quiet_orphaned_dispatch

    litellms, users = "coroutine 'OpenAIChatCompletion.acompletion'", "coroutine 'my_handler'"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_orphaned_dispatch()
        warnings.warn(f"{litellms} was never awaited", RuntimeWarning, stacklevel=1)
        warnings.warn(f"{users} was never awaited", RuntimeWarning, stacklevel=1)  # the user's own
        warnings.warn(f"{litellms} was never awaited", UserWarning, stacklevel=1)  # not that warning
    assert [(str(w.message), w.category) for w in caught] == [
        (f"{users} was never awaited", RuntimeWarning),
        (f"{litellms} was never awaited", UserWarning),
    ]
