"""Strategy semantics, each run through real litellm calls to the fake upstream over HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from lucky_litellm import (
    AllModelsFailedError,
    BudgetExceededError,
    ConcurrencyLimitError,
    ConsensusError,
    NoModelsAvailableError,
    StrategyTimeoutError,
    routing_of,
)
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B, C = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano", "openai/gpt-4o-mini"


def experiment(strategy: str, *providers: str, **extra: object) -> dict[str, object]:
    return {"experiments": {"x": {"strategy": strategy, "providers": list(providers), **extra}}}


def lucky_tasks() -> set[asyncio.Task[object]]:
    """Tasks our strategies started (named "lucky:<model>"); litellm's own logging tasks excluded."""
    return {task for task in asyncio.all_tasks() if task.get_name().startswith("lucky:")}


# -- first ----------------------------------------------------------------------------------------


async def test_first_returns_litellms_model_response_with_routing(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris", prompt_tokens=12, completion_tokens=3))
    response = await models.complete(A, MESSAGES, request_id="r1")
    assert type(response).__name__ == "ModelResponse"
    assert response.choices[0].message.content == "Paris"
    routing = routing_of(response)
    assert (routing.strategy, routing.winner, routing.request_id) == ("first", A, "r1")
    assert routing.attempts[0].outcome == "won"
    assert (routing.attempts[0].input_tokens, routing.attempts[0].output_tokens) == (12, 3)
    assert routing.cost_usd == pytest.approx(12 * 0.4e-6 + 3 * 1.6e-6)


async def test_first_calls_only_the_first_model(models, fake_upstream):
    models.load_user_config("u", experiment("first", A, B))
    await models.complete("user:u:x", MESSAGES)
    assert (fake_upstream.call_count("gpt-4.1-mini"), fake_upstream.call_count("gpt-4.1-nano")) == (1, 0)


async def test_first_failing_for_good_raises_all_models_failed_with_the_cause(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=401))
    with pytest.raises(AllModelsFailedError) as info:
        await models.complete(A, MESSAGES)
    assert type(info.value.exceptions[0]).__name__ == "AuthenticationError"
    assert fake_upstream.call_count("gpt-4.1-mini") == 1  # a 401 is never retried


# -- retries --------------------------------------------------------------------------------------


async def test_retry_waits_for_retry_after_then_succeeds(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", [Behavior(status=429, retry_after=0.3), Behavior(content="ok")])
    response = await models.complete(A, MESSAGES)
    assert response.choices[0].message.content == "ok"
    first, second = fake_upstream.calls
    assert second.started_at - first.started_at >= 0.3
    assert routing_of(response).attempts[0].tries == 2


async def test_transient_5xx_is_retried_a_bounded_number_of_times(make_models, fake_upstream):
    models = make_models(defaults={"retries": 2})
    fake_upstream.script("gpt-4.1-mini", Behavior(status=503))
    with pytest.raises(AllModelsFailedError):
        await models.complete(A, MESSAGES)
    assert fake_upstream.call_count("gpt-4.1-mini") == 3


# -- fallback -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Behavior(status=500),
        Behavior(status=429, retry_after=0),
        Behavior(malformed=True),
        Behavior(drop=True),
        Behavior(status=404),
    ],
    ids=["500", "429", "malformed", "dropped", "404"],
)
async def test_fallback_moves_past_a_failing_model(models, fake_upstream, fault):
    fake_upstream.script("gpt-4.1-mini", fault)
    fake_upstream.script("gpt-4.1-nano", Behavior(content="from nano"))
    models.load_user_config("u", experiment("fallback", A, B, retries=0))
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    assert response.choices[0].message.content == "from nano"
    assert [(a.model, a.outcome) for a in routing.attempts] == [(A, "failed"), (B, "won")]
    assert routing.attempts[0].error_type is not None


async def test_fallback_moves_past_a_hanging_model_when_its_own_timeout_expires(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="from nano"))
    models.load_user_config("u", experiment("fallback", A, B, retries=0))
    # a per-call timeout from the caller's code (a config's params may no longer set one)
    response = await models.complete("user:u:x", MESSAGES, timeout=0.3)
    assert response.choices[0].message.content == "from nano"
    assert routing_of(response).attempts[0].outcome == "failed"


async def test_fallback_with_every_model_failing_carries_each_exception(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=500))
    fake_upstream.script("gpt-4.1-nano", Behavior(status=400))
    models.load_user_config("u", experiment("fallback", A, B, retries=0))
    with pytest.raises(AllModelsFailedError) as info:
        await models.complete("user:u:x", MESSAGES)
    assert [type(e).__name__ for e in info.value.exceptions] == ["InternalServerError", "BadRequestError"]
    assert "gpt-4.1-mini: failed" in str(info.value)


# -- race -----------------------------------------------------------------------------------------


