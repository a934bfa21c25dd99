"""The `lucky-litellm` command line: exit codes and what a person reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def test_resolve_of_an_unknown_user_names_the_cli_options_not_a_library_call(runner):
    result = runner.invoke(main, ["resolve", "user:nobody:x"])
    assert result.exit_code == 1
    assert "pass --user-config FILE" in result.output
    assert "load_user_config" not in result.output


def test_resolve_aligns_every_row_of_the_plan(runner):
    result = runner.invoke(main, ["resolve", "tier:medium"])
    assert result.exit_code == 0, result.output
    colons = {line.index(": ") for line in result.output.splitlines() if ": " in line}
    assert len(colons) == 1, result.output


def test_a_command_that_fails_fast_exits_without_a_warm_up_warning():
    result = subprocess.run(
        [sys.executable, "-m", "lucky_litellm.cli", "resolve", "user:nobody:x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **PLANTED_KEYS},
    )
    assert result.returncode == 1
    assert "no experiments for user 'nobody'" in result.stderr
    assert "warming up" not in result.stderr


def test_complete_refuses_a_negative_max_tokens_before_calling_anyone(runner):
    result = runner.invoke(main, ["complete", "tier:fast", "hi", "--max-tokens", "-5"])
    assert result.exit_code == 2
    assert "--max-tokens" in result.output


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


def test_demo_runs_offline_readable_in_100_columns_without_litellm_banners():
    """It used to start with two red litellm "Give Feedback" banners and print a 237-column
    table whose error cell was cut mid-word; it showed no votes, rollout or telemetry."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, "-m", "lucky_litellm.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "Give Feedback" not in output and "LiteLLM.Info" not in output
    assert max(len(line) for line in output.splitlines()) <= 100, [
        line for line in output.splitlines() if len(line) > 100
    ]
    assert "did you mean 'medium'?" in output  # the error is whole, not cut
    assert "consensus, quorum 60%" in output and "groq/openai/gpt-oss-120b   lost" in output  # plan, outcome
    assert "Consensus votes" in output and "openai/gpt-4o-mini 'paris'" in output  # who voted for what
    assert "test user" in output and "legacy" in output and "inside the 25 %" in output  # rollout paths
    assert "lucky.complete" in output and "chat gpt-4.1-mini" in output  # span tree
    for word in ("first", "race", "fallback", "consensus", "UnknownTierError"):  # every strategy, an error
        assert word in output


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


# --- a newcomer's first calls (issue 15) ----------------------------------------------------------

NO_KEYS = {
    name: None
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "OPENROUTER_API_KEY",
        "GROQ_API_KEY",
        "LUCKY_PROVIDER",
    )
} | {"LUCKY_LOCAL_API_BASE": None, "LUCKY_MODELS_CONFIG": None}


@pytest.fixture
def keyless():
    """A runner with no provider key and no local server configured: a fresh clone's shell."""
    from lucky_litellm import set_default_models

    set_default_models(None)
    yield CliRunner(env=NO_KEYS)
    set_default_models(None)


def test_resolve_shows_the_plan_when_the_provider_is_disabled(keyless):
    """It used to refuse with "provider 'openai' is disabled", though resolving calls nothing."""
    result = keyless.invoke(main, ["resolve", "tier:fast"])
    assert result.exit_code == 0, result.output
    assert "tier: nano" in result.output
    assert "disabled: openai/gpt-4.1-nano" in result.output and "set OPENAI_API_KEY" in result.output
    assert "nothing would run" in result.output


