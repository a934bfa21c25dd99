"""The request lease (issue #20): slot, budget, deadline and spans hold on every exit path.

Each test is one row of the issue's table, run as a user would, over real HTTP against the fake
upstream (and a real Redis where the row involves one).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time

import pytest

from lucky_litellm import (
    AllModelsFailedError,
    BudgetExceededError,
    EmptyAnswerError,
    IncompleteStreamError,
    LuckyError,
    Models,
    StrategyTimeoutError,
    routing_of,
)
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"


def user(strategy: str = "first", *providers: str, timeout: int = 5000, **defaults: object) -> dict:
    return {
        "experiments": {"x": {"strategy": strategy, "providers": list(providers or [A]), "timeout": timeout}},
        "defaults": defaults,
    }


async def texts(stream) -> list[str]:
    return [chunk.choices[0].delta.content or "" async for chunk in stream]


# -- stream left by `break`, closed early, garbage-collected -------------------------------------


async def test_breaking_out_of_a_stream_frees_its_slot_and_reservation(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b c d e f g h", chunk_delay_ms=20))
    models.load_user_config("u", user(timeout=3000, maxConcurrent=1, costLimit=1.0))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    async for _chunk in stream:
        break
    second = await models.complete("user:u:x", MESSAGES)  # would wait 3 s, then fail, if the slot leaked
    assert second.choices[0].message.content
    await asyncio.sleep(0)
    assert models.limiter.in_flight("u") == 0
    expected = routing_of(stream).cost_usd + routing_of(second).cost_usd
    assert models.store.spent("u") == pytest.approx(expected)


async def test_a_stream_dropped_unclosed_is_settled_when_collected(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b c d e f g h", chunk_delay_ms=20))
    models.load_user_config("u", user(maxConcurrent=1, costLimit=1.0))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    await stream.__anext__()
    routing = routing_of(stream)
    del stream
    gc.collect()
    for _ in range(50):
        if models.limiter.in_flight("u") == 0:
            break
        await asyncio.sleep(0.01)
    assert models.limiter.in_flight("u") == 0
    assert routing.cost_usd > 0
    assert models.store.spent("u") == pytest.approx(routing.cost_usd)
    await fake_upstream.await_idle(timeout=5)  # the upstream connection was closed too


# -- billing of streams that did not run to the end ----------------------------------------------


async def test_a_stream_closed_early_inside_async_with_is_billed(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="one two three four five six", chunk_delay_ms=20))
    models.load_user_config("u", user(costLimit=1.0))
    async with await models.complete("user:u:x", MESSAGES, stream=True) as stream:
        await stream.__anext__()
    routing = routing_of(stream)
    assert routing.attempts[0].input_tokens > 0
    assert routing.attempts[0].output_tokens >= 1
    assert routing.cost_usd > 0
    assert models.store.spent("u") == pytest.approx(routing.cost_usd)


async def test_a_streaming_race_loser_that_had_started_is_billed(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="fast answer", latency_ms=150))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="slow answer", first_chunk_delay_ms=3000))
    models.load_user_config("u", user("race", A, B, costLimit=1.0))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    assert "".join(await texts(stream)) == "fast answer"
    attempts = {a.model: a for a in routing_of(stream).attempts}
    assert attempts[A].outcome == "won"
    assert attempts[B].outcome == "cancelled"
    assert attempts[B].cost_usd > 0  # its prompt was processed: the provider bills it
    assert routing_of(stream).cost_usd == pytest.approx(attempts[A].cost_usd + attempts[B].cost_usd)
    assert models.store.spent("u") == pytest.approx(routing_of(stream).cost_usd)


# -- budgets are a true bound --------------------------------------------------------------------


async def test_twelve_concurrent_calls_without_max_tokens_cannot_overspend(models, fake_upstream):
    long = Behavior(content="long answer", completion_tokens=6000, honor_max_tokens=True, latency_ms=50)
    fake_upstream.script("gpt-4.1-mini", long)
    models.load_user_config("u", user(costLimit=0.01))
    results = await asyncio.gather(
        *(models.complete("user:u:x", MESSAGES) for _ in range(12)), return_exceptions=True
    )
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert answered
    assert len(answered) + len(refused) == 12
    assert models.store.spent("u") <= 0.01
    assert sum(routing_of(r).cost_usd for r in answered) == pytest.approx(models.store.spent("u"))


async def test_without_max_tokens_a_budget_caps_the_answer_at_what_it_can_buy(models, fake_upstream):
    long = Behavior(content="long answer", completion_tokens=6000, honor_max_tokens=True)
    fake_upstream.script("gpt-4.1-mini", long)
    models.load_user_config("u", user(costLimit=0.005))
    response = await models.complete("user:u:x", MESSAGES)
    sent = fake_upstream.calls[0].body
    assert 0 < sent["max_tokens"] < 6000
    assert response.usage.completion_tokens == sent["max_tokens"]
    assert models.store.spent("u") <= 0.005


# -- the store failing while settling ------------------------------------------------------------


@pytest.mark.redis
async def test_a_store_failing_while_settling_keeps_the_answer_and_corrects_later(fake_upstream):
    import redis

    from lucky_litellm.state import state_from_url
    from lucky_litellm.testing.redis_server import RedisServer

    with RedisServer() as server:
        state = state_from_url(server.url, prefix="engine:")
        models = Models(upstream_config(fake_upstream), environ=dict(PLANTED_KEYS), state=state)
        models.load_user_config("u", user(costLimit=1.0))
        fake_upstream.script("gpt-4.1-mini", Behavior(content="paid answer", latency_ms=300))
        admin = redis.Redis.from_url(server.url)
        try:
            call = asyncio.create_task(models.complete("user:u:x", MESSAGES, max_tokens=50))
            await fake_upstream.await_calls(1)  # reserved in Redis, now in flight
            admin.config_set("maxmemory", 1)  # Redis is out of memory: every write fails (OOM)
            response = await call
            assert response.choices[0].message.content == "paid answer"
            assert models.limiter.in_flight("u") == 0
            admin.config_set("maxmemory", 0)
            cost = routing_of(response).cost_usd
            deadline = time.monotonic() + 10
            while int(admin.get("engine:spend:u") or 0) != round(cost * 1e9):  # the reservation is
                assert time.monotonic() < deadline, "the reservation was never corrected"  # replaced
                await asyncio.sleep(0.05)
        finally:
            admin.close()
            state.close()


# -- the deadline covers the stream body; no raw litellm exception --------------------------------


async def test_a_stream_dripping_past_the_deadline_ends_in_strategy_timeout(models, fake_upstream):
    words = " ".join(f"w{i}" for i in range(30))
    fake_upstream.script("gpt-4.1-mini", Behavior(content=words, chunk_delay_ms=300))  # ~9 s
    models.load_user_config("u", user(timeout=1000, maxConcurrent=1))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    started = time.monotonic()
    with pytest.raises(StrategyTimeoutError):
        await texts(stream)
    assert time.monotonic() - started < 30 * 0.3 / 2  # cut at the 1 s deadline, not read to its end
    assert models.limiter.in_flight("u") == 0
    await fake_upstream.await_idle(timeout=5)


async def test_a_stalled_stream_ends_in_strategy_timeout(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b", chunk_delay_ms=5000))  # stalls
    models.load_user_config("u", user(timeout=800))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    with pytest.raises(StrategyTimeoutError):
        await texts(stream)


async def test_a_dropped_stream_connection_ends_in_incomplete_stream(models, fake_upstream):
    fake_upstream.script(
        "gpt-4.1-mini", Behavior(content="one two three four", stream_cut_after=2, stream_cut_reset=True)
    )
    models.load_user_config("u", user(costLimit=1.0))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    with pytest.raises(LuckyError) as info:
        await texts(stream)
    assert isinstance(info.value, IncompleteStreamError | StrategyTimeoutError)
    assert routing_of(stream).cost_usd > 0  # the part that was streamed is billed
    assert models.store.spent("u") == pytest.approx(routing_of(stream).cost_usd)


# -- the usage chunk -----------------------------------------------------------------------------


async def test_a_caller_who_did_not_ask_for_usage_gets_no_usage_chunk(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b c"))
    stream = await models.complete(A, MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(getattr(chunk, "usage", None) is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert routing_of(stream).attempts[0].output_tokens == 3  # usage was still read, for billing


async def test_a_caller_who_asked_for_usage_gets_it(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b c", completion_tokens=7))
    stream = await models.complete(A, MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage.completion_tokens == 7


# -- cold start ----------------------------------------------------------------------------------

COLD_START = """
import asyncio, sys, time
from lucky_litellm import Models
base, timeout_ms = sys.argv[1], float(sys.argv[2])
defaults = {"timeout": timeout_ms, "retries": 0}
models = Models({"providers": {"openai": {"apiBase": base}}, "defaults": defaults},
                environ={"OPENAI_API_KEY": "sk-test"})