async def test_race_slowest_model_loses_and_is_cancelled_without_leaks(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="slow", latency_ms=5000))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="fast", latency_ms=10))
    models.load_user_config("u", experiment("race", A, B))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "fast"
    routing = routing_of(response)
    assert {a.model: a.outcome for a in routing.attempts} == {A: "cancelled", B: "won"}
    assert lucky_tasks() == set()
    await fake_upstream.await_idle(timeout=5)  # the loser's request was abandoned by the client
    assert fake_upstream.cancelled_count("gpt-4.1-mini") == 1


async def test_race_loser_that_finished_is_billed_and_marked_lost(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a", prompt_tokens=100, completion_tokens=10))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="b", prompt_tokens=100, completion_tokens=10))
    models.load_user_config("u", {**experiment("race", A, B), "defaults": {"costLimit": 10}})
    # both answer at once: now and then the second has finished before it could be cancelled
    # (how often depends on the machine's load, hence tries for up to 20 s)
    response = None
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        response = await models.complete("user:u:x", MESSAGES)
        if sorted(a.outcome for a in routing_of(response).attempts) == ["lost", "won"]:
            break
    routing = routing_of(response)
    assert sorted(a.outcome for a in routing.attempts) == ["lost", "won"]
    assert routing.cost_usd == pytest.approx(sum(a.cost_usd for a in routing.attempts))
    assert all(a.cost_usd > 0 for a in routing.attempts)


async def test_race_with_every_model_failing_raises_all_models_failed(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=400))
    fake_upstream.script("gpt-4.1-nano", Behavior(status=401))
    models.load_user_config("u", experiment("race", A, B))
    with pytest.raises(AllModelsFailedError) as info:
        await models.complete("user:u:x", MESSAGES)
    assert len(info.value.exceptions) == 2


async def test_hedge_does_not_fire_when_the_first_model_is_fast(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="fast", latency_ms=5))
    await models.complete(A, MESSAGES)  # the first call of a process pays litellm's client set-up
    # a delay no answer of a 5 ms model comes near, however loaded the machine
    models.load_user_config("u", experiment("race", A, B, hedgeAfter=30_000))
    response = await models.complete("user:u:x", MESSAGES)
    assert (routing_of(response).winner, routing_of(response).hedges) == (A, 0)
    assert fake_upstream.call_count("gpt-4.1-nano") == 0


async def test_hedge_starts_the_next_model_after_the_delay_and_the_faster_wins(models, fake_upstream):
    fake_upstream.script(
        "gpt-4.1-mini", [Behavior(content="warm-up"), Behavior(content="slow", latency_ms=3000)]
    )
    fake_upstream.script("gpt-4.1-nano", Behavior(content="hedge", latency_ms=5))
    await models.complete(A, MESSAGES)  # the first call of a process pays litellm's client set-up
    models.load_user_config("u", experiment("race", A, B, hedgeAfter=150))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "hedge"
    routing = routing_of(response)
    slow, hedge = routing.attempts
    assert (slow.model, slow.outcome, hedge.model, hedge.outcome) == (A, "cancelled", B, "won")
    assert (routing.hedges, routing.hedge_delay_ms) == (1, 150)
    # the delay runs from A's launch, which is after the request started and before A's task
    # first ran (its `started_ms`, later on a busy loop): so only this bound holds on any machine
    assert hedge.started_ms >= 150
    assert fake_upstream.call_count("gpt-4.1-nano") == 1


async def test_hedge_starts_the_next_model_at_once_when_the_first_fails(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=400))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="next"))
    models.load_user_config("u", experiment("race", A, B, hedgeAfter=30_000))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "next"
    routing = routing_of(response)
    assert [(a.model, a.outcome) for a in routing.attempts] == [(A, "failed"), (B, "won")]
    assert routing.hedges == 0  # B started on A's failure: the hedge delay never passed


# -- deadlines ------------------------------------------------------------------------------------


async def test_deadline_expiry_mid_race_cancels_everything_and_lists_what_was_tried(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    fake_upstream.script("gpt-4.1-nano", Behavior(hang=True))
    models.load_user_config("u", experiment("race", A, B, timeout=300))
    started = time.monotonic()
    with pytest.raises(StrategyTimeoutError) as info:
        await models.complete("user:u:x", MESSAGES)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert {a.model: a.outcome for a in info.value.attempts} == {A: "cancelled", B: "cancelled"}
    assert "gpt-4.1-nano: cancelled" in str(info.value)
    assert lucky_tasks() == set()
    await fake_upstream.await_idle(timeout=5)


async def test_deadline_bounds_retries(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=503, latency_ms=50))
    models.load_user_config("u", experiment("first", A, timeout=400, retries=10))
    started = time.monotonic()
    with pytest.raises((StrategyTimeoutError, AllModelsFailedError)):
        await models.complete("user:u:x", MESSAGES)
    assert time.monotonic() - started < 1.5


# -- consensus ------------------------------------------------------------------------------------