def test_resolve_marks_only_the_disabled_models_of_a_user_experiment(keyless, tmp_path):
    config = tmp_path / "me.yaml"
    config.write_text("experiments:\n  fast:\n    strategy: race\n    providers: [groq/openai/gpt-oss-20b]\n")
    result = CliRunner(env={**NO_KEYS, "GROQ_API_KEY": "gsk-x"}).invoke(
        main, ["resolve", "user:me:fast", "--user-config", str(config), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"runnable": true' in result.output and '"disabled": []' in result.output


def test_tiers_marks_models_of_disabled_providers(keyless):
    result = keyless.invoke(main, ["tiers"])
    assert result.exit_code == 0, result.output
    assert "openai/gpt-4.1-mini ✗" in result.output
    assert "✗ openai: set OPENAI_API_KEY" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 100


def test_validate_accepts_every_shipped_config_including_the_proxy_config(runner):
    files = [str(p) for p in sorted(Path("configs").glob("*.yaml"))]
    assert "configs/proxy.yaml" in files
    result = runner.invoke(main, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert "✓ configs/proxy.yaml  (LiteLLM proxy config" in result.output


def test_validate_checks_lucky_parts_of_a_proxy_config(runner, tmp_path):
    proxy = tmp_path / "config.yaml"
    proxy.write_text(
        "model_list:\n"
        "  - model_name: 'tier:*'\n"
        "    litellm_params: {model: 'lucky/tier:*', num_retries: 0}\n"
        "  - model_name: bad\n"
        "    litellm_params: {model: 'lucky/tier:', num_retries: 0}\n"
        "  - model_name: gpt-4.1-mini\n"
        "    litellm_params: {model: openai/gpt-4.1-mini}\n"
        "litellm_settings:\n"
        "  custom_provider_map:\n"
        "    - {provider: lucky, custom_handler: lucky_litellm.proxy.handlr}\n"
        "general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n"
    )
    result = runner.invoke(main, ["validate", str(proxy)])
    assert result.exit_code == 1, result.output
    assert f"{proxy}:5: model_list[1].litellm_params.model" in result.output
    assert "missing tier name" in result.output
    assert "has no attribute 'handlr'" in result.output
    assert "lucky_litellm.proxy.hook' is not listed" in result.output
    assert "model_list: unknown key" not in result.output  # not checked as a models.yaml


def test_complete_timeout_bounds_a_hung_upstream(runner, fake_upstream, tmp_path):
    """It used to wait 60 s (the default deadline) with no way to say less."""
    from lucky_litellm.testing import Behavior

    fake_upstream.script("gpt-4.1-mini", Behavior(latency_ms=30_000))
    config = tmp_path / "models.yaml"
    config.write_text(f"providers:\n  openai:\n    apiBase: {fake_upstream.base_url}\n")
    started = time.monotonic()
    result = runner.invoke(
        main, ["--config", str(config), "complete", "tier:medium", "hi", "--timeout", "0.5"]
    )
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_complete_failure_is_one_clear_line_and_exit_1(runner, fake_upstream, tmp_path):
    from lucky_litellm.testing import Behavior

    fake_upstream.script("gpt-4.1-mini", Behavior(status=400, error_message="bad request (test)"))
    config = tmp_path / "models.yaml"
    config.write_text(f"providers:\n  openai:\n    apiBase: {fake_upstream.base_url}\n")
    result = runner.invoke(main, ["--config", str(config), "complete", "tier:medium", "hi"])
    assert result.exit_code == 1
    assert result.output.startswith("error: all models failed for 'tier:medium'"), result.output
    assert "Traceback" not in result.output


def test_dev_runs_a_command_against_the_fake_upstream_and_returns_its_status(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in NO_KEYS}
    script = "import os; print(os.environ['LUCKY_PROVIDER'], os.environ['LUCKY_LOCAL_API_BASE']); exit(3)"
    result = subprocess.run(
        [sys.executable, "-m", "lucky_litellm.cli", "dev", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 3, result.stderr
    provider, base_url = result.stdout.split()
    assert provider == "local" and base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")


def test_dev_without_a_command_prints_the_variables_and_serves_until_interrupted():
    env = {key: value for key, value in os.environ.items() if key not in NO_KEYS}
    process = subprocess.Popen(
        [sys.executable, "-m", "lucky_litellm.cli", "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        exports = dict(line.split()[1].split("=", 1) for line in lines if line.strip().startswith("export"))
        assert exports["LUCKY_PROVIDER"] == "local"
        import urllib.request

        with urllib.request.urlopen(exports["LUCKY_LOCAL_API_BASE"] + "/models", timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--latency-ms", "-5"], "--latency-ms"),
        (["--latency-ms", "nan"], "--latency-ms"),
        (["--slow", "llama3.2:-5"], "--slow"),
        (["--slow", "llama3.2:nan"], "--slow"),
    ],
)
def test_dev_refuses_a_negative_or_non_finite_delay_in_one_line(runner, args, named):
    result = runner.invoke(main, ["dev", *args, "--", "true"])
    assert result.exit_code == 2, result.output
    assert named in result.output and ">= 0" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_dev_on_a_port_in_use_names_the_port_without_a_traceback(runner):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["dev", "--port", str(port), "--", "true"])
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port}" in result.output and "--port" in result.output
    assert isinstance(result.exception, SystemExit)


def test_dev_with_a_command_not_found_says_so_and_exits_127(runner):
    result = runner.invoke(main, ["dev", "--", "lucky-no-such-command"])
    assert result.exit_code == 127
    assert "command not found: lucky-no-such-command" in result.output


def test_guard_status_html_to_a_missing_directory_is_one_line_naming_the_path(tmp_path):
    target = tmp_path / "missing" / "r.html"
    result = CliRunner(env={"LUCKY_STATE_URL": ""}).invoke(
        main, ["rollout", "guard", "status", "--html", str(target)]
    )
    assert result.exit_code == 1
    assert f"error: --html {target}: cannot write it" in result.output
    assert isinstance(result.exception, SystemExit)


def _closed_port_url() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there any more


@pytest.mark.parametrize(
    "command",
    [["status"], ["history"], ["guard", "status"], ["guard", "start"], ["guard", "stop"], ["percent", "5"]],
)
def test_state_url_after_a_rollout_subcommand_wins_over_the_groups(runner, command):
    wanted, other = _closed_port_url(), "redis://127.0.0.1:1/0"
    result = runner.invoke(main, ["rollout", "--state-url", other, *command, "--state-url", wanted])
    assert result.exit_code == 1, result.output
    assert wanted in result.output and other not in result.output
    assert "No such option" not in result.output


@pytest.mark.parametrize("command", [["health"], ["rollout", "status"], ["rollout", "guard", "status"]])
def test_read_only_commands_on_a_closed_port_do_not_speak_of_the_budget_outage_policy(
    runner, command, caplog
):
    result = runner.invoke(main, [*command, "--state-url", _closed_port_url()])
    assert result.exit_code == 1, result.output
    assert "unreachable" in result.output
    assert "budget outage policy" not in result.output + caplog.text


def test_a_wrong_redis_password_says_the_credentials_were_refused_without_printing_them(runner):
    import redis

    from lucky_litellm.testing.redis_server import RedisServer

    with RedisServer(persistent=False) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right-one")
        bad = server.url.replace("redis://", "redis://:wrong-secret@")
        for command in (["health"], ["rollout", "status"], ["rollout", "guard", "status"]):
            result = runner.invoke(main, [*command, "--state-url", bad])
            assert result.exit_code == 1, result.output
            assert "refused the credentials" in result.output, result.output
            assert "wrong-secret" not in result.output and "unreachable" not in result.output


def test_guard_stop_without_a_shared_store_says_there_is_nothing_here_to_stop():
    result = CliRunner(env={"LUCKY_STATE_URL": ""}).invoke(main, ["rollout", "guard", "stop"])
    assert result.exit_code == 1
    assert "there is none here to stop" in result.output
    assert "would never see this guard" not in result.output


def test_a_stage_out_of_order_is_named_by_its_1_based_number_as_status_counts_them():
    result = CliRunner(env={"LUCKY_STATE_URL": ""}).invoke(
        main, ["rollout", "guard", "start", "--stages", "1,50,25"]
    )
    assert result.exit_code == 1
    assert "stage 3 (25%) is not above the one before (50%)" in result.output, result.output


def test_health_table_at_100_columns_never_splits_a_header(capsys):
    from lucky_litellm.cli import HEALTH_HEADERS, print_table

    row = {
        "model": "openai/gpt-4.1-mini-2025-04-14",
        "state": "half-open",
        "in_a_row": 12,
        "calls": 1234,
        "failures": 345,
        "error_rate": "28%",
        "cooldown_s": "29.9",
        "probe": "in flight",
        "opens": 7,
        "last_failure": "12.3 s ago",
        "reason": "APIConnectionError: connection refused by the upstream at 127.0.0.1:9",
    }
    print_table([row], list(row), title="circuits", width=100, headers=HEALTH_HEADERS)
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if "MODEL" in line)
    for column in row:
        assert HEALTH_HEADERS.get(column, column).upper() in header, text
    assert max(len(line) for line in text.splitlines()) <= 100
