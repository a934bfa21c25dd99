"""lucky_litellm: model tiers, YAML experiments, multi-model strategies, rollout flags and
OpenTelemetry cost tracing on top of LiteLLM.

    import lucky_litellm as ll
    resp = await ll.complete("tier:medium", messages=[{"role": "user", "content": "hi"}])
    ll.routing_of(resp).winner

Importing the package is cheap: litellm is imported on the first call, and the modules behind
the public names below are loaded when a name is first used.
"""

import importlib as _importlib
from collections.abc import Mapping as _Mapping
from collections.abc import Sequence as _Sequence
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .errors import (
    AllModelsFailedError,
    AttemptTimeoutError,
    BudgetExceededError,
    CircuitOpenError,
    ConcurrencyLimitError,
    ConfigError,
    ConfigIssue,
    ConsensusError,
    EmptyAnswerError,
    IncompleteStreamError,
    InvalidArgumentError,
    InvalidMessagesError,
    LuckyError,
    MiddlewareError,
    ModelSpecError,
    NoModelsAvailableError,
    ProviderDisabledError,
    StrategyTimeoutError,
    StreamingNotSupportedError,
    UnknownExperimentError,
    UnknownTierError,
    UnknownUserError,
    UnpricedModelError,
    UsageError,
)
from .routing import Attempt, Routing, routing_of
from .spec import ModelSpec, parse_spec

if _TYPE_CHECKING:
    from .alerts import CostAlert
    from .config import (
        ExperimentConfig,
        ModelResult,
        ModelsConfig,
        ProviderConfig,
        Result,
        TierConfig,
        UserConfig,
        load_models_config,
        load_user_config,
        safe_validate_models_config,
        safe_validate_user_config,
        validate_models_config,
        validate_user_config,
    )
    from .guard.control import feedback, feedback_sync
    from .plan import Plan
    from .registry import Models, create_models, default_models, set_default_models
    from .stream import LuckyStream

__version__ = "0.1.0"

_LAZY = {
    "ExperimentConfig": "config",
    "ModelResult": "config",
    "ModelsConfig": "config",
    "ProviderConfig": "config",
    "Result": "config",
    "TierConfig": "config",
    "UserConfig": "config",
    "load_models_config": "config",
    "load_user_config": "config",
    "safe_validate_models_config": "config",
    "safe_validate_user_config": "config",
    "validate_models_config": "config",
    "validate_user_config": "config",
    "Plan": "plan",
    "CostAlert": "alerts",
    "Models": "registry",
    "create_models": "registry",
    "default_models": "registry",
    "set_default_models": "registry",
    "LuckyStream": "stream",
    "feedback": "guard.control",
    "feedback_sync": "guard.control",
}

__all__ = [
    "AllModelsFailedError",
    "Attempt",
    "AttemptTimeoutError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConcurrencyLimitError",
    "ConfigError",
    "ConfigIssue",
    "ConsensusError",
    "CostAlert",
    "EmptyAnswerError",
    "ExperimentConfig",
    "IncompleteStreamError",
    "InvalidArgumentError",
    "InvalidMessagesError",
    "LuckyError",
    "LuckyStream",
    "MiddlewareError",
    "ModelResult",
    "ModelSpec",
    "ModelSpecError",
    "Models",
    "ModelsConfig",
    "NoModelsAvailableError",
    "Plan",
    "ProviderConfig",
    "ProviderDisabledError",
    "Result",
    "Routing",
    "StrategyTimeoutError",
    "StreamingNotSupportedError",
    "TierConfig",
    "UnknownExperimentError",
    "UnknownTierError",
    "UnknownUserError",
    "UnpricedModelError",
    "UsageError",
    "UserConfig",
    "complete",
    "complete_sync",
    "create_models",
    "default_models",
    "feedback",
    "feedback_sync",
    "load_models_config",
    "load_user_config",
    "parse_spec",
    "routing_of",
    "safe_validate_models_config",
    "safe_validate_user_config",
    "set_default_models",
    "validate_models_config",
    "validate_user_config",
]


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lucky_litellm' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Only the public API: helpers, submodules and typing names imported here are not part of it."""
    return sorted(__all__)


async def complete(spec: str | None, messages: _Sequence[_Mapping[str, _Any]], **kwargs: _Any) -> _Any:
    """Run `spec` on the default registry; returns litellm's `ModelResponse` (or a stream).

    `spec=None` runs the registry's `defaultTier`. Keyword arguments are litellm's (`temperature`,
    `max_tokens`, `stream`, ...) plus `user_id` and `request_id`.
    """
    from .registry import default_models

    return await default_models().complete(spec, messages, **kwargs)


def complete_sync(spec: str | None, messages: _Sequence[_Mapping[str, _Any]], **kwargs: _Any) -> _Any:
    """`complete` for synchronous code."""
    from .registry import default_models

    return default_models().complete_sync(spec, messages, **kwargs)
