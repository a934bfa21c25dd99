"""Strategies on bad days: hanging models, early consensus, secrets echoed by failing streams.

Each test runs real litellm calls against the fake upstream over HTTP; deadlines are small so a
strategy that waits for a hung model fails the test quickly instead of slowing the suite.
"""

from __future__ import annotations

import asyncio
import re
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from lucky_litellm import AllModelsFailedError, ConsensusError, Models, routing_of
from lucky_litellm.testing import Behavior, FakeUpstream

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

README = Path(__file__).resolve().parents[1] / "README.md"

A, B, C, D = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4o-mini", "openai/gpt-4o"


def experiment(strategy: str, *providers: str, **extra: object) -> dict[str, object]:
    return {"experiments": {"x": {"strategy": strategy, "providers": list(providers), **extra}}}


async def warm_up(models: Models) -> None:
    """Deadlines here are short; litellm's first call in a process (imports, client set-up) is
    not what they measure, so each timed test pays it before starting the clock."""
    await models.complete(D, MESSAGES)


CONSENSUS_DEADLINE_MS = 20_000
"""Long beside the few milliseconds a decision takes, however loaded the machine: a consensus
that waited for its hung voter until the deadline is told from one that decided at once."""


def lucky_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task.get_name().startswith("lucky:")}


# -- per-attempt budgets --------------------------------------------------------------------------


async def test_fallback_past_a_hanging_model_answers_within_the_deadline(models, fake_upstream):
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="healthy"))
    models.load_user_config("u", experiment("fallback", A, B, timeout=2000))
    response = await models.complete("user:u:x", MESSAGES)  # an answer: within the deadline
    assert response.choices[0].message.content == "healthy"
    hung, healthy = routing_of(response).attempts
    assert (hung.model, hung.outcome, hung.error_type) == (A, "failed", "AttemptTimeoutError")
    assert (healthy.model, healthy.outcome) == (B, "won")


async def test_first_retries_a_model_that_hangs_once_within_the_deadline(models, fake_upstream):
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", [Behavior(hang=True), Behavior(content="second try")])
    models.load_user_config("u", experiment("first", A, timeout=6000, retries=1))
    response = await models.complete("user:u:x", MESSAGES)  # an answer: within the deadline
    assert response.choices[0].message.content == "second try"
    assert routing_of(response).attempts[0].tries == 2
    assert fake_upstream.call_count("gpt-4.1-mini") == 2


async def test_explicit_attempt_timeout_bounds_each_call(models, fake_upstream):
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="healthy"))
    models.load_user_config("u", experiment("fallback", A, B, timeout=10000, attemptTimeout=200, retries=0))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "healthy"
    hung = routing_of(response).attempts[0]
    # cut at 200 ms (the derived default would have waited 5 s): measured on the attempt itself
    assert (hung.error_type, "200 ms" in hung.error) == ("AttemptTimeoutError", True)
    assert hung.latency_ms < 5000


async def test_tier_attempt_timeout_is_enforced(make_models, fake_upstream):
    tiers = {"medium": {"models": [A, B], "strategy": "fallback", "timeout": 10000, "attemptTimeout": 200}}
    models = make_models(tiers=tiers, defaults={"retries": 0})
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="healthy"))
    response = await models.complete("tier:medium", MESSAGES)
    assert routing_of(response).winner == B
    hung = routing_of(response).attempts[0]
    assert (hung.error_type, "200 ms" in hung.error) == ("AttemptTimeoutError", True)
    assert hung.latency_ms < 5000  # not the derived default (half the 10 s deadline)


async def test_the_readme_attempt_timeout_example_answers_past_a_hang(models, fake_upstream):
    marked = r"<!-- attempt-timeout -->\s*(?:<!--.*?-->\s*)*```yaml\n(.*?)\n```"
    block = re.search(marked, README.read_text(), re.DOTALL)
    assert block, "README.md has no yaml block marked <!-- attempt-timeout -->"
    models.load_user_config("u", block.group(1))
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    fake_upstream.script("llama-3.3-70b-versatile", Behavior(content="healthy"))
    response = await models.complete("user:u:careful", MESSAGES)
    assert routing_of(response).attempts[0].error_type == "AttemptTimeoutError"
    assert response.choices[0].message.content == "healthy"


