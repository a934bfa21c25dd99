"""`defaultTier`, `trackPerformance` and `trackCost`: registry-wide switches of models.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lucky_litellm import ConfigError, routing_of
from lucky_litellm.cli import main
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PRICED = Behavior(content="ok", prompt_tokens=1000, completion_tokens=1000)


async def test_a_call_without_a_spec_runs_the_default_tier(make_models, fake_upstream):
    models = make_models(defaultTier="nano")
    response = await models.complete(None, MESSAGES)
    routing = routing_of(response)
    assert routing.spec == "tier:nano"
    assert routing.winner in models.resolve("tier:nano").models


async def test_model_without_a_spec_is_bound_to_the_default_tier(make_models, fake_upstream):
    models = make_models(defaultTier="high")
    response = await models.model()(MESSAGES)
    assert routing_of(response).spec == "tier:high"


def test_an_unknown_default_tier_fails_when_the_registry_is_built(make_models):
    with pytest.raises(ConfigError, match=r"defaultTier.*unknown tier 'meduim'.*did you mean 'medium'"):
        make_models(defaultTier="meduim")


async def test_track_performance_off_records_no_stats(make_models):
    models = make_models(trackPerformance=False)
    await models.complete("tier:medium", MESSAGES)
    assert models.stats()["models"] == {}


async def test_track_cost_off_prices_nothing(make_models, fake_upstream):
    fake_upstream.default = PRICED
    models = make_models(trackCost=False)
    response = await models.complete("tier:medium", MESSAGES)
    assert routing_of(response).cost_usd == 0.0


async def test_track_cost_on_prices_the_answer(make_models, fake_upstream):
    fake_upstream.default = PRICED
    response = await make_models().complete("tier:medium", MESSAGES)
    assert routing_of(response).cost_usd > 0.0


async def test_a_cost_limit_keeps_cost_accounting_on_for_that_user(make_models, fake_upstream):
    fake_upstream.default = PRICED
    user = {"experiments": {"main": {"providers": ["openai/gpt-4.1-mini"]}}, "defaults": {"costLimit": 5}}
    models = make_models(trackCost=False, users={"alice": user})
    response = await models.complete("user:alice", MESSAGES)
    assert routing_of(response).cost_usd > 0.0
    assert models.store.spent("alice") == pytest.approx(routing_of(response).cost_usd)


def test_validate_says_a_cost_limit_forces_cost_accounting_on(tmp_path: Path):
    config = tmp_path / "models.yaml"
    config.write_text(
        "trackCost: false\n"
        "users:\n"
        "  alice:\n"
        "    experiments: {main: {providers: [openai/gpt-4.1-mini]}}\n"
        "    defaults: {costLimit: 5}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert "users.alice: costLimit forces cost accounting on for this user" in result.output


def test_validate_reports_an_unknown_default_tier(tmp_path: Path):
    config = tmp_path / "models.yaml"
    config.write_text("defaultTier: nosuch\n")
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 1
    assert "defaultTier" in result.output
