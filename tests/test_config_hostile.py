"""Configs written by many hands: whatever would misroute, overflow or fail per call fails at load.

Each test is one row of issue #11 ("configs that cannot fail at call time"), exercised over real
HTTP against the fake upstream where a call is involved.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from lucky_litellm import AllModelsFailedError, ConfigError, Models, routing_of
from lucky_litellm.config import (
    ConfigWarning,
    load_models_config,
    validate_models_config,
    validate_user_config,
)
from lucky_litellm.testing import Behavior, FakeUpstream

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config


def user_yaml(params: str = "", **experiment: str) -> str:
    """A one-experiment user config; `params` is a YAML block under `params:`."""
    lines = ["experiments:", "  x:", "    providers: [openai/gpt-4.1-mini]"]
    lines += [f"    {key}: {value}" for key, value in experiment.items()]
    if params:
        lines += ["    params:", *("      " + line for line in textwrap.dedent(params).splitlines())]
    return "\n".join(lines) + "\n"


def only_issue(error: pytest.ExceptionInfo[ConfigError]) -> Any:
    assert len(error.value.issues) == 1, str(error.value)
    return error.value.issues[0]


# -- params: an allow-list of generation parameters ---------------------------------------------


@pytest.mark.parametrize(
    "key", ["api_base", "base_url", "extra_headers", "headers", "extra_body", "api_key", "aws_region_name"]
)
async def test_params_cannot_send_the_provider_key_elsewhere(models, fake_upstream, tmp_path, key):
    """`params: {api_base: http://attacker}` used to send the operator's OpenAI key to that URL."""
    with FakeUpstream() as attacker:
        value = {"extra_headers": "{Host: evil}", "headers": "{Host: evil}", "extra_body": "{x: 1}"}.get(
            key, attacker.base_url
        )
        path = tmp_path / "user.yaml"
        path.write_text(user_yaml(f"temperature: 0\n{key}: {value}\n"))

        with pytest.raises(ConfigError) as error:
            models.load_user_config("mallory", path)

        issue = only_issue(error)
        assert (issue.file, issue.line, issue.path) == (str(path), 6, f"experiments.x.params.{key}")
        assert attacker.base_url not in str(error.value)
        with pytest.raises(Exception, match="mallory"):
            await models.complete("user:mallory:x", MESSAGES)
        await models.complete("tier:medium", MESSAGES)
        assert attacker.call_count() == 0
        assert fake_upstream.call_count() == 1


async def test_num_retries_in_params_cannot_multiply_upstream_calls(models, fake_upstream):
    """`params: {num_retries: 3}` brought litellm's own retries back: 7 upstream calls instead of 1."""
    fake_upstream.script("gpt-4.1-mini", Behavior(status=503))
    with pytest.raises(ConfigError) as error:
        models.load_user_config("u", user_yaml("num_retries: 3\n", retries="0"))
    assert only_issue(error).path == "experiments.x.params.num_retries"
    assert "use the experiment's `retries`" in only_issue(error).message

    models.load_user_config("u", user_yaml("temperature: 0\n", retries="0"))
    with pytest.raises(AllModelsFailedError):
        await models.complete("user:u:x", MESSAGES)
    assert fake_upstream.call_count() == 1


