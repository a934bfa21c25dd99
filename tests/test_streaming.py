"""stream=True through the strategies, against the fake upstream's real SSE streams."""

from __future__ import annotations

import asyncio

import pytest

from lucky_litellm import AllModelsFailedError, IncompleteStreamError, routing_of
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"


def experiment(strategy: str, *providers: str, **extra: object) -> dict[str, object]:
    return {"experiments": {"x": {"strategy": strategy, "providers": list(providers), **extra}}}


async def collect(stream) -> str:
    parts = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


async def test_first_streams_the_whole_answer_and_prices_it(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="the capital is Paris", completion_tokens=5))
    stream = await models.complete(A, MESSAGES, stream=True)
    assert await collect(stream) == "the capital is Paris"
    routing = routing_of(stream)
    assert routing.winner == A
    assert routing.attempts[0].output_tokens == 5
    assert routing.cost_usd > 0


async def test_stream_cut_by_the_upstream_ends_in_an_error(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="one two three four", stream_cut_after=2))
    stream = await models.complete(A, MESSAGES, stream=True)
    with pytest.raises((IncompleteStreamError, Exception)) as info:
        await collect(stream)
    assert not isinstance(info.value, StopAsyncIteration)
    assert routing_of(stream).winner == A


async def test_stream_cut_cleanly_is_reported_as_incomplete(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="one two three four", stream_cut_after=2))
    stream = await models.complete(A, MESSAGES, stream=True)
    with pytest.raises(IncompleteStreamError, match="without finishing"):
        await collect(stream)


async def test_fallback_switches_models_before_the_first_chunk(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=500))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="from nano"))
    models.load_user_config("u", experiment("fallback", A, B, retries=0))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    assert await collect(stream) == "from nano"
    assert [(a.model, a.outcome) for a in routing_of(stream).attempts] == [(A, "failed"), (B, "won")]


async def test_fallback_switches_when_a_stream_dies_before_its_first_chunk(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="never", stream_cut_after=0))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="from nano"))
    models.load_user_config("u", experiment("fallback", A, B, retries=0))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    assert await collect(stream) == "from nano"


async def test_streaming_race_first_model_to_yield_a_chunk_wins_and_the_other_is_cancelled(
    models, fake_upstream
):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="slow", latency_ms=5000))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="fast answer", latency_ms=10))
    models.load_user_config("u", experiment("race", A, B))
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    assert await collect(stream) == "fast answer"
    assert {a.model: a.outcome for a in routing_of(stream).attempts} == {A: "cancelled", B: "won"}
    await fake_upstream.await_idle(timeout=5)
    assert fake_upstream.cancelled_count("gpt-4.1-mini") == 1


async def test_streaming_race_with_every_model_failing_raises(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=400))
    fake_upstream.script("gpt-4.1-nano", Behavior(status=400))
    models.load_user_config("u", experiment("race", A, B))
    with pytest.raises(AllModelsFailedError):
        await models.complete("user:u:x", MESSAGES, stream=True)


async def test_consensus_refuses_to_stream(models):
    models.load_user_config("u", experiment("consensus", A, B))
    with pytest.raises(ValueError, match="consensus"):
        await models.complete("user:u:x", MESSAGES, stream=True)


async def test_a_stream_holds_its_concurrency_slot_and_budget_until_it_ends(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b c", prompt_tokens=10, completion_tokens=3))
    models.load_user_config(
        "u", {**experiment("first", A), "defaults": {"maxConcurrent": 1, "costLimit": 1.0}}
    )
    stream = await models.complete("user:u:x", MESSAGES, stream=True, max_tokens=10)
    assert models.limiter.in_flight("u") == 1
    reserved = models.store.spent("u")
    assert reserved > 0
    await collect(stream)
    assert models.limiter.in_flight("u") == 0
    assert models.store.spent("u") == pytest.approx(routing_of(stream).cost_usd)


async def test_closing_a_stream_early_settles_the_request(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a b c d e f", chunk_delay_ms=50))
    models.load_user_config("u", {**experiment("first", A), "defaults": {"maxConcurrent": 1}})
    stream = await models.complete("user:u:x", MESSAGES, stream=True)
    await stream.__anext__()
    await stream.aclose()
    assert models.limiter.in_flight("u") == 0
    await asyncio.wait_for(fake_upstream.await_idle(timeout=5), 6)
