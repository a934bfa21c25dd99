"""The registry: spec resolution, typed errors, user configs, provider updates, the local provider."""

from __future__ import annotations

import asyncio

import pytest

from lucky_litellm import (
    ConfigError,
    Models,
    ModelSpecError,
    NoModelsAvailableError,
    UnknownExperimentError,
    UnknownTierError,
    UnknownUserError,
    routing_of,
)
from lucky_litellm.testing import Behavior, FakeUpstream

from .conftest import MESSAGES, PLANTED_KEYS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RESEARCHER = "configs/researcher-example.yaml"


def test_resolve_a_concrete_model_is_first_on_that_model(models):
    plan = models.resolve("openai/gpt-4.1-mini")
    assert (plan.strategy, plan.models, plan.targets[0].litellm_model) == (
        "first",
        ["openai/gpt-4.1-mini"],
        "openai/gpt-4.1-mini",
    )


def test_resolve_a_tier_and_its_alias(models):
    assert models.resolve("tier:medium").models == ["openai/gpt-4.1-mini"]
    assert models.resolve("tier:fast").models == models.resolve("tier:nano").models


def test_resolve_a_user_experiment_from_the_example_yaml(models):
    config = models.load_user_config("user-123", RESEARCHER)
    name = config.default_experiment
    plan = models.resolve("user:user-123")
    experiment = config.experiments[name]
    assert (plan.experiment, plan.strategy) == (name, experiment.strategy)
    assert plan.timeout == pytest.approx(experiment.timeout or config.defaults.timeout or 60000)
    assert models.resolve(f"user:user-123:{name}").models == plan.models


def test_user_config_accepts_yaml_text_and_dicts(models):
    models.load_user_config("a", "experiments:\n  x:\n    providers: [openai/gpt-4.1-mini]\n")
    models.load_user_config("b", {"experiments": {"x": {"providers": ["openai/gpt-4.1-nano"]}}})
    assert models.resolve("user:a:x").models == ["openai/gpt-4.1-mini"]
    assert models.resolve("user:b").models == ["openai/gpt-4.1-nano"]


