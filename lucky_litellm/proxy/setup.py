"""The registry a proxy process serves: the models file, with the environment on top.

Where the proxy's lucky_litellm settings come from, highest first:

1. environment variables: ``LUCKY_PROVIDER`` (the active provider for ``tier:`` specs) and each
   provider's endpoint variable (``LUCKY_LOCAL_API_BASE`` for ``local``, or the ``apiBaseEnv`` a
   provider names), so a deployment can repoint a shared models file without editing it;
2. the models file named by ``LUCKY_MODELS_CONFIG`` (providers, tiers, ``users:``, ``rollout:``);
3. the built-in defaults.

The library (`Models`) reads the same variables in the same order, so the file given here with
the overrides applied and the plain file give a proxy and a program the same registry (a test
checks that they resolve the same targets).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ..config import ModelsConfig, ProviderConfig, load_models_config
from ..providers import builtin_providers
from ..registry import Models, default_models, set_default_models

__all__ = ["install_models", "models_config_from_env"]


def models_config_from_env(environ: Mapping[str, str] | None = None) -> ModelsConfig | None:
    """The models file named by ``LUCKY_MODELS_CONFIG`` with the environment's overrides applied;
    None when neither is set (the built-in defaults apply)."""
    env = os.environ if environ is None else environ
    path = env.get("LUCKY_MODELS_CONFIG")
    config = load_models_config(Path(path)) if path else ModelsConfig()
    updates: dict[str, object] = {}
    provider = env.get("LUCKY_PROVIDER")
    if provider:
        updates["provider"] = provider
    providers = _endpoints_from_env(config.providers, env)
    if providers is not None:
        updates["providers"] = providers
    if not path and not updates:
        return None
    return config.model_copy(update=updates) if updates else config


def _endpoints_from_env(
    configured: Mapping[str, ProviderConfig], env: Mapping[str, str]
) -> dict[str, ProviderConfig] | None:
    """Configured providers whose endpoint variable is set get that endpoint."""
    builtins = builtin_providers()
    changed = False
    providers: dict[str, ProviderConfig] = {}
    for name, cfg in configured.items():
        variable = cfg.api_base_env or (builtins[name].api_base_env if name in builtins else None)
        value = env.get(variable) if variable else None
        if value and cfg.api_base is not None and str(cfg.api_base).rstrip("/") != value.rstrip("/"):
            cfg = ProviderConfig.model_validate({**cfg.model_dump(exclude_unset=True), "api_base": value})
            changed = True
        providers[name] = cfg
    return providers if changed else None


def install_models() -> Models:
    """Build the proxy's registry (a broken file raises here: the proxy stops at startup) and make
    it the default one, which the hook and the provider use.

    Only inside a LiteLLM proxy process: a program that merely imports this package (a test, a
    script using the launcher) keeps its own default registry."""
    if "litellm.proxy.proxy_server" not in sys.modules:
        return default_models()
    models = Models(models_config_from_env())
    set_default_models(models)
    return models
