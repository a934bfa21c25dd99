"""The environment variables that override the models file: checked, and named when they do.

The environment wins over the models file (``LUCKY_PROVIDER``, each provider's endpoint variable
such as ``LUCKY_LOCAL_API_BASE``, ``LUCKY_STATE_URL``). Two things follow from that precedence:

* a bad value that came from a variable is reported under the variable's name
  (``LUCKY_LOCAL_API_BASE='notaurl': must be an http:// or https:// URL``), since the models file,
  which a reader would search, does not contain it;
* a variable that replaces a value the config set explicitly is logged once (logger
  ``lucky_litellm``, INFO), so an exported variable never silently beats what the code says.

This module must not import litellm: `import lucky_litellm` stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import ConfigIssue

if TYPE_CHECKING:
    from .schema import ModelsConfig, ProviderConfig

__all__ = [
    "PROVIDER_ENV",
    "STATE_URL_ENV",
    "api_base_issues",
    "env_issue",
    "env_overrides",
    "is_http_url",
    "log_env_overrides",
]

logger = logging.getLogger("lucky_litellm")

PROVIDER_ENV = "LUCKY_PROVIDER"
STATE_URL_ENV = "LUCKY_STATE_URL"


def is_http_url(value: str) -> bool:
    """What litellm can send to as an ``api_base``: an http:// or https:// URL with a host."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _shown(value: str) -> str:
    """The value as a reader may see it: never credentials embedded in a URL, never pages of it."""
    if "@" in value:
        return "<hidden: contains '@'>"
    return repr(value if len(value) <= 80 else value[:77] + "...")


def env_issue(variable: str, value: str, message: str) -> ConfigIssue:
    """A problem with a value that came from `variable`: ``NAME='value': message``."""
    return ConfigIssue(f"{variable}={_shown(value)}", message)


def api_base_issues(providers: Mapping[str, ProviderConfig], environ: Mapping[str, str]) -> list[ConfigIssue]:
    """Endpoint variables (``apiBaseEnv``, e.g. ``LUCKY_LOCAL_API_BASE``) set to something that is not
    an http(s) URL, as ``apiBase`` itself would be refused at load."""
    issues: list[ConfigIssue] = []
    for name, cfg in providers.items():
        variable = cfg.api_base_env
        value = environ.get(variable) if variable else None
        if variable and value and not is_http_url(value):
            issues.append(
                env_issue(
                    variable,
                    value,
                    f"must be an http:// or https:// URL (the endpoint of provider {name!r}; "
                    f"it overrides providers.{name}.apiBase)",
                )
            )
    return issues


def env_overrides(config: ModelsConfig, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, setting) for every variable that replaces a value the config set explicitly."""
    found: list[tuple[str, str]] = []
    if config.provider and environ.get(PROVIDER_ENV) and environ[PROVIDER_ENV] != config.provider:
        found.append((PROVIDER_ENV, "provider"))
    from ..providers import builtin_providers

    builtin = builtin_providers()
    for name, cfg in config.providers.items():
        variable = cfg.api_base_env or (builtin[name].api_base_env if name in builtin else None)
        if cfg.api_base is not None and variable and environ.get(variable):
            found.append((variable, f"providers.{name}.apiBase"))
    state_url = config.rollout.state_url
    if state_url and environ.get(STATE_URL_ENV) and environ[STATE_URL_ENV] != state_url:
        found.append((STATE_URL_ENV, "rollout.stateUrl"))
    return found


def log_env_overrides(overrides: Sequence[tuple[str, str]]) -> None:
    """One INFO line per override: which variable, which explicit setting it beats (no values:
    an endpoint URL may carry credentials)."""
    for variable, setting in overrides:
        logger.info(
            "environment variable %s overrides %s given in the config (the environment wins over the "
            "models file; unset %s to use the config's value)",
            variable,
            setting,
            variable,
        )