started = time.monotonic()
response = asyncio.run(models.complete("openai/gpt-4.1-mini", [{"role": "user", "content": "hi"}]))
print(response.choices[0].message.content)
"""

IMPORT_TIME = (
    "import time; started = time.perf_counter(); import litellm; print(time.perf_counter() - started)"
)


def test_the_first_call_of_a_process_does_not_spend_its_deadline_loading_litellm(fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="cold answer"))
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # what loading litellm takes in a new process on this machine now: the deadline is half of
    # it (at least the 1.5 s it used to be), which loading would spend and a call never does
    loading = subprocess.run(
        [sys.executable, "-c", IMPORT_TIME], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    timeout_ms = max(1500.0, float(loading.stdout) * 1000 / 2)
    done = subprocess.run(
        [sys.executable, "-c", COLD_START, fake_upstream.base_url, str(timeout_ms)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "cold answer"


# -- an answer without choices is a failure ------------------------------------------------------


async def test_an_answer_without_choices_makes_fallback_move_on(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(empty_choices=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="real answer"))
    models.load_user_config("u", user("fallback", A, B))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "real answer"
    attempts = routing_of(response).attempts
    assert [(a.model, a.outcome, a.error_type) for a in attempts] == [
        (A, "failed", "EmptyAnswerError"),
        (B, "won", None),
    ]


async def test_an_answer_without_choices_does_not_win_a_race(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(empty_choices=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="real answer", latency_ms=100))
    models.load_user_config("u", user("race", A, B))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "real answer"


async def test_an_answer_without_choices_alone_is_a_typed_failure(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(empty_choices=True))
    with pytest.raises(AllModelsFailedError) as info:
        await models.complete(A, MESSAGES)
    assert isinstance(info.value.exceptions[0], EmptyAnswerError)


# -- per-call credentials ------------------------------------------------------------------------


async def test_per_call_api_key_and_api_base_switch_a_provider_on(fake_upstream):
    models = Models({}, environ={})  # no key anywhere: groq is disabled
    fake_upstream.script("llama-3.3-70b-versatile", Behavior(content="from groq"))
    response = await models.complete(
        "groq/llama-3.3-70b-versatile",
        MESSAGES,
        api_key="gsk-per-call-key-0003",
        api_base=fake_upstream.base_url,
    )
    assert response.choices[0].message.content == "from groq"
    assert fake_upstream.calls[0].headers["Authorization"] == "Bearer gsk-per-call-key-0003"


# -- maxConcurrent changes apply to queued requests -----------------------------------------------


async def test_raising_max_concurrent_lets_queued_requests_run_at_once(make_models, fake_upstream):
    # the first call holds its slot for 30 s (one attempt, a minute to live); the queued ones answer at once
    models = make_models(defaults={"retries": 0})
    fake_upstream.script("gpt-4.1-mini", Behavior(content="ok", latency_fn=lambda i: 30_000 if i == 0 else 0))
    models.load_user_config("u", user(timeout=60_000, maxConcurrent=1))
    holder = asyncio.create_task(models.complete("user:u:x", MESSAGES))
    await fake_upstream.await_calls(1)
    queued = [asyncio.create_task(models.complete("user:u:x", MESSAGES)) for _ in range(3)]
    models.load_user_config("u", user(timeout=60_000, maxConcurrent=4))
    answers = await asyncio.wait_for(asyncio.gather(*queued), timeout=20)
    assert [a.choices[0].message.content for a in answers] == ["ok"] * 3
    assert not holder.done()  # they ran beside the slot holder, not after it
    holder.cancel()


async def test_lowering_max_concurrent_holds_back_queued_requests(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="ok", latency_ms=200))
    models.load_user_config("u", user(maxConcurrent=4))
    first = [asyncio.create_task(models.complete("user:u:x", MESSAGES)) for _ in range(4)]
    await fake_upstream.await_calls(4)
    models.load_user_config("u", user(maxConcurrent=1))
    queued = [asyncio.create_task(models.complete("user:u:x", MESSAGES)) for _ in range(4)]
    await asyncio.gather(*first)
    fake_upstream.reset()
    fake_upstream.script("gpt-4.1-mini", Behavior(content="ok", latency_ms=100))
    await asyncio.gather(*queued)
    assert fake_upstream.max_in_flight("gpt-4.1-mini") == 1


# -- pricing -------------------------------------------------------------------------------------


async def test_a_local_model_sharing_a_cloud_models_name_costs_nothing(fake_upstream):
    models = Models(
        {"providers": {"local": {"apiBase": fake_upstream.base_url}}, "defaults": {"retries": 0}}, environ={}
    )
    models.load_user_config("u", user("first", "local/gpt-4.1-mini", costLimit=0.000001))
    fake_upstream.script("gpt-4.1-mini", Behavior(content="free answer", completion_tokens=500))
    response = await models.complete("user:u:x", MESSAGES)
    assert routing_of(response).cost_usd == 0.0
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    await texts(stream)
    assert routing_of(stream).cost_usd == 0.0


async def test_the_same_answer_costs_the_same_streamed_or_not(models, fake_upstream):
    behavior = Behavior(content="a b c", prompt_tokens=1000, completion_tokens=200, cached_tokens=800)
    fake_upstream.script("gpt-4.1-mini", behavior)
    whole = await models.complete(A, MESSAGES)
    stream = await models.complete(A, MESSAGES, stream=True)
    await texts(stream)
    assert routing_of(whole).cost_usd > 0
    assert routing_of(stream).cost_usd == pytest.approx(routing_of(whole).cost_usd)
    uncached = (1000 * 0.4 + 200 * 1.6) / 1e6
    assert routing_of(whole).cost_usd < uncached  # cached prompt tokens are cheaper


# -- bounded memory ------------------------------------------------------------------------------


async def test_callers_without_a_budget_leave_nothing_in_the_spend_ledger(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="ok"))
    await asyncio.gather(*(models.complete(A, MESSAGES, user_id=f"caller-{i}") for i in range(40)))
    assert models.state.spend._ledger.nanos == {}


def test_the_provider_target_cache_is_bounded():
    from lucky_litellm.providers import MAX_CACHED_TARGETS, ProviderTable

    table = ProviderTable.build(environ={"OPENAI_API_KEY": "sk-test"})
    for i in range(MAX_CACHED_TARGETS + 10):
        table.target_for(f"openai/model-{i}")
    assert len(table._targets) <= MAX_CACHED_TARGETS


def test_a_reservation_is_capped_at_what_the_rest_of_the_budget_can_buy():
    from lucky_litellm.pricing import Estimate, fit_budget

    cheap, dear = Estimate(0.001, 1e-6, 10_000, True), Estimate(0.002, 2e-6, 10_000, True)
    amount, cap = fit_budget([cheap, dear], together=False, remaining=1.0, capped=False)
    assert (amount, cap) == (pytest.approx(0.022), None)  # one answer paid: the dearer model's worst
    amount, cap = fit_budget([cheap, dear], together=True, remaining=1.0, capped=False)
    assert (amount, cap) == (pytest.approx(0.033), None)  # a race may pay for both
    amount, cap = fit_budget([cheap, dear], together=True, remaining=0.006, capped=False)
    assert cap == 1000 and amount == pytest.approx(0.006)  # 0.003 prompt + 1000 * 3e-6
    assert fit_budget([cheap, dear], together=True, remaining=0.006, capped=True) is None  # max_tokens set
    assert fit_budget([cheap, dear], together=False, remaining=0.001, capped=False) is None
