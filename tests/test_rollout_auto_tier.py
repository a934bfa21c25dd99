"""`autoTier` and `get_model`: the rollout wrapper runs concrete names as their tier on the registry path."""

from __future__ import annotations

import pytest

from lucky_litellm import Models, ModelSpecError, routing_of
from lucky_litellm.rollout import Rollout
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

RACE_MEDIUM = {"medium": {"strategy": "race", "models": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]}}


def build(fake_upstream, **rollout_options) -> Rollout:
    config = upstream_config(
        fake_upstream, tiers=RACE_MEDIUM, rollout={"percent": 0, "testUsers": ["on"], **rollout_options}
    )
    return Rollout(Models(config, environ=dict(PLANTED_KEYS)))


async def test_a_concrete_model_a_tier_maps_to_runs_as_that_tier_on_the_registry_path(fake_upstream):
    response = await build(fake_upstream).complete("openai/gpt-4.1-mini", MESSAGES, user_id="on")
    routing = routing_of(response)
    assert (routing.spec, routing.strategy, routing.rollout_path) == ("tier:medium", "race", "registry")


async def test_auto_tier_off_keeps_the_concrete_model(fake_upstream):
    rollout = build(fake_upstream, autoTier=False)
    response = await rollout.complete("openai/gpt-4.1-mini", MESSAGES, user_id="on")
    routing = routing_of(response)
    assert (routing.spec, routing.strategy, routing.models) == (
        "openai/gpt-4.1-mini",
        "first",
        ["openai/gpt-4.1-mini"],
    )


async def test_the_legacy_path_keeps_the_concrete_model(fake_upstream):
    response = await build(fake_upstream).complete("openai/gpt-4.1-mini", MESSAGES, user_id="off")
    routing = routing_of(response)
    assert (routing.rollout_path, routing.models) == ("legacy", ["openai/gpt-4.1-mini"])
    assert fake_upstream.call_count() == 1


async def test_a_model_no_tier_maps_to_runs_as_itself(fake_upstream):
    response = await build(fake_upstream).complete("openai/gpt-4o", MESSAGES, user_id="on")
    assert (routing_of(response).spec, routing_of(response).strategy) == ("openai/gpt-4o", "first")


async def test_get_model_is_bound_to_the_registry_path_for_a_rollout_user(fake_upstream):
    call = build(fake_upstream).get_model("openai/gpt-4.1-mini", user_id="on", request_id="r-1")
    routing = routing_of(await call(MESSAGES))
    assert (routing.rollout_path, routing.spec, routing.request_id) == ("registry", "tier:medium", "r-1")


async def test_get_model_is_bound_to_the_legacy_path_for_everyone_else(fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="legacy"))
    call = build(fake_upstream).get_model("openai/gpt-4.1-mini", user_id="off")
    response = await call(MESSAGES)
    assert (routing_of(response).rollout_path, response.choices[0].message.content) == ("legacy", "legacy")


async def test_get_model_keeps_its_path_when_the_flags_change(fake_upstream):
    rollout = build(fake_upstream)
    call = rollout.get_model("openai/gpt-4.1-mini", user_id="on")
    rollout.disable()
    assert routing_of(await call(MESSAGES)).rollout_path == "registry"


def test_get_model_refuses_a_bad_spec_at_once(fake_upstream):
    with pytest.raises(ModelSpecError):
        build(fake_upstream).get_model("not a spec", user_id="on")


async def test_a_model_of_another_providers_tier_runs_as_that_tier_with_the_active_provider(fake_upstream):
    config = upstream_config(fake_upstream, provider="groq", rollout={"testUsers": ["on"], "percent": 0})
    rollout = Rollout(Models(config, environ=dict(PLANTED_KEYS)))
    response = await rollout.complete("openai/gpt-4.1-mini", MESSAGES, user_id="on")
    routing = routing_of(response)
    assert routing.spec == "tier:medium"
    assert routing.winner is not None and routing.winner.startswith("groq/")


async def test_the_tier_chosen_for_a_concrete_model_is_on_the_request_span(fake_upstream):
    from .test_telemetry import _traced

    traced = _traced()
    config = upstream_config(fake_upstream, tiers=RACE_MEDIUM, rollout={"percent": 0, "testUsers": ["on"]})
    rollout = Rollout(Models(config, environ=dict(PLANTED_KEYS), telemetry=traced.telemetry))
    await rollout.complete("openai/gpt-4.1-mini", MESSAGES, user_id="on")
    attributes = traced.span("lucky.complete").attributes or {}
    assert (attributes["lucky.spec"], attributes["lucky.strategy"]) == ("tier:medium", "race")
