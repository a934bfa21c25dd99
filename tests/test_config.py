"""Config schemas and YAML loading: every mistake a new user makes gets a precise, one-screen error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lucky_litellm.config import (
    ExperimentConfig,
    ModelResult,
    ModelsConfig,
    Result,
    RolloutConfig,
    UserConfig,
    load_models_config,
    load_user_config,
    load_user_configs,
    load_yaml,
    safe_validate_models_config,
    safe_validate_user_config,
    validate_models_config,
    validate_user_config,
)
from lucky_litellm.errors import ConfigError, ConfigIssue
from lucky_litellm.routing import Routing, attach_routing

# litellm's response types trip a pydantic>=2.12 warning when their schema is first built.
LITELLM_SCHEMA_WARNING = pytest.mark.filterwarnings("ignore:Item .* `ReadOnly` qualifier:UserWarning")

GOOD = """\
name: "My Config"
experiments:
  fast:
    strategy: race
    providers:
      - openrouter/google/gemini-2.5-flash-lite
      - groq/openai/gpt-oss-20b
    timeout: 10000
    maxCost: 0.01
defaults:
  experiment: fast
  maxConcurrent: 50
  timeout: 30000
  costLimit: 100.00
performanceTracking: true
"""


def write(tmp_path: Path, text: str, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def user_error(tmp_path: Path, text: str) -> ConfigError:
    return config_error(load_user_config, write(tmp_path, text))


def config_error(function: Callable[..., object], *args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        function(*args, **kwargs)
    return info.value


def only_issue(error: ConfigError) -> ConfigIssue:
    assert len(error.issues) == 1, str(error)
    return error.issues[0]


# --------------------------------------------------------------------------- happy paths


def test_design_example_loads_with_every_field() -> None:
    config = load_user_config(GOOD)

    fast = config.experiments["fast"]
    assert fast.strategy == "race"
    assert fast.providers == ["openrouter/google/gemini-2.5-flash-lite", "groq/openai/gpt-oss-20b"]
    assert fast.timeout == 10000
    assert fast.timeout_s == 10.0
    assert fast.max_cost == 0.01
    assert config.defaults.max_concurrent == 50
    assert config.defaults.cost_limit == 100.0
    assert config.defaults.timeout_s == 30.0
    assert config.default_experiment == "fast"


def test_snake_case_and_camel_case_keys_are_both_accepted() -> None:
    camel = {
        "experiments": {
            "a": {"providers": ["openai/gpt-4.1-mini"], "maxCost": 0.5, "hedgeAfter": 5, "strategy": "race"}
        },
        "defaults": {"costLimit": 3},
    }
    snake = {
        "experiments": {
            "a": {"providers": ["openai/gpt-4.1-mini"], "max_cost": 0.5, "hedge_after": 5, "strategy": "race"}
        },
        "defaults": {"cost_limit": 3},
    }

    assert validate_user_config(camel) == validate_user_config(snake)
    assert validate_user_config(snake).experiments["a"].hedge_after_s == 0.005


def test_default_experiment_falls_back_to_the_first_one() -> None:
    config = validate_user_config(
        {"experiments": {"one": {"providers": ["openai/gpt-4.1-nano"]}, "two": {"providers": ["tier:low"]}}}
    )

    assert config.default_experiment == "one"
    assert config.experiments["one"].strategy == "first"


def test_models_config_defaults() -> None:
    config = validate_models_config({})

    assert config.aliases == {"fast": "nano"}
    assert config.defaults.timeout == 60000
    assert config.defaults.timeout_s == 60.0
    assert config.defaults.retries == 2
    assert config.rollout.enabled is True
    assert config.rollout.percent == 100.0
    assert config.rollout.salt == "lucky"
    assert config.telemetry.capture_content is False
    assert config.telemetry.cost_alert_thresholds == [0.5, 0.8, 1.0]


def test_active_provider_comes_from_env_then_config_then_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUCKY_PROVIDER", raising=False)
    assert ModelsConfig().active_provider == "openai"
    assert ModelsConfig(provider="anthropic").active_provider == "anthropic"
    monkeypatch.setenv("LUCKY_PROVIDER", "groq")
    assert ModelsConfig().active_provider == "groq"
    assert ModelsConfig(provider="anthropic").active_provider == "groq"  # the environment over the file


def test_state_url_env_overrides_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCKY_STATE_URL", "redis://10.0.0.1:6379/1")

    assert (
        RolloutConfig(state_url="redis://127.0.0.1:6379/0").effective_state_url == "redis://10.0.0.1:6379/1"
    )


def test_cost_alert_thresholds_are_sorted_and_unique() -> None:
    config = validate_models_config({"telemetry": {"costAlertThresholds": [1.0, 0.5, 0.5, 2]}})

    assert config.telemetry.cost_alert_thresholds == [0.5, 1.0, 2.0]


def test_configs_are_immutable() -> None:
    config = validate_user_config({"experiments": {"a": {"providers": ["openai/gpt-4.1-nano"]}}})

    with pytest.raises(ValueError, match="frozen"):
        config.experiments["a"].strategy = "race"  # type: ignore[misc]


def test_already_validated_config_is_returned_unchanged() -> None:
    config = validate_user_config({"experiments": {"a": {"providers": ["openai/gpt-4.1-nano"]}}})

    assert validate_user_config(config) is config
    assert load_user_config(config) is config


# --------------------------------------------------------------------------- mistakes


def test_typo_key_suggests_the_right_key_with_its_line(tmp_path: Path) -> None:
    error = user_error(tmp_path, GOOD.replace("strategy: race", "stratgy: race"))

    issue = only_issue(error)
    assert issue.path == "experiments.fast.stratgy"
    assert issue.message == "unknown key 'stratgy' (did you mean 'strategy'?)"
    assert issue.line == 4
    assert issue.file == str(tmp_path / "user.yaml")
    assert f"{tmp_path / 'user.yaml'}:4: experiments.fast.stratgy" in str(error)


def test_snake_case_typo_is_answered_in_snake_case() -> None:
    error = config_error(validate_user_config, {"experiments": {"a": {"providers": ["x/y"], "max_cots": 1}}})

    assert only_issue(error).message == "unknown key 'max_cots' (did you mean 'max_cost'?)"


def test_unknown_key_without_close_match_lists_the_allowed_keys() -> None:
    error = config_error(
        validate_user_config, {"experiments": {"a": {"providers": ["x/y"]}}, "colour": "red"}
    )

    issue = only_issue(error)
    assert issue.path == "colour"
    assert "allowed: name, description, experiments, defaults, performanceTracking" in issue.message


def test_strategy_typo_lists_the_choices_and_suggests_one(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, GOOD.replace("strategy: race", "strategy: rase")))

    assert issue.path == "experiments.fast.strategy"
    assert issue.message == "must be one of first, race, fallback, consensus (did you mean 'race'?)"
    assert issue.line == 4


def test_wrong_type_names_the_expected_type(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, GOOD.replace("timeout: 10000", "timeout: 10s")))

    assert issue.path == "experiments.fast.timeout"
    assert issue.message == "expected a number (milliseconds, e.g. 10000), got string"
    assert issue.line == 8


def test_providers_given_as_a_string_hints_at_list_syntax() -> None:
    error = config_error(validate_user_config, {"experiments": {"a": {"providers": "openai/gpt-4.1"}}})

    assert only_issue(error).message == "expected a list, got string (write one item per '- ' line)"


def test_missing_providers_is_reported_at_the_experiment(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, "experiments:\n  fast:\n    strategy: race\n"))

    assert issue.path == "experiments.fast.providers"
    assert issue.message == "required, but missing"
    assert issue.line == 2


def test_default_experiment_must_exist_and_known_ones_are_listed(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, GOOD.replace("experiment: fast", "experiment: fsat")))

    assert issue.path == "defaults.experiment"
    assert issue.message == "'fsat' is not an experiment of this config; known: fast"
    assert issue.line == 11


def test_empty_file_is_an_empty_document_error(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, "# only a comment\n"))

    assert issue.message == "empty document"
    assert issue.file == str(tmp_path / "user.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    error = user_error(tmp_path, "experiments:\n  fast:\n    providers: [openai/gpt-4.1\n    timeout: 5\n")

    issue = only_issue(error)
    assert issue.message == (
        "YAML syntax error: while parsing a flow sequence, expected ',' or ']', but got ':' at column 12"
    )
    assert issue.file == str(tmp_path / "user.yaml")
    assert issue.line == 4
    assert "Traceback" not in str(error) and "yaml." not in str(error)


def test_tab_indentation_gets_a_hint() -> None:
    error = config_error(load_user_config, "experiments:\n\tfast: {}\n")

    assert "indent with spaces, not tabs" in only_issue(error).message


def test_non_mapping_document_is_rejected(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, "- openai/gpt-4.1\n- groq/openai/gpt-oss-20b\n"))

    assert issue.message == "expected a mapping at the top level, got list"
    assert issue.line == 1


def test_duplicate_key_is_an_error_not_last_one_wins(tmp_path: Path) -> None:
    text = """\
    experiments:
      fast:
        providers: [openai/gpt-4.1-nano]
      fast:
        providers: [openai/gpt-4.1]
    """
    issue = only_issue(user_error(tmp_path, text))

    assert issue.path == "experiments.fast"
    assert issue.message == "duplicate key 'fast' (first defined on line 2)"
    assert issue.line == 4


def test_bad_spec_in_providers_points_at_the_list_item(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, GOOD.replace("- groq/openai/gpt-oss-20b", "- groq/")))

    assert issue.path == "experiments.fast.providers.1"
    assert issue.message == "invalid model spec 'groq/': missing model name after provider 'groq'/"
    assert issue.line == 7


def test_user_spec_inside_an_experiment_is_rejected() -> None:
    error = config_error(
        validate_user_config,
        {"experiments": {"a": {"providers": ["tier:low", "user:bob:fast"]}}},
    )

    issue = only_issue(error)
    assert issue.path == "experiments.a.providers.1"
    assert "user: specs cannot be used inside an experiment" in issue.message


def test_negative_cost_is_rejected(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, GOOD.replace("maxCost: 0.01", "maxCost: -0.01")))

    assert (issue.path, issue.message, issue.line) == ("experiments.fast.maxCost", "must not be negative", 9)


def test_zero_timeout_is_rejected(tmp_path: Path) -> None:
    issue = only_issue(user_error(tmp_path, GOOD.replace("timeout: 10000", "timeout: 0")))

    assert (issue.path, issue.message, issue.line) == (
        "experiments.fast.timeout",
        "must be greater than 0",
        8,
    )


def test_hedge_after_on_a_non_race_strategy_is_rejected(tmp_path: Path) -> None:
    text = GOOD.replace("strategy: race", "strategy: fallback").replace("maxCost: 0.01", "hedgeAfter: 300")
    issue = only_issue(user_error(tmp_path, text))

    assert issue.path == "experiments.fast.hedgeAfter"
    assert issue.message == "hedgeAfter only applies to strategy race (this one uses fallback)"
    assert issue.line == 9


def test_min_agreement_needs_consensus_and_a_fraction() -> None:
    error = config_error(
        validate_user_config,
        {
            "experiments": {
                "a": {"providers": ["x/y"], "minAgreement": 0.5},
                "b": {"providers": ["x/y"], "strategy": "consensus", "minAgreement": 1.5},
            }
        },
    )

    assert [(issue.path, issue.message) for issue in error.issues] == [
        (
            "experiments.a.minAgreement",
            "minAgreement only applies to strategy consensus (this one uses first)",
        ),
        ("experiments.b.minAgreement", "must be at most 1"),
    ]


def test_bad_experiment_name_is_rejected() -> None:
    error = config_error(validate_user_config, {"experiments": {"my exp": {"providers": ["x/y"]}}})

    issue = only_issue(error)
    assert issue.path == "experiments.my exp"
    assert issue.message.startswith("invalid experiment name 'my exp'")


def test_api_key_pasted_into_api_key_env_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = "sk-proj-AbCdEf0123456789xyzXYZ"
    path = write(tmp_path, f"providers:\n  openai:\n    apiKeyEnv: {secret}\n", "models.yaml")

    with pytest.raises(ConfigError) as info:
        load_models_config(path)

    issue = only_issue(info.value)
    assert issue.path == "providers.openai.apiKeyEnv"
    assert issue.line == 3
    assert "looks like an API key" in issue.message
    assert secret not in str(info.value)
    assert "AbCdEf" not in repr(info.value.issues)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_api_key_env_must_be_an_upper_snake_name() -> None:
    error = config_error(validate_models_config, {"providers": {"groq": {"api_key_env": "groq_key"}}})

    issue = only_issue(error)
    assert issue.path == "providers.groq.api_key_env"
    assert "UPPER_SNAKE_CASE" in issue.message
    assert "groq_key" not in issue.message


def test_api_key_in_params_is_rejected() -> None:
    error = config_error(
        validate_models_config,
        {"providers": {"openai": {"params": {"api_key": "hunter2-secret"}}}},
    )

    issue = only_issue(error)
    assert issue.path == "providers.openai.params.api_key"
    assert "'api_key' must not be written in a config file" in issue.message
    assert "hunter2" not in str(error)


def test_tier_override_needs_concrete_models() -> None:
    error = config_error(validate_models_config, {"tiers": {"medium": {"model": "tier:high"}}})

    issue = only_issue(error)
    assert issue.path == "tiers.medium.model"
    assert "expected a concrete provider/model spec" in issue.message


def test_inline_user_errors_carry_the_full_path_and_line(tmp_path: Path) -> None:
    text = """\
    users:
      alice:
        experiments:
          fast:
            providers: [openai/gpt-4.1-nano]
            maxcost: 1
      bob: 5
    """
    with pytest.raises(ConfigError) as info:
        load_models_config(write(tmp_path, text, "models.yaml"))

    assert [(issue.path, issue.line, issue.message) for issue in info.value.issues] == [
        ("users.alice.experiments.fast.maxcost", 6, "unknown key 'maxcost' (did you mean 'maxCost'?)"),
        ("users.bob", 7, "expected the path of a YAML file or an inline user config, got integer"),
    ]


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    text = """\
    experiments:
      fast:
        stratgy: race
        providers: [openai/gpt-4.1-nano, "bad spec"]
        timeout: 0
      slow:
        strategy: slowest
        providers: []
        maxCost: -1
    defaults:
      maxConcurrent: 0
    colour: red
    """
    error = user_error(tmp_path, text)

    assert [(issue.line, issue.path) for issue in error.issues] == [
        (3, "experiments.fast.stratgy"),
        (4, "experiments.fast.providers.1"),
        (5, "experiments.fast.timeout"),
        (7, "experiments.slow.strategy"),
        (8, "experiments.slow.providers"),
        (9, "experiments.slow.maxCost"),
        (11, "defaults.maxConcurrent"),
        (12, "colour"),
    ]
    assert str(error).startswith("invalid user config (8 problems)")


def test_error_message_fits_on_one_screen_without_pydantic_noise(tmp_path: Path) -> None:
    text = "experiments:\n" + "".join(f"  e{i}:\n    providers: []\n    timeout: -1\n" for i in range(10))
    message = str(user_error(tmp_path, text))

    lines = message.splitlines()
    assert len(lines) == 21
    assert all(len(line) < 200 for line in lines)
    assert "pydantic" not in message and "https://" not in message and "input_value" not in message


# --------------------------------------------------------------------------- safe_* and loading


def test_safe_validate_returns_a_successful_result() -> None:
    result = safe_validate_user_config({"experiments": {"a": {"providers": ["openai/gpt-4.1-nano"]}}})

    assert isinstance(result, Result)
    assert result.success is True
    assert isinstance(result.data, UserConfig)
    assert result.error is None


def test_safe_validate_returns_the_error_instead_of_raising() -> None:
    result = safe_validate_models_config({"rollout": {"percent": 150}})

    assert result.success is False
    assert result.data is None
    assert isinstance(result.error, ConfigError)
    assert [(issue.path, issue.message) for issue in result.error.issues] == [
        ("rollout.percent", "must be at most 100")
    ]


def test_validate_with_source_names_the_file_in_each_issue() -> None:
    error = config_error(validate_user_config, {"experiments": {}}, source="team.yaml")

    assert only_issue(error) == ConfigIssue(
        "experiments", "must define at least one experiment", "team.yaml", None
    )


def test_non_mapping_data_is_a_config_error_not_a_type_error() -> None:
    error = config_error(validate_models_config, ["not", "a", "mapping"])

    assert only_issue(error).message == "expected a mapping at the top level, got list"


def test_load_accepts_path_pathlike_text_and_dict(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    data, _ = load_yaml(GOOD)

    from_path = load_user_config(str(path))
    assert load_user_config(path) == from_path
    assert load_user_config(GOOD) == from_path
    assert load_user_config(data) == from_path


def test_missing_yaml_file_is_file_not_found(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")

    issue = only_issue(config_error(load_user_config, missing))

    assert (issue.file, issue.message) == (missing, "file not found")


def test_single_line_text_that_is_not_yaml_hints_at_a_missing_file() -> None:
    issue = only_issue(config_error(load_user_config, "configs/user.json"))

    assert issue.message == (
        "expected a mapping at the top level, got string (if this was meant to be a file path: no such file)"
    )


def test_one_line_yaml_text_is_text_not_a_path() -> None:
    config = load_user_config("experiments: {a: {providers: [openai/gpt-4.1-nano]}}")

    assert config.experiments["a"].providers == ["openai/gpt-4.1-nano"]


def test_load_yaml_records_lines_of_keys_and_list_items() -> None:
    _, lines = load_yaml(GOOD)

    assert lines.line_for(("experiments", "fast", "providers", 1)) == 7
    assert lines.line_for(("defaults", "costLimit")) == 14
    assert lines.line_for(("defaults", "notThere")) == 10


def test_models_config_resolves_user_paths_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "teams").mkdir()
    write(tmp_path / "teams", GOOD, "alice.yaml")
    models_path = write(
        tmp_path,
        "users:\n  alice: teams/alice.yaml\n  bob: {experiments: {a: {providers: [x/y]}}}\n",
        "models.yaml",
    )
    monkeypatch.chdir("/")

    config = load_models_config(models_path)

    assert config.users["alice"] == str(tmp_path / "teams" / "alice.yaml")
    assert isinstance(config.users["bob"], UserConfig)
    users = load_user_configs(config)
    assert users["alice"].default_experiment == "fast"
    assert users["bob"].experiments["a"].providers == ["x/y"]


def test_models_config_reports_a_missing_user_file_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "provider: openai\nusers:\n  alice: alice.yaml\n", "models.yaml")

    issue = only_issue(config_error(load_models_config, path))

    assert issue.path == "users.alice"
    assert issue.line == 3
    assert issue.message == f"user config file not found: {tmp_path / 'alice.yaml'}"


def test_load_user_configs_reports_problems_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, "experiments: {}\n", "a.yaml")
    write(tmp_path, "experiments: {x: {providers: [], stratgy: race}}\n", "b.yaml")
    config = load_models_config(write(tmp_path, "users: {a: a.yaml, b: b.yaml}\n", "models.yaml"))

    error = config_error(load_user_configs, config)

    assert [(Path(issue.file or "").name, issue.path) for issue in error.issues] == [
        ("a.yaml", "experiments"),
        ("b.yaml", "experiments.x.providers"),
        ("b.yaml", "experiments.x.stratgy"),
    ]


# --------------------------------------------------------------------------- ModelResult and imports


@LITELLM_SCHEMA_WARNING
def test_model_result_summarises_a_routed_response() -> None:
    import litellm

    response = litellm.ModelResponse(
        model="gpt-4.1-mini",
        choices=[{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    )
    routing = Routing(
        spec="tier:medium",
        strategy="race",
        models=["openai/gpt-4.1-mini"],
        winner="openai/gpt-4.1-mini",
        cost_usd=0.0002,
        latency_ms=321.5,
    )
    attach_routing(response, routing)

    result = ModelResult.from_response(response)

    assert result == ModelResult(
        content="hello",
        model="openai/gpt-4.1-mini",
        strategy="race",
        cost_usd=0.0002,
        latency_ms=321.5,
        input_tokens=12,
        output_tokens=3,
    )


@LITELLM_SCHEMA_WARNING
def test_model_result_refuses_responses_that_did_not_come_from_lucky_litellm() -> None:
    import litellm

    with pytest.raises(LookupError):
        ModelResult.from_response(litellm.ModelResponse())


def test_config_module_does_not_import_litellm() -> None:
    code = "import sys, lucky_litellm.config; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"


def test_experiment_config_can_be_built_in_python() -> None:
    experiment = ExperimentConfig(
        strategy="consensus", providers=["tier:low", "openai/gpt-4.1"], min_agreement=0.5
    )

    assert experiment.model_dump(by_alias=True, exclude_none=True) == {
        "strategy": "consensus",
        "providers": ["tier:low", "openai/gpt-4.1"],
        "minAgreement": 0.5,
        "params": {},
    }
