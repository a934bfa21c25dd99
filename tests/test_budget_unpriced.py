"""A `costLimit` is never bypassed by a model litellm cannot price.

litellm prices a model missing from its cost map (any cloud model newer than the bundled map) at
$0 without complaint, so a budget would reserve nothing for it and never stop it. A user with a
`costLimit` may therefore not name such a model: the config is refused when it is loaded (or
validated), a spec given at call time is refused before anything is sent, and a model priced with
`litellm.register_model` is accepted and billed. Without a budget the call still works, with one
warning per model. Every call goes over real HTTP to the fake upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from lucky_litellm import ConfigError, UnknownUserError, UnpricedModelError, routing_of
from lucky_litellm.cli import main

from .conftest import MESSAGES, PLANTED_KEYS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PRICED = "openai/gpt-4.1-mini"


def user(*providers: str, **defaults: object) -> dict:
    return {"experiments": {"x": {"strategy": "first", "providers": list(providers)}}, "defaults": defaults}


def test_a_budgeted_experiment_naming_an_unpriced_model_is_refused_at_load(models, fake_upstream):
    with pytest.raises(ConfigError) as caught:
        models.load_user_config("b", user("openai/gpt-9-ultra", costLimit=0.01))
    (issue,) = caught.value.issues
    assert issue.path == "experiments.x.providers.0"
    assert "'openai/gpt-9-ultra'" in issue.message and "costLimit" in issue.message
    assert "litellm.register_model" in issue.message and "input_cost_per_token" in issue.message
    with pytest.raises(UnknownUserError):  # nothing half-applied
        models.user_config("b")
    assert fake_upstream.call_count() == 0


def test_validate_names_the_file_line_and_the_unpriced_model(tmp_path):
    path = tmp_path / "unk.yaml"
    path.write_text(
        "defaults:\n  costLimit: 0.01\nexperiments:\n  x:\n    strategy: first\n"
        "    providers:\n      - openai/gpt-9-ultra\n"
    )
    for env in ({}, dict(PLANTED_KEYS)):  # with or without the provider's key
        result = CliRunner(env={"OPENAI_API_KEY": None, **env}).invoke(main, ["validate", str(path)])
        assert result.exit_code == 1, result.output
        assert f"{path}:7" in result.output and "'openai/gpt-9-ultra'" in result.output
        assert "register_model" in result.output and "✓" not in result.output


def test_validate_accepts_an_unpriced_model_without_a_budget_and_local_models_with_one(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "experiments:\n  x:\n    providers: [openai/gpt-9-ultra]\n  y:\n    providers: [local/gpt-9-ultra]\n"
    )
    budgeted = tmp_path / "local.yaml"
    budgeted.write_text(
        "defaults:\n  costLimit: 0.01\nexperiments:\n  x:\n    providers: [local/gpt-9-ultra]\n"
    )
    result = CliRunner(env=dict(PLANTED_KEYS)).invoke(main, ["validate", str(path), str(budgeted)])
    assert result.exit_code == 0, result.output


async def test_a_budgeted_call_to_an_unpriced_spec_is_refused_before_anything_is_sent(models, fake_upstream):
    models.load_user_config("b", user(PRICED, costLimit=0.01))
    with pytest.raises(UnpricedModelError) as caught:
        await models.complete("openai/gpt-9-ultra-late", MESSAGES, user_id="b")
    assert caught.value.models == ["openai/gpt-9-ultra-late"]
    assert "register_model" in str(caught.value)
    assert fake_upstream.call_count() == 0
    assert models.store.spent("b") == 0.0
    answer = await models.complete("user:b:x", MESSAGES)  # the priced experiment still runs and bills
    assert routing_of(answer).cost_usd > 0
    assert models.store.spent("b") == pytest.approx(routing_of(answer).cost_usd)


async def test_without_a_budget_an_unpriced_model_is_called_with_one_warning(models, fake_upstream, caplog):
    model = "openai/gpt-9-ultra-unbudgeted"
    models.load_user_config("c", user(model))
    with caplog.at_level(logging.WARNING, logger="lucky_litellm"):
        for _ in range(2):
            answer = await models.complete("user:c:x", MESSAGES)
            assert answer.choices[0].message.content
            assert routing_of(answer).cost_usd == 0.0
    assert fake_upstream.call_count("gpt-9-ultra-unbudgeted") == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and model in r.getMessage()]
    assert len(warnings) == 1
    assert "no price" in warnings[0].getMessage()


@pytest.fixture
def registered() -> Iterator[str]:
    """A model unknown to litellm, priced by the user with `litellm.register_model`."""
    import litellm

    model = "openai/gpt-9-ultra-registered"
    litellm.register_model(
        {
            model: {
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
    )
    try:
        yield model
    finally:
        litellm.model_cost.pop(model, None)


async def test_a_model_priced_with_register_model_is_accepted_and_billed(models, registered):
    models.load_user_config("b", user(registered, costLimit=0.01))
    answer = await models.complete("user:b:x", MESSAGES)
    cost = routing_of(answer).cost_usd
    assert cost > 0
    assert models.store.spent("b") == pytest.approx(cost)
