"""Rollout paths through the registry: test users, percentages, the kill switch, the legacy call."""

from __future__ import annotations

import pytest

from lucky_litellm import rollout, routing_of, set_default_models
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES


@pytest.fixture
def flags(make_models):
    """The module-level rollout functions acting on a registry served by the fake upstream."""
    models = make_models(rollout={"percent": 0})
    set_default_models(models)
    yield models
    set_default_models(None)


def race_config() -> dict[str, object]:
    return {
        "experiments": {
            "fast": {"strategy": "race", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]}
        }
    }


async def test_a_user_outside_the_rollout_takes_the_legacy_path_with_exactly_one_call(flags, fake_upstream):
    flags.load_user_config("user-1", race_config())
    response = await rollout.complete("user:user-1:fast", MESSAGES, user_id="user-1")
    routing = routing_of(response)
    assert routing.rollout_path == "legacy"
    assert [a.model for a in routing.attempts] == ["openai/gpt-4.1-mini"]  # the experiment's first model
    assert fake_upstream.call_count() == 1


async def test_the_legacy_path_makes_one_call_even_when_it_fails(flags, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(status=503))
    with pytest.raises(Exception, match=r"503|ServiceUnavailable|InternalServer"):
        await rollout.complete("tier:medium", MESSAGES, user_id="user-1", max_retries=0)
    assert fake_upstream.call_count() == 1


async def test_a_test_user_takes_the_registry_path(flags, fake_upstream):
    flags.load_user_config("researcher-1", race_config())
    rollout.add_test_user("researcher-1")
    response = await rollout.complete("user:researcher-1:fast", MESSAGES, user_id="researcher-1")
    routing = routing_of(response)
    assert (routing.rollout_path, routing.strategy) == ("registry", "race")
    assert rollout.is_enabled_for("researcher-1") and not rollout.is_enabled_for("someone-else")


async def test_the_kill_switch_sends_test_users_to_the_legacy_path(flags, fake_upstream):
    rollout.add_test_user("researcher-1")
    rollout.disable_models()
    response = await rollout.complete("tier:medium", MESSAGES, user_id="researcher-1")
    assert routing_of(response).rollout_path == "legacy"
    assert rollout.decide("researcher-1").reason == "killed"
    rollout.enable_models()
    assert rollout.is_enabled_for("researcher-1")


async def test_legacy_path_maps_each_spec_to_its_concrete_model(flags):
    flags.load_user_config("u", race_config())
    assert flags.legacy_target("tier:medium").litellm_model == "openai/gpt-4.1-mini"
    assert flags.legacy_target("user:u:fast").spec == "openai/gpt-4.1-mini"
    assert flags.legacy_target("openai/gpt-4o-mini").spec == "openai/gpt-4o-mini"


def test_rollout_percent_at_100_enables_everyone_and_status_reports_it(flags):
    rollout.set_rollout_percent(100)
    assert rollout.is_enabled_for("anyone")
    status = rollout.rollout_status()
    assert (status["enabled"], status["percent"]) == (True, 100)


@pytest.mark.parametrize("bad", [-1, 100.5, float("nan"), "ten"])
def test_invalid_rollout_percent_is_refused_and_nothing_changes(flags, bad):
    before = rollout.rollout_status()["percent"]
    with pytest.raises(ValueError):
        rollout.set_rollout_percent(bad)
    assert rollout.rollout_status()["percent"] == before


# -- the migration plan (DESIGN.md, "Rollout") ------------------------------------------------

USERS = [f"user-{n}" for n in range(400)]


def share_on_registry() -> float:
    return sum(rollout.is_enabled_for(user) for user in USERS) / len(USERS)


def test_enable_models_after_a_gradual_phase_is_the_full_rollout(flags):
    """Phase 4 after phase 2: `enable_models()` used to keep the 25 %, leaving 3 users in 4 out."""
    rollout.set_rollout_percent(25)
    assert 0.15 < share_on_registry() < 0.35

    rollout.enable_models()

    assert share_on_registry() == 1.0
    assert rollout.rollout_status()["percent"] == 100


def test_set_rollout_percent_after_a_rollback_resumes_the_gradual_phase(flags):
    rollout.enable_models()
    rollout.disable_models()
    assert share_on_registry() == 0.0

    rollout.set_rollout_percent(10)

    assert 0.03 < share_on_registry() < 0.2
    assert rollout.rollout_status()["enabled"] is True


def test_disable_models_after_a_full_rollout_beats_test_users(flags):
    rollout.add_test_user("researcher-1")
    rollout.enable_models()
    rollout.disable_models()

    assert share_on_registry() == 0.0
    assert rollout.decide("researcher-1").reason == "killed"


def test_raising_the_share_only_adds_users(flags):
    rollout.set_rollout_percent(10)
    before = {user for user in USERS if rollout.is_enabled_for(user)}
    rollout.set_rollout_percent(50)
    after = {user for user in USERS if rollout.is_enabled_for(user)}
    assert before < after


def test_a_user_id_with_a_lone_surrogate_gets_a_stable_decision(flags):
    """A JSON body may carry "\\ud800"; hashing it used to raise UnicodeEncodeError."""
    rollout.set_rollout_percent(50)
    user = "user-\ud800"

    first = rollout.decide(user)

    assert first == rollout.decide(user)
    assert first.reason in ("percent", "outside_percent")


def test_cli_follows_the_migration_plan_on_a_shared_store():
    """`lucky-litellm rollout percent 25` then `rollout enable`: everyone, as another process sees it."""
    from click.testing import CliRunner

    from lucky_litellm.cli import main
    from lucky_litellm.state import state_from_url
    from lucky_litellm.testing.redis_server import RedisServer

    def cli(*args: str) -> None:
        set_default_models(None)  # each command is a fresh CLI process
        result = runner.invoke(main, ["rollout", *args])
        assert result.exit_code == 0, result.output

    with RedisServer() as server:
        runner = CliRunner(env={"LUCKY_STATE_URL": server.url})
        other = state_from_url(server.url)
        try:
            cli("percent", "25")
            cli("enable")
            assert (other.flags.read().enabled, other.flags.read().percent) == (True, 100)
            cli("disable")
            assert other.flags.read().enabled is False
            cli("percent", "10")
            assert (other.flags.read().enabled, other.flags.read().percent) == (True, 10)
        finally:
            other.close()
            set_default_models(None)
