"""Where settings come from, highest first: environment variables, the models file, the built-in
defaults. The library (`Models`) and the proxy (`lucky_litellm.proxy.setup`) follow the same order."""

from __future__ import annotations

from pathlib import Path

from lucky_litellm import Models
from lucky_litellm.config import load_models_config
from lucky_litellm.proxy.setup import models_config_from_env

FILE = """
provider: openai
providers:
  local:
    apiBase: http://file.example/v1
    models: {medium: local/medium-m}
"""
ENV = {"LUCKY_PROVIDER": "local", "LUCKY_LOCAL_API_BASE": "http://env.example/v1", "OPENAI_API_KEY": "sk-x"}


def _models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(FILE)
    return path


def test_the_environment_overrides_the_models_file_in_the_library(tmp_path: Path) -> None:
    """The file says `provider: openai` and a local apiBase; LUCKY_PROVIDER and LUCKY_LOCAL_API_BASE
    win, as in the proxy (a file used to win here and lose there)."""
    models = Models(load_models_config(_models_file(tmp_path)), environ=ENV)

    plan = models.resolve("tier:medium")

    assert models.tiers.provider == "local"
    assert plan.models == ["local/medium-m"]
    assert plan.targets[0].kwargs["api_base"] == "http://env.example/v1"


def test_the_models_file_applies_where_the_environment_is_silent(tmp_path: Path) -> None:
    models = Models(load_models_config(_models_file(tmp_path)), environ={"OPENAI_API_KEY": "sk-x"})

    assert models.tiers.provider == "openai"
    assert models.resolve("local/medium-m").targets[0].kwargs["api_base"] == "http://file.example/v1"


def test_the_library_and_the_proxy_resolve_the_same_targets(tmp_path: Path) -> None:
    path = _models_file(tmp_path)
    library = Models(load_models_config(path), environ=ENV)
    proxy_config = models_config_from_env({**ENV, "LUCKY_MODELS_CONFIG": str(path)})
    assert proxy_config is not None
    proxy = Models(proxy_config, environ=ENV)

    for spec in ("tier:medium", "tier:low", "local/medium-m"):
        mine, theirs = library.resolve(spec), proxy.resolve(spec)
        assert mine.models == theirs.models
        endpoints = [target.kwargs.get("api_base") for target in theirs.targets]
        assert [target.kwargs.get("api_base") for target in mine.targets] == endpoints
