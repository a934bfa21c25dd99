"""Environment variables that override the models file: refused by name when bad, logged when they
beat a value the config gave explicitly (a new user's trial)."""

from __future__ import annotations

import logging

import pytest

from lucky_litellm import ConfigError, Models
from lucky_litellm.config import load_models_config


def test_an_api_base_that_is_not_a_url_is_refused_at_load_with_its_line():
    with pytest.raises(ConfigError) as info:
        load_models_config("providers:\n  local:\n    apiBase: notaurl\n")
    assert "line 3: providers.local.apiBase: must be an http:// or https:// URL" in str(info.value)


def test_an_endpoint_variable_that_is_not_a_url_is_refused_by_its_name():
    with pytest.raises(ConfigError) as info:
        Models(environ={"LUCKY_LOCAL_API_BASE": "notaurl"})
    assert "LUCKY_LOCAL_API_BASE='notaurl': must be an http:// or https:// URL" in str(info.value)


def test_a_configured_endpoint_variable_is_checked_too():
    config = {"providers": {"mine": {"apiBaseEnv": "MY_BASE", "litellmProvider": "openai"}}}
    with pytest.raises(ConfigError) as info:
        Models(config, environ={"MY_BASE": "ftp://host/v1"})
    assert "MY_BASE='ftp://host/v1'" in str(info.value)


def test_an_endpoint_variable_with_credentials_is_not_printed():
    with pytest.raises(ConfigError) as info:
        Models(environ={"LUCKY_LOCAL_API_BASE": "user:s3cret@host"})
    assert "s3cret" not in str(info.value) and "LUCKY_LOCAL_API_BASE=" in str(info.value)


def test_an_unknown_provider_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as info:
        Models(environ={"LUCKY_PROVIDER": "bogus"})
    assert "LUCKY_PROVIDER='bogus': unknown provider 'bogus'" in str(info.value)


def test_an_unknown_provider_from_the_config_names_the_field():
    with pytest.raises(ConfigError) as info:
        Models({"provider": "bogus"}, environ={})
    assert "provider: unknown provider 'bogus'" in str(info.value)
    assert "LUCKY_PROVIDER" not in str(info.value)


def test_an_unsupported_state_url_variable_is_refused_by_its_name():
    with pytest.raises(ConfigError) as info:
        Models(environ={"LUCKY_STATE_URL": "bogus"})
    assert "LUCKY_STATE_URL='bogus': unsupported state store URL" in str(info.value)


def test_an_endpoint_variable_overriding_an_explicit_api_base_is_logged(caplog):
    """The exported variable used to win over `providers.local.apiBase` given in code, silently."""
    config = {"providers": {"local": {"apiBase": "http://127.0.0.1:1234/v1"}}}
    with caplog.at_level(logging.INFO, logger="lucky_litellm"):
        Models(config, environ={"LUCKY_LOCAL_API_BASE": "http://127.0.0.1:5678/v1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "lucky_litellm"]
    assert any("LUCKY_LOCAL_API_BASE" in line and "providers.local.apiBase" in line for line in lines), lines
    assert not any("5678" in line for line in lines)  # the setting's name, never a URL's value


def test_an_explicit_provider_overridden_by_the_environment_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="lucky_litellm"):
        Models({"provider": "openai"}, environ={"LUCKY_PROVIDER": "local"})
    assert any("LUCKY_PROVIDER overrides provider" in r.getMessage() for r in caplog.records)


def test_no_override_no_log_line(caplog):
    config = {"providers": {"local": {"apiBase": "http://127.0.0.1:1234/v1"}}}
    with caplog.at_level(logging.INFO, logger="lucky_litellm"):
        Models(config, environ={})
    assert not any("overrides" in r.getMessage() for r in caplog.records)


def test_the_readmes_telemetry_snippet_exports_to_a_live_collector_offline():
    """It pointed at 127.0.0.1:4318, where nothing listens offline: three "Transient error ...
    retrying" lines and "Exporter already shutdown" around its answer."""
    import re

    from .test_readme import RUNNABLE

    snippets = [block.text for block in RUNNABLE if block.lang == "python" and "configure(" in block.text]
    assert snippets
    for text in snippets:
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert not re.search(r"otlp_endpoint\s*=\s*[\"']http", code), text