async def test_attempt_budgets_keep_litellms_cached_client(models, fake_upstream):
    """The budget is an asyncio timeout around the call, not a per-call `timeout` for litellm,
    which keys its HTTP clients on it: every call would open a new connection."""
    models.load_user_config("u", experiment("fallback", A, B, timeout=3000))
    for _ in range(4):
        await models.complete("user:u:x", MESSAGES)
    assert fake_upstream.call_count() == 4
    assert fake_upstream.connections_opened == 1


# -- consensus ------------------------------------------------------------------------------------


async def test_consensus_decides_once_a_majority_agrees_and_cancels_the_rest(models, fake_upstream):
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="paris."))
    fake_upstream.script("gpt-4o-mini", Behavior(hang=True))
    models.load_user_config("u", experiment("consensus", A, B, C, timeout=CONSENSUS_DEADLINE_MS))
    started = time.monotonic()
    response = await models.complete("user:u:x", MESSAGES)
    assert time.monotonic() - started < CONSENSUS_DEADLINE_MS / 1000 / 2  # decided, not timed out
    routing = routing_of(response)
    assert response.choices[0].message.content == "Paris"
    assert [a.outcome for a in routing.attempts] == ["won", "won", "cancelled"]
    assert routing.agreement == pytest.approx(2 / 3)
    assert lucky_tasks() == set()
    # the hung voter's request is closed, not left hanging (newer litellm may cancel it before it
    # was even sent: then the upstream never saw it)
    await fake_upstream.await_idle(timeout=5)
    assert fake_upstream.cancelled_count("gpt-4o-mini") == fake_upstream.call_count("gpt-4o-mini")


async def test_consensus_gives_up_as_soon_as_no_group_can_reach_quorum(models, fake_upstream):
    await warm_up(models)
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Lyon"))
    fake_upstream.script("gpt-4o-mini", Behavior(hang=True))
    models.load_user_config(
        "u", experiment("consensus", A, B, C, timeout=CONSENSUS_DEADLINE_MS, minAgreement=1.0)
    )
    started = time.monotonic()
    with pytest.raises(ConsensusError) as info:
        await models.complete("user:u:x", MESSAGES)
    assert time.monotonic() - started < CONSENSUS_DEADLINE_MS / 1000 / 2  # gave up, not timed out
    assert info.value.votes == {"Paris": 1, "Lyon": 1}
    assert lucky_tasks() == set()


async def test_consensus_bills_answers_that_arrived_before_the_decision(make_models, fake_upstream):
    models = make_models()
    usage = {"prompt_tokens": 100, "completion_tokens": 10}
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris", **usage))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Paris", latency_ms=300, **usage))
    fake_upstream.script("gpt-4o-mini", Behavior(content="Lyon", **usage))
    models.load_user_config("u", {**experiment("consensus", A, B, C), "defaults": {"costLimit": 10}})
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    assert [a.outcome for a in routing.attempts] == ["won", "won", "lost"]
    assert all(a.cost_usd > 0 for a in routing.attempts)
    assert routing.cost_usd == pytest.approx(sum(a.cost_usd for a in routing.attempts))
    assert models.store.spent("u") == pytest.approx(routing.cost_usd)


async def test_consensus_empty_answers_abstain_instead_of_winning(models, fake_upstream):
    # Paris first: two empty answers alone already settle it (no group can reach 2 of 3 then)
    fake_upstream.script("gpt-4.1-mini", Behavior(content="", latency_ms=200))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="  ", latency_ms=200))
    fake_upstream.script("gpt-4o-mini", Behavior(content="Paris"))
    models.load_user_config("u", experiment("consensus", A, B, C))
    with pytest.raises(ConsensusError) as info:
        await models.complete("user:u:x", MESSAGES)
    assert info.value.votes == {"Paris": 1}


async def test_consensus_empty_answers_do_not_count_for_the_winner(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content=""))
    fake_upstream.script("gpt-4.1-nano", Behavior(status=500))
    fake_upstream.script("gpt-4o-mini", Behavior(content="Paris"))
    models.load_user_config("u", experiment("consensus", A, B, C, minAgreement=0.3, retries=0))
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    assert (routing.winner, routing.votes) == (C, {"Paris": 1})
    assert routing.agreement == pytest.approx(1 / 3)