def test_a_bad_user_config_leaves_the_previous_one_in_place(models):
    models.load_user_config("a", {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"]}}})
    with pytest.raises(ConfigError, match="stratgy"):
        models.load_user_config(
            "a", {"experiments": {"x": {"stratgy": "race", "providers": ["openai/gpt-4.1"]}}}
        )
    assert models.resolve("user:a:x").models == ["openai/gpt-4.1-mini"]


@pytest.mark.parametrize(
    ("spec", "error", "text"),
    [
        ("tier:mediun", UnknownTierError, "did you mean 'medium'"),
        ("user:nobody:x", UnknownUserError, "no user config loaded for user 'nobody'"),
        ("user:u:fsat", UnknownExperimentError, "did you mean 'fast'"),
        ("opnai/gpt-4.1-mini", ModelSpecError, "did you mean 'openai'"),
        ("tier:", ModelSpecError, "missing tier name"),
    ],
)
def test_bad_specs_get_typed_errors_that_say_what_is_wrong(models, spec, error, text):
    models.load_user_config("u", {"experiments": {"fast": {"providers": ["openai/gpt-4.1-mini"]}}})
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        models.resolve(spec)


async def test_complete_rejects_a_bad_spec_before_any_call(models, fake_upstream):
    with pytest.raises(ModelSpecError):
        await models.complete("tier:", MESSAGES)
    assert fake_upstream.call_count() == 0


def test_a_disabled_provider_is_skipped_and_nothing_left_is_a_clear_error(make_models):
    models = make_models(providers={"openai": {"enabled": False}})
    with pytest.raises(NoModelsAvailableError, match="openai"):
        models.resolve("openai/gpt-4.1-mini")


async def test_update_provider_disables_it_for_new_requests(models, fake_upstream):
    models.load_user_config(
        "u",
        {
            "experiments": {
                "x": {"strategy": "fallback", "providers": ["groq/openai/gpt-oss-20b", "openai/gpt-4.1-mini"]}
            }
        },
    )
    models.update_provider("groq", {"enabled": False})
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    assert [(a.model, a.outcome) for a in routing.attempts] == [
        ("groq/openai/gpt-oss-20b", "skipped"),
        ("openai/gpt-4.1-mini", "won"),
    ]
    assert fake_upstream.call_count("openai/gpt-oss-20b") == 0


def test_update_provider_is_validated_and_atomic(models):
    before = models.providers
    with pytest.raises(ConfigError, match=r"providers\.groq\.enabled"):
        models.update_provider("groq", {"enabled": "sometimes"})
    assert models.providers is before


async def test_provider_switch_under_concurrent_load_fails_no_request(make_models, fake_upstream):
    """Requests in flight keep the snapshot they started with; new ones see the new one."""
    fake_upstream.script("gpt-4.1-mini", Behavior(content="old", latency_ms=300))
    models = make_models()
    with FakeUpstream() as replacement:
        replacement.script("gpt-4.1-mini", Behavior(content="new"))
        in_flight = [asyncio.create_task(models.complete("openai/gpt-4.1-mini", MESSAGES)) for _ in range(20)]
        await fake_upstream.await_calls(20)
        models.update_provider("openai", {"apiBase": replacement.base_url})
        later = [asyncio.create_task(models.complete("openai/gpt-4.1-mini", MESSAGES)) for _ in range(20)]
        results = await asyncio.gather(*in_flight, *later)
    answers = [r.choices[0].message.content for r in results]
    assert answers == ["old"] * 20 + ["new"] * 20
    assert (fake_upstream.call_count(), replacement.call_count()) == (20, 20)


async def test_local_provider_answers_through_an_openai_compatible_api_base(fake_upstream):
    fake_upstream.script("llama3.2", Behavior(content="local answer", prompt_tokens=5, completion_tokens=2))
    models = Models({"providers": {"local": {"apiBase": fake_upstream.base_url}}}, environ={})
    response = await models.complete("local/llama3.2", MESSAGES)
    routing = routing_of(response)
    assert response.choices[0].message.content == "local answer"
    assert routing.cost_usd == 0
    call = fake_upstream.calls[0]
    assert call.headers.get("Authorization") == "Bearer sk-local"  # never the real OpenAI key


def test_models_alias_returns_a_bound_callable(models):
    bound = models.model("tier:medium", max_tokens=5)
    assert bound.args == ("tier:medium",) and bound.keywords == {"max_tokens": 5}


def test_complete_sync_works_from_plain_code(models, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="sync"))
    response = models.complete_sync("openai/gpt-4.1-mini", MESSAGES)
    assert response.choices[0].message.content == "sync"


async def test_complete_sync_refuses_a_running_loop(models):
    with pytest.raises(RuntimeError, match="await complete"):
        models.complete_sync("openai/gpt-4.1-mini", MESSAGES)


def test_models_yaml_loads_with_every_user(monkeypatch):
    from lucky_litellm import load_models_config

    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEYS["OPENAI_API_KEY"])
    monkeypatch.setenv("LUCKY_LOCAL_API_BASE", "http://127.0.0.1:11434/v1")  # user `dev` runs local models
    models = Models(load_models_config("configs/models.yaml"))
    assert models.users
    for user_id in models.users:
        assert models.resolve(f"user:{user_id}").models


def test_attempt_timeout_is_read_from_experiments_and_tiers(make_models):
    models = make_models(tiers={"medium": {"attemptTimeout": 1500}})
    experiment = {"strategy": "fallback", "providers": ["tier:nano"], "attemptTimeout": 250}
    models.load_user_config("u", {"experiments": {"x": experiment}})
    assert models.resolve("user:u:x").describe()["attempt_timeout_ms"] == 250
    assert models.resolve("tier:medium").attempt_timeout_s == 1.5
    assert models.resolve("tier:nano").attempt_timeout_s is None


def test_resolve_shows_the_derived_attempt_budget(models):
    models.load_user_config(
        "u",
        {
            "experiments": {
                "x": {
                    "strategy": "fallback",
                    "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"],
                    "timeout": 2000,
                }
            }
        },
    )
    assert models.resolve("user:u:x").describe()["attempt_budget"] == (
        "an equal share of the time left per model (1000 ms for the first)"
    )
    assert (
        models.resolve("openai/gpt-4.1-mini").call_budget_s
        == models.resolve("openai/gpt-4.1-mini").timeout_s / 2
    )
