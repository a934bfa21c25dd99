"""The `lucky-litellm` command line: exit codes and what a person reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lucky_litellm.cli import main

from .conftest import PLANTED_KEYS


@pytest.fixture
def runner():
    """A CLI runner whose default registry is built afresh, with provider keys in the environment."""
    from lucky_litellm import set_default_models

    set_default_models(None)
    yield CliRunner(env=dict(PLANTED_KEYS))
    set_default_models(None)


def test_validate_accepts_every_example_config(runner):
    files = [str(p) for p in sorted(Path("configs").glob("*.yaml")) if p.name != "proxy.yaml"]
    result = runner.invoke(main, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == len(files)


def test_validate_lists_every_problem_with_its_line_and_exits_1(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "experiments:\n  fast:\n    stratgy: race\n    providers: [openai/gpt-4.1-mini]\n    timeout: -5\n"
    )
    result = runner.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "stratgy" in result.output and "did you mean 'strategy'" in result.output
    assert f"{bad}:3" in result.output and f"{bad}:5" in result.output
    assert "Traceback" not in result.output


def test_validate_reports_a_yaml_syntax_error_with_its_line(runner, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("experiments:\n  fast: [unclosed\n")
    result = runner.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "broken.yaml:" in result.output and "Traceback" not in result.output


def test_validate_tiers_checks_the_tier_table(runner):
    result = runner.invoke(main, ["validate", "--tiers"])
    assert result.exit_code == 0, result.output


def test_resolve_prints_the_plan_of_a_user_experiment(runner):
    result = runner.invoke(
        main, ["resolve", "user:user-123", "--user-config", "configs/researcher-example.yaml", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"strategy"' in result.output and '"models"' in result.output


def test_resolve_of_a_bad_spec_is_one_line_and_exit_1(runner):
    result = runner.invoke(main, ["resolve", "tier:"])
    assert result.exit_code == 1
    assert "missing tier name" in result.output


def test_tiers_prints_a_table_with_prices(runner):
    result = runner.invoke(main, ["tiers"])
    assert result.exit_code == 0, result.output
    assert "medium" in result.output and "openai/gpt-4.1-mini" in result.output


def test_rollout_percent_updates_the_store_and_refuses_bad_values(runner):
    result = runner.invoke(main, ["rollout", "percent", "25", "--local"])
    assert result.exit_code == 0, result.output
    assert "25" in result.output
    result = runner.invoke(main, ["rollout", "percent", "250", "--local"])
    assert result.exit_code == 1


def test_demo_runs_offline_and_shows_every_strategy():
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, "-m", "lucky_litellm.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for word in ("first", "race", "fallback", "consensus", "UnknownTierError"):
        assert word in result.stdout


def test_complete_answers_through_litellm_and_prints_the_routing(runner, fake_upstream, tmp_path):
    from lucky_litellm.testing import Behavior

    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    config = tmp_path / "models.yaml"
    config.write_text(f"providers:\n  openai:\n    apiBase: {fake_upstream.base_url}\n")
    result = runner.invoke(
        main, ["--config", str(config), "complete", "tier:medium", "capital of France?", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Paris")
    assert '"winner": "openai/gpt-4.1-mini"' in result.output
    assert fake_upstream.call_count("gpt-4.1-mini") == 1