WEATHER_PARIS = ("get_weather", '{"city": "Paris", "unit": "C"}')
WEATHER_PARIS_REORDERED = ("get_weather", '{ "unit":"C","city":"Paris" }')
WEATHER_LYON = ("get_weather", '{"city": "Lyon", "unit": "C"}')


async def test_consensus_compares_tool_calls_by_name_and_normalised_arguments(models, fake_upstream):
    # the dissenter answers first, so it is counted before two agreeing answers decide
    fake_upstream.script("gpt-4.1-mini", Behavior(tool_calls=(WEATHER_LYON,)))
    fake_upstream.script("gpt-4.1-nano", Behavior(tool_calls=(WEATHER_PARIS,), latency_ms=200))
    fake_upstream.script("gpt-4o-mini", Behavior(tool_calls=(WEATHER_PARIS_REORDERED,), latency_ms=200))
    models.load_user_config("u", experiment("consensus", A, B, C))
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    assert routing.winner == B
    assert response.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert sorted(routing.votes.values()) == [1, 2]


async def test_consensus_tool_calls_with_different_arguments_do_not_agree(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(tool_calls=(WEATHER_PARIS,)))
    fake_upstream.script("gpt-4.1-nano", Behavior(tool_calls=(WEATHER_LYON,)))
    models.load_user_config("u", experiment("consensus", A, B))
    with pytest.raises(ConsensusError):
        await models.complete("user:u:x", MESSAGES)


async def test_consensus_one_to_one_split_message_does_not_contradict_itself(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Lyon"))
    models.load_user_config("u", experiment("consensus", A, B))
    with pytest.raises(ConsensusError) as info:
        await models.complete("user:u:x", MESSAGES)
    message = str(info.value)
    assert "0.50 < required 0.50" not in message
    assert "1 of 2" in message and "strict majority" in message


# -- secrets in failing streams -------------------------------------------------------------------

SECRET = "plainsecret0123456789ABCDEF"  # not shaped like a known key: only removal by value finds it

PROVIDERS = {  # provider -> (model spec, the model name the upstream sees)
    "openai": ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
    "anthropic": ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),  # Anthropic's Messages API
}


def keyed_models(upstream: FakeUpstream, provider: str) -> Models:
    """A registry whose `provider` is served by the fake upstream with the planted key."""
    base = upstream.base_url if provider == "openai" else upstream.base_url.removesuffix("/v1")
    providers: dict[str, Any] = {name: {"enabled": False} for name in ("openai", "anthropic", "openrouter")}
    providers[provider] = {"apiBase": base}
    return Models({"providers": providers}, environ={f"{provider.upper()}_API_KEY": SECRET})


def leaks(exc: BaseException, attempts: Any) -> list[str]:
    places = {
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        **{f"attempts[{i}].error": a.error or "" for i, a in enumerate(attempts)},
    }
    return [where for where, text in places.items() if SECRET in text]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_upstream_error_mid_stream_does_not_leak_the_key(fake_upstream, provider):
    spec, name = PROVIDERS[provider]
    models = keyed_models(fake_upstream, provider)
    echo = f"overloaded, key {SECRET}"
    failing = Behavior(content="one two three", stream_error_after=1, status=529, error_message=echo)
    fake_upstream.script(name, failing)
    stream = await models.complete(spec, MESSAGES, stream=True)
    with pytest.raises(Exception) as info:
        async for _ in stream:
            pass
    assert leaks(info.value, routing_of(stream).attempts) == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streamed_401_that_echoes_the_key_does_not_leak_it(fake_upstream, provider):
    spec, name = PROVIDERS[provider]
    models = keyed_models(fake_upstream, provider)
    fake_upstream.script(name, Behavior(status=401, error_message=f"invalid x-api-key: {SECRET}"))
    with pytest.raises(AllModelsFailedError) as info:
        await models.complete(spec, MESSAGES, stream=True)
    assert leaks(info.value, info.value.attempts) == []