async def test_consensus_two_of_three_wins_with_votes_and_agreement(models, fake_upstream):
    # the dissenter answers first, so it is counted before two agreeing answers decide
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris", latency_ms=200))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Lyon"))
    fake_upstream.script("gpt-4o-mini", Behavior(content="  paris. ", latency_ms=200))
    models.load_user_config("u", experiment("consensus", A, B, C))
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    assert response.choices[0].message.content == "Paris"
    assert routing.winner == A
    assert routing.agreement == pytest.approx(2 / 3)
    assert sorted(routing.votes.values()) == [1, 2]
    assert routing.answers == {A: "Paris", B: "Lyon", C: "  paris. "}


async def test_consensus_without_quorum_raises_consensus_error(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Lyon"))
    fake_upstream.script("gpt-4o-mini", Behavior(content="Nice"))
    models.load_user_config("u", experiment("consensus", A, B, C))
    with pytest.raises(ConsensusError) as info:
        await models.complete("user:u:x", MESSAGES)
    assert info.value.agreement == pytest.approx(1 / 3)


async def test_consensus_min_agreement_can_demand_unanimity(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Paris"))
    fake_upstream.script("gpt-4o-mini", Behavior(content="Lyon"))
    models.load_user_config("u", experiment("consensus", A, B, C, minAgreement=1.0))
    with pytest.raises(ConsensusError):
        await models.complete("user:u:x", MESSAGES)


async def test_consensus_tie_goes_to_provider_order(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Lyon"))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="Paris"))
    models.load_user_config("u", experiment("consensus", A, B, minAgreement=0.5))
    response = await models.complete("user:u:x", MESSAGES)
    assert response.choices[0].message.content == "Lyon"


async def test_consensus_counts_a_failed_model_against_agreement(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    fake_upstream.script("gpt-4.1-nano", Behavior(status=400))
    models.load_user_config("u", experiment("consensus", A, B))
    with pytest.raises(ConsensusError):  # 1 of 2 is not a strict majority
        await models.complete("user:u:x", MESSAGES)


# -- cost and budget ------------------------------------------------------------------------------


async def test_max_cost_skips_a_model_whose_estimate_exceeds_it(models, fake_upstream):
    expensive, cheap = "openai/gpt-4.1", "openai/gpt-4.1-nano"
    models.load_user_config("u", experiment("fallback", expensive, cheap, maxCost=0.0005))
    response = await models.complete("user:u:x", MESSAGES, max_tokens=200)
    routing = routing_of(response)
    assert [(a.model, a.outcome) for a in routing.attempts] == [(expensive, "skipped"), (cheap, "won")]
    assert "exceeds maxCost" in routing.attempts[0].error
    assert fake_upstream.call_count("gpt-4.1") == 0


async def test_max_cost_below_every_model_raises_no_models_available(models):
    models.load_user_config("u", experiment("first", "openai/gpt-4.1", maxCost=0.0000001))
    with pytest.raises(NoModelsAvailableError, match="exceeds maxCost"):
        await models.complete("user:u:x", MESSAGES, max_tokens=100)


async def test_budget_is_never_exceeded_by_50_concurrent_requests(models, fake_upstream):
    fake_upstream.script(
        "gpt-4.1-mini", Behavior(content="ok", latency_ms=20, prompt_tokens=14, completion_tokens=50)
    )
    limit = 0.002
    models.load_user_config("u", {**experiment("first", A), "defaults": {"costLimit": limit}})
    results = await asyncio.gather(
        *(models.complete("user:u:x", MESSAGES, max_tokens=50) for _ in range(50)), return_exceptions=True
    )
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(succeeded) + len(refused) == 50
    assert succeeded and refused
    spent = models.store.spent("u")
    assert spent <= limit
    assert spent == pytest.approx(sum(routing_of(r).cost_usd for r in succeeded))
    assert fake_upstream.call_count("gpt-4.1-mini") == len(succeeded)
    assert "spent" in str(refused[0]) and "limit" in str(refused[0])


async def test_max_concurrent_holds_at_its_limit(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="ok", latency_ms=40))
    models.load_user_config("u", {**experiment("first", A), "defaults": {"maxConcurrent": 3}})
    results = await asyncio.gather(*(models.complete("user:u:x", MESSAGES) for _ in range(12)))
    assert len(results) == 12
    assert fake_upstream.max_in_flight("gpt-4.1-mini") == 3


async def test_max_concurrent_excess_fails_clearly_at_the_deadline(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(hang=True))
    config = {
        "experiments": {
            "long": {"providers": [A], "timeout": 10000},
            "short": {"providers": [A], "timeout": 200},
        },
        "defaults": {"maxConcurrent": 1},
    }
    models.load_user_config("u", config)
    holder = asyncio.create_task(models.complete("user:u:long", MESSAGES))
    await fake_upstream.await_calls(1)
    started = time.monotonic()
    with pytest.raises(ConcurrencyLimitError, match="already has 1 requests in flight"):
        await models.complete("user:u:short", MESSAGES)
    assert 0.2 <= time.monotonic() - started < 1.5
    assert fake_upstream.call_count() == 1
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert models.limiter.in_flight("u") == 0
