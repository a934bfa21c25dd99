"""Typed configuration: the models registry config (`models.yaml`) and per-user experiment configs.

The YAML files are written in camelCase (``maxCost``, ``hedgeAfter``); Python callers may use the
snake_case field names. Both spellings are accepted everywhere, and unknown keys are errors, because
a typo such as ``stratgy`` that silently falls back to a default is the worst kind of config bug.
Durations are milliseconds in YAML (``timeout: 10000``) and each has a ``*_s`` property in seconds.

Validation never stops at the first problem: `validate_*` raise one `ConfigError` listing every
issue with its dotted path and, when the data came from YAML, the file and line. Input values are
never echoed (a pasted API key must not end up in a log), except for short did-you-mean hints.

The parts: `schema` (the pydantic models and their field rules), `params` (the ``params``
allow-list), `issues` (pydantic errors → file:line issues), `load` (validate and load), `resolve`
(checks against the built registry: providers exist, tiers exist, tier options are used).

Where settings come from, highest first: environment variables (``LUCKY_PROVIDER``, each
provider's endpoint variable such as ``LUCKY_LOCAL_API_BASE`` or its ``apiBaseEnv``,
``LUCKY_STATE_URL``), then the models file, then the built-in defaults; the same order in the
library, the CLI and the proxy. An explicit argument in code (``build_tier_config(provider=...)``)
is above all three.

This package must not import litellm: `import lucky_litellm` stays cheap.
"""

from __future__ import annotations

from ..yaml_loader import DEFAULT_LIMITS, YamlLimits, load_yaml
from .issues import ConfigWarning
from .load import (
    ConfigSource,
    load_models_config,
    load_user_config,
    load_user_configs,
    safe_validate_models_config,
    safe_validate_user_config,
    source_lines,
    validate_models_config,
    validate_user_config,
)
from .params import GENERATION_PARAMS, PROVIDER_PARAMS
from .schema import (
    DEFAULT_ALIASES,
    MAX_CONCURRENT,
    MAX_COST_USD,
    MAX_MILLIS,
    STRATEGIES,
    CircuitConfig,
    ExperimentConfig,
    HealthConfig,
    Millis,
    ModelResult,
    ModelsConfig,
    OutagePolicy,
    ProviderConfig,
    RequestDefaults,
    Result,
    RolloutConfig,
    StateConfig,
    Strategy,
    StrictModel,
    TelemetryConfig,
    TierConfig,
    UserConfig,
    UserDefaults,
    WhenAllOpen,
)

__all__ = [
    "DEFAULT_ALIASES",
    "DEFAULT_LIMITS",
    "GENERATION_PARAMS",
    "MAX_CONCURRENT",
    "MAX_COST_USD",
    "MAX_MILLIS",
    "PROVIDER_PARAMS",
    "STRATEGIES",
    "CircuitConfig",
    "ConfigSource",
    "ConfigWarning",
    "ExperimentConfig",
    "HealthConfig",
    "Millis",
    "ModelResult",
    "ModelsConfig",
    "OutagePolicy",
    "ProviderConfig",
    "RequestDefaults",
    "Result",
    "RolloutConfig",
    "StateConfig",
    "Strategy",
    "StrictModel",
    "TelemetryConfig",
    "TierConfig",
    "UserConfig",
    "UserDefaults",
    "WhenAllOpen",
    "YamlLimits",
    "load_models_config",
    "load_user_config",
    "load_user_configs",
    "load_yaml",
    "safe_validate_models_config",
    "safe_validate_user_config",
    "source_lines",
    "validate_models_config",
    "validate_user_config",
]
