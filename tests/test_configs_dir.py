"""Every shipped config in configs/ loads, validates and shows what it claims to show."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lucky_litellm.config import UserConfig, load_models_config, load_user_config, load_user_configs
from lucky_litellm.spec import parse_spec

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NOT_OURS = {"proxy.yaml"}  # a LiteLLM proxy config, validated by the proxy tests
MODELS_FILE = CONFIGS / "models.yaml"
USER_FILES = sorted(p for p in CONFIGS.glob("*.yaml") if p.name not in NOT_OURS and p != MODELS_FILE)
EXPERIMENT_COUNTS = {
    "complete-example.yaml": 10,
    "researcher-example.yaml": 4,
    "production-example.yaml": 4,
    "local-dev-example.yaml": 3,
}


def test_every_expected_config_is_present() -> None:
    names = {path.name for path in USER_FILES}

    assert {*EXPERIMENT_COUNTS, "example.yaml"} <= names
    assert MODELS_FILE.is_file()


@pytest.mark.parametrize("path", USER_FILES, ids=lambda path: path.name)
def test_user_config_validates(path: Path) -> None:
    config = load_user_config(path)

    assert config.experiments
    assert config.default_experiment in config.experiments


@pytest.mark.parametrize(("name", "count"), EXPERIMENT_COUNTS.items())
def test_experiment_count(name: str, count: int) -> None:
    assert len(load_user_config(CONFIGS / name).experiments) == count


def test_models_config_and_every_referenced_user_file_validate() -> None:
    config = load_models_config(MODELS_FILE)
    users = load_user_configs(config)

    assert set(config.providers) == {"openai", "anthropic", "openrouter", "groq", "local"}
    assert config.providers["local"].litellm_provider == "openai"
    assert config.providers["local"].api_base_env == "LUCKY_LOCAL_API_BASE"  # on only when set
    assert {Path(str(entry)).name for entry in config.users.values()} == {path.name for path in USER_FILES}
    assert all(isinstance(user, UserConfig) for user in users.values())


def test_complete_example_covers_every_strategy_and_extra() -> None:
    experiments = load_user_config(CONFIGS / "complete-example.yaml").experiments.values()

    assert {experiment.strategy for experiment in experiments} == {"first", "race", "fallback", "consensus"}
    assert any(e.strategy == "race" and e.hedge_after for e in experiments)
    assert any(e.strategy == "consensus" and e.min_agreement for e in experiments)
    assert any(e.strategy == "fallback" and len(e.providers) >= 3 for e in experiments)
    assert any(parse_spec(spec).kind == "tier" for e in experiments for spec in e.providers)
    providers = {parse_spec(spec).provider for e in experiments for spec in e.providers}
    assert {"openai", "anthropic", "openrouter", "groq"} <= providers


def test_local_dev_example_uses_the_local_provider() -> None:
    experiments = load_user_config(CONFIGS / "local-dev-example.yaml").experiments.values()

    assert all(parse_spec(e.providers[0]).provider == "local" for e in experiments)


def _concrete_cloud_models() -> list[str]:
    specs: set[str] = set()
    for path in USER_FILES:
        for experiment in load_user_config(path).experiments.values():
            specs.update(experiment.providers)
    for tier in load_models_config(MODELS_FILE).tiers.values():
        specs.update(tier.models or [])
        specs.update([tier.model] if tier.model else [])
    return sorted(s for s in specs if parse_spec(s).kind == "model" and parse_spec(s).provider != "local")


@pytest.mark.parametrize("model", _concrete_cloud_models())
def test_example_model_is_known_to_litellm(model: str) -> None:
    """The examples must name real models, so maxCost estimates and cost tracking work on them."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: the bundled cost map
    import litellm

    info = litellm.get_model_info(model)

    assert info["input_cost_per_token"] is not None


KEYS = {
    name: "sk-x" for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY")
}


def test_the_local_provider_joins_nothing_until_its_url_is_set() -> None:
    """configs/README.md used to claim only `local/...` specs reach it, while models.yaml's fixed
    apiBase put local/llama3.2 into every fast-tier race."""
    from lucky_litellm import Models

    without = Models(load_models_config(MODELS_FILE), environ=KEYS)
    with_url = Models(
        load_models_config(MODELS_FILE), environ={**KEYS, "LUCKY_LOCAL_API_BASE": "http://h/v1"}
    )

    assert not any(model.startswith("local/") for model in without.resolve("tier:fast").models)
    assert "local/llama3.2" in with_url.resolve("tier:fast").models  # as configs/README.md says


def test_a_three_entry_consensus_has_three_voters() -> None:
    """`tier:low` in it would add one voter per enabled provider (configs/README.md says so)."""
    from lucky_litellm import Models

    models = Models(load_models_config(MODELS_FILE), environ={**KEYS, "LUCKY_LOCAL_API_BASE": "http://h/v1"})
    models.load_user_config("demo", CONFIGS / "complete-example.yaml")

    assert len(models.resolve("user:demo:majority-vote").models) == 3