@pytest.mark.parametrize(
    "key", ["num_retries", "max_retries", "stream", "timeout", "fallbacks", "mock_response"]
)
def test_params_refuse_litellm_switches(key):
    with pytest.raises(ConfigError) as error:
        validate_user_config(
            {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"], "params": {key: 1}}}}
        )
    assert only_issue(error).path == f"experiments.x.params.{key}"


def test_an_unknown_param_gets_a_did_you_mean():
    with pytest.raises(ConfigError) as error:
        validate_user_config(
            {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"], "params": {"temprature": 0}}}}
        )
    assert "did you mean 'temperature'" in only_issue(error).message


async def test_generation_params_reach_the_upstream(models, fake_upstream):
    params = {
        "temperature": 0.2,
        "max_tokens": 5,
        "seed": 7,
        "stop": ["\n"],
        "response_format": {"type": "text"},
    }
    models.load_user_config(
        "u", {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"], "params": params}}}
    )

    await models.complete("user:u:x", MESSAGES)

    body = fake_upstream.calls[0].body
    assert {key: body[key] for key in params} == params


def test_the_operator_may_set_connection_options_per_provider_but_not_retries():
    ok = validate_models_config({"providers": {"openai": {"params": {"api_version": "2024-10-01"}}}})
    assert ok.providers["openai"].params == {"api_version": "2024-10-01"}
    with pytest.raises(ConfigError) as error:
        validate_models_config({"providers": {"openai": {"params": {"num_retries": 3}}}})
    assert only_issue(error).path == "providers.openai.params.num_retries"


def test_a_python_alias_bomb_in_params_is_refused():
    """Shared lists in a dict cost nothing to build and everything to copy on each call."""
    bomb: list[Any] = ["x"] * 10
    for _ in range(8):
        bomb = [bomb] * 10
    with pytest.raises(ConfigError) as error:
        validate_user_config(
            {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"], "params": {"stop": bomb}}}}
        )
    assert "too large" in only_issue(error).message


# -- numbers: finite and bounded -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("defaults", "costLimit"),
        ("defaults", "timeout"),
        ("defaults", "maxConcurrent"),
        ("experiments.x", "maxCost"),
        ("experiments.x", "timeout"),
    ],
)
def test_huge_numbers_are_refused_at_load(section, key):
    """`costLimit: 1e300` used to load; then every call raised OverflowError."""
    data: dict[str, Any] = {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"]}}, "defaults": {}}
    target = data
    for part in section.split("."):
        target = target[part]
    target[key] = 1e300 if key != "maxConcurrent" else 10**30
    with pytest.raises(ConfigError) as error:
        validate_user_config(data)
    assert only_issue(error).path == f"{section}.{key}"
    assert "must be at most" in only_issue(error).message


def test_cost_limit_1e300_in_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text(user_yaml() + "defaults:\n  costLimit: 1e300\n")
    with pytest.raises(ConfigError) as error:
        Models(environ={}).load_user_config("u", path)
    issue = only_issue(error)
    assert (issue.file, issue.line, issue.path) == (str(path), 5, "defaults.costLimit")


def test_models_config_numbers_are_bounded_too():
    with pytest.raises(ConfigError) as error:
        validate_models_config({"tiers": {"medium": {"timeout": float("inf"), "maxCost": 1e300}}})
    assert {issue.path for issue in error.value.issues} == {"tiers.medium.timeout", "tiers.medium.maxCost"}


@pytest.mark.parametrize(
    ("section", "key"),
    [("rollout", "autoTier"), ("rollout", "enabled"), ("telemetry", "captureContent"), (None, "trackCost")],
)
def test_a_quoted_yes_is_not_taken_for_a_boolean(section, key):
    data = {section: {key: "yes"}} if section else {key: "yes"}
    with pytest.raises(ConfigError) as error:
        validate_models_config(data)
    issue = only_issue(error)
    assert issue.path == (f"{section}.{key}" if section else key)
    assert "expected true or false" in issue.message


# -- every provider entry resolves at load -------------------------------------------------------


def test_a_provider_typo_is_caught_at_load_with_a_did_you_mean(models, tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text(
        "experiments:\n  x:\n    strategy: fallback\n    providers:\n      - openai/gpt-4.1-mini\n"
        "      - opnai/gpt-4.1-mini\n"
    )
    with pytest.raises(ConfigError) as error:
        models.load_user_config("u", path)
    issue = only_issue(error)
    assert (issue.file, issue.line, issue.path) == (str(path), 6, "experiments.x.providers.1")
    assert "did you mean 'openai'" in issue.message
    assert "u" not in models.users  # nothing half-applied


def test_an_unknown_tier_in_an_experiment_is_caught_at_load(models):
    with pytest.raises(ConfigError) as error:
        models.load_user_config("u", "experiments:\n  x:\n    providers: [tier:nosuch, tier:medium]\n")
    issue = only_issue(error)
    assert issue.path == "experiments.x.providers.0" and issue.line == 3
    assert "unknown tier 'nosuch'" in issue.message


def test_inline_users_of_a_models_config_are_resolved_too(fake_upstream):
    config = upstream_config(fake_upstream, users={"u": {"experiments": {"x": {"providers": ["tier:hihg"]}}}})
    with pytest.raises(ConfigError, match=r"did you mean 'high'"):
        Models(config, environ=dict(PLANTED_KEYS))


def test_a_disabled_provider_is_not_a_load_error(models):
    """No key set yet is an operational state, not a typo: the strategy skips it and says why."""
    models.load_user_config(
        "u", {"experiments": {"x": {"providers": ["anthropic/claude-sonnet-4-5", "tier:medium"]}}}
    )
    assert models.resolve("user:u:x").skipped


# -- tier options the built strategy does not use ------------------------------------------------


def write_models(tmp_path: Path, fake_upstream: FakeUpstream, tiers: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        "providers:\n"
        f"  openai: {{apiBase: {fake_upstream.base_url}}}\n"
        "  groq: {enabled: false}\n  anthropic: {enabled: false}\n  openrouter: {enabled: false}\n"
        "tiers:\n" + textwrap.indent(textwrap.dedent(tiers), "  ")
    )
    return path


@pytest.mark.parametrize(
    ("tiers", "path", "line"),
    [
        ("medium:\n  hedgeAfter: 200\n", "tiers.medium.hedgeAfter", 8),
        ("medium:\n  minAgreement: 0.6\n", "tiers.medium.minAgreement", 8),
        (
            "high:\n  models: [openai/gpt-4.1, openai/gpt-4o]\n  hedgeAfter: 200\n",
            "tiers.high.hedgeAfter",
            9,
        ),
    ],
)
def test_a_tier_option_its_strategy_ignores_is_an_error(tmp_path, fake_upstream, tiers, path, line):
    file = write_models(tmp_path, fake_upstream, tiers)
    with pytest.raises(ConfigError) as error:
        Models(load_models_config(file), environ=dict(PLANTED_KEYS))
    issue = only_issue(error)
    assert (issue.file, issue.line, issue.path) == (str(file), line, path)
    assert "only applies to strategy" in issue.message


def test_hedge_after_on_a_fast_tier_that_races_only_with_more_providers_warns(tmp_path, fake_upstream):
    file = write_models(tmp_path, fake_upstream, "nano:\n  hedgeAfter: 200\n")
    with pytest.warns(ConfigWarning, match=r"tiers\.nano\.hedgeAfter"):
        models = Models(load_models_config(file), environ=dict(PLANTED_KEYS))
    assert models.resolve("tier:nano").strategy == "first"


def test_a_tier_option_its_strategy_uses_is_fine(tmp_path, fake_upstream):
    file = write_models(
        tmp_path,
        fake_upstream,
        "medium:\n  strategy: consensus\n  models: [openai/gpt-4.1, "
        "openai/gpt-4o, openai/gpt-4.1-mini]\n  minAgreement: 0.6\n",
    )
    assert (
        Models(load_models_config(file), environ=dict(PLANTED_KEYS)).resolve("tier:medium").min_agreement
        == 0.6
    )


# -- Models(environ=...) is the only environment read --------------------------------------------


def test_models_environ_decides_the_active_provider(monkeypatch, fake_upstream):
    monkeypatch.setenv("LUCKY_PROVIDER", "anthropic")
    models = Models(upstream_config(fake_upstream), environ=dict(PLANTED_KEYS))
    assert models.tiers.provider == "openai"
    models = Models(upstream_config(fake_upstream), environ={**PLANTED_KEYS, "LUCKY_PROVIDER": "groq"})
    assert models.tiers.provider == "groq"


def test_models_environ_decides_the_flag_store(monkeypatch):
    """An empty environ used to fall through to os.environ (`environ or os.environ`)."""
    monkeypatch.setenv("LUCKY_STATE_URL", "redis://127.0.0.1:1/0")
    models = Models(environ={})
    assert "redis" not in type(models.store).__name__.lower()


async def test_models_environ_holds_the_keys_the_call_sends(monkeypatch, fake_upstream):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-os-environ-must-not-be-sent")
    models = Models(upstream_config(fake_upstream), environ=dict(PLANTED_KEYS))
    response = await models.complete("tier:medium", MESSAGES)
    assert routing_of(response).winner == "openai/gpt-4.1-mini"
    assert fake_upstream.calls[0].headers.get("Authorization") == f"Bearer {PLANTED_KEYS['OPENAI_API_KEY']}"


def test_cli_validate_resolves_providers_and_tier_options(tmp_path):
    """`lucky-litellm validate` used to pass a file whose providers could never be called."""
    from click.testing import CliRunner

    from lucky_litellm.cli import main

    user = tmp_path / "u.yaml"
    user.write_text("experiments:\n  x:\n    providers: [opnai/gpt-4.1-mini]\n")
    registry = tmp_path / "models.yaml"
    registry.write_text("tiers:\n  medium:\n    minAgreement: 0.6\n")

    result = CliRunner(env=dict(PLANTED_KEYS)).invoke(main, ["validate", str(user), str(registry)])

    assert result.exit_code == 1
    assert (
        f"{user}:3: experiments.x.providers.0" in result.output and "did you mean 'openai'" in result.output
    )
    assert f"{registry}:3: tiers.medium.minAgreement" in result.output


def test_models_environ_decides_content_capture(monkeypatch):
    """`environ or os.environ` again: an empty environ turned prompt capture on from os.environ."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    assert Models(environ={}).telemetry.capture_content is False
    assert Models(
        environ={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    ).telemetry.capture_content
