"""What a config's ``params`` may pass to `litellm.acompletion`: an allow-list, not a deny-list.

A user's experiment YAML is written by many people, but its calls go out with the operator's
provider keys. Every keyword litellm accepts that can redirect traffic or credentials
(``api_base``, ``base_url``, ``api_key``, ``extra_headers``, ``extra_body``, ...) would send that key
elsewhere, and its own switches (``num_retries``, ``stream``, ``timeout``, ``fallbacks``) would undo
lucky_litellm's retries, deadlines and stream handling. A deny-list misses the next such keyword
litellm adds; so user configs may set only the generation parameters below, and the operator's
``providers.<name>.params`` may additionally set the connection options in `PROVIDER_PARAMS`.

Values are bounded too: numbers finite, structures small (an alias bomb or a huge ``tools`` list
would otherwise be copied on every call).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from pydantic_core import PydanticCustomError

__all__ = [
    "GENERATION_PARAMS",
    "MAX_PARAM_DEPTH",
    "MAX_PARAM_VALUES",
    "PROVIDER_PARAMS",
    "check_params",
    "check_provider_params",
]

GENERATION_PARAMS: frozenset[str] = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "reasoning_effort",
        "thinking",
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
        "verbosity",
    }
)
"""What a user's experiment may set: how the answer is generated, never where it goes."""

PROVIDER_PARAMS: frozenset[str] = frozenset({"api_version", "organization", "extra_headers", "extra_body"})
"""Connection options the operator may add per provider in models.yaml (on top of GENERATION_PARAMS)."""

MAX_PARAM_VALUES = 10_000
"""Most values (scalars, lists and mappings counted alike) one ``params`` mapping may hold."""
MAX_PARAM_DEPTH = 32

_CREDENTIALS = (
    "redirects traffic or credentials, so a config cannot set it; configure the provider in "
    "models.yaml (providers.<name>: apiBase, apiKeyEnv)"
)
_REFUSED: Mapping[str, str] = {
    "model": "is chosen by lucky_litellm from the spec",
    "messages": "is passed per request",
    "api_key": "must not be written in a config file; set the provider's apiKeyEnv instead",
    "stream": "is chosen per request (complete(..., stream=True))",
    "stream_options": "is chosen per request",
    "timeout": "would defeat the experiment's deadline; use the experiment's `timeout` (ms)",
    "num_retries": "lucky_litellm does the retries; use the experiment's `retries`",
    "max_retries": "lucky_litellm does the retries; use the experiment's `retries`",
    "retry_policy": "lucky_litellm does the retries; use the experiment's `retries`",
    "fallbacks": "use strategy: fallback with a providers list",
    "context_window_fallback_dict": "use strategy: fallback with a providers list",
    "mock_response": "is a testing switch of litellm",
}


def check_params(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validator of a user experiment's ``params``: generation parameters only."""
    return _check(value, GENERATION_PARAMS)


def check_provider_params(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validator of ``providers.<name>.params`` (operator config): generation and connection options."""
    return _check(value, GENERATION_PARAMS | PROVIDER_PARAMS)


def _check(value: Mapping[str, Any], allowed: frozenset[str]) -> Mapping[str, Any]:
    for key in value:
        if not isinstance(key, str):
            raise PydanticCustomError("lucky_param", "parameter names must be strings")
        if key in allowed:
            continue
        why = _REFUSED.get(key)
        if why is None and key not in allowed:
            if key in PROVIDER_PARAMS or _redirects(key):
                why = _CREDENTIALS
            else:
                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.7)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                why = f"is not an allowed generation parameter{hint}; allowed: {', '.join(sorted(allowed))}"
        raise PydanticCustomError(
            "lucky_param", "'{key}' {why}", {"key": key, "why": why, "loc_suffix": (key,)}
        )
    _check_values(value)
    return value


def _redirects(key: str) -> bool:
    """Keys that name an endpoint, a credential or a header, whatever litellm calls them this year."""
    lowered = key.lower()
    return any(
        word in lowered
        for word in ("base", "url", "key", "token", "header", "secret", "credential", "endpoint", "extra_")
    ) or lowered.startswith(("aws_", "vertex_", "azure_", "watsonx_", "litellm_"))


def _check_values(params: Mapping[str, Any]) -> None:
    """Finite numbers and a bounded structure, without ever walking more than the budget.

    Shared references (a YAML alias, or the same list reused in a Python dict) count once per
    use, which is what copying them on every call costs.
    """
    budget = MAX_PARAM_VALUES
    stack: list[tuple[Any, int, str]] = [(value, 1, key) for key, value in params.items()]
    while stack:
        value, depth, key = stack.pop()
        budget -= 1
        if budget < 0:
            raise PydanticCustomError(
                "lucky_param_size",
                "too large: more than {limit} values",
                {"limit": MAX_PARAM_VALUES},
            )
        if depth > MAX_PARAM_DEPTH:
            raise PydanticCustomError(
                "lucky_param_size",
                "'{key}' is nested deeper than {limit} levels",
                {"key": key, "limit": MAX_PARAM_DEPTH, "loc_suffix": (key,)},
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError(
                "lucky_param_number", "'{key}' must be a finite number", {"key": key, "loc_suffix": (key,)}
            )
        if isinstance(value, Mapping):
            stack.extend((child, depth + 1, key) for child in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((child, depth + 1, key) for child in value)
