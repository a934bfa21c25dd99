"""GenAI semantic-convention names and the helpers that turn litellm objects into attribute values.

The names are spelled out here rather than imported from ``opentelemetry-semantic-conventions``:
that package is an SDK dependency, and lucky_litellm only needs the OpenTelemetry *API* at run
time. The tests check every name against the package.

Everything that depends only on a `Target` (provider, model, server) is computed once per target
and cached; everything that depends on the call's parameters once per request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from ..errors import redact

if TYPE_CHECKING:
    from ..providers import Target

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "input_messages",
    "metric_attributes",
    "output_messages",
    "provider_name",
    "record_attributes",
    "request_attributes",
    "server_of_url",
    "span_attributes",
]

# -- names (checked against opentelemetry-semantic-conventions by the tests) -----------------------

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_TOP_K = "gen_ai.request.top_k"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"

CHAT = "chat"

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""Bucket boundaries (seconds) the GenAI semantic conventions advise for operation duration."""

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
"""Bucket boundaries the GenAI semantic conventions advise for token usage."""

CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
"""Bucket boundaries (seconds) the GenAI semantic conventions advise for time per output chunk."""

# -- providers and servers -------------------------------------------------------------------------

_SEMCONV_PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "sagemaker": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "xai": "x_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "perplexity": "perplexity",
}
"""litellm provider prefix -> `gen_ai.provider.name` well-known value; others keep litellm's name."""

_DEFAULT_HOSTS = {
    "openai": "api.openai.com",
    "text-completion-openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gemini": "generativelanguage.googleapis.com",
    "mistral": "api.mistral.ai",
    "codestral": "codestral.mistral.ai",
    "xai": "api.x.ai",
    "cohere": "api.cohere.ai",
    "cohere_chat": "api.cohere.ai",
    "deepseek": "api.deepseek.com",
    "groq": "api.groq.com",
    "perplexity": "api.perplexity.ai",
    "openrouter": "openrouter.ai",
    "together_ai": "api.together.xyz",
    "fireworks_ai": "api.fireworks.ai",
    "cerebras": "api.cerebras.ai",
    "deepinfra": "api.deepinfra.com",
}
"""Where litellm sends a provider's calls when no api_base is configured (all HTTPS, port 443)."""


def _litellm_provider(provider: str, litellm_model: str) -> str:
    return litellm_model.split("/", 1)[0] if "/" in litellm_model else provider


def provider_name(provider: str, litellm_model: str) -> str:
    """`gen_ai.provider.name`: the semconv value for the API litellm speaks (``gemini`` ->
    ``gcp.gemini``, ``xai`` -> ``x_ai``); providers semconv does not list keep litellm's name."""
    name = _litellm_provider(provider, litellm_model)
    return _SEMCONV_PROVIDERS.get(name, name)


def model_name(litellm_model: str) -> str:
    """The model name the provider itself sees: litellm's routing prefix removed
    (``openrouter/google/gemini-2.5-flash-lite`` -> ``google/gemini-2.5-flash-lite``)."""
    return litellm_model.split("/", 1)[1] if "/" in litellm_model else litellm_model


def server_of_url(url: Any) -> tuple[str | None, int | None]:
    """Host and port of a URL; the port defaults from the scheme. Userinfo is dropped: it could
    hold credentials."""
    if not isinstance(url, str) or not url:
        return None, None
    return _server_of_str(url)


@functools.lru_cache(maxsize=256)
def _server_of_str(url: str) -> tuple[str | None, int | None]:
    """`server_of_url` for a string, cached: a target's api_base is parsed for every attempt."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, None
    if not parts.hostname:
        return None, None
    if port is None:
        port = 80 if parts.scheme == "http" else 443
    return parts.hostname, port


def _server_of(target: Target) -> tuple[str | None, int | None]:
    """The provider's endpoint: the configured api_base, else where litellm calls that provider
    by default. Unknown (e.g. a Bedrock region) -> None; the span then takes it from the response."""
    base = target.kwargs.get("api_base")
    if base:
        return server_of_url(base)
    host = _DEFAULT_HOSTS.get(_litellm_provider(target.provider, target.litellm_model))
    return (host, 443) if host else (None, None)


@functools.lru_cache(maxsize=1024)
def _target_attributes(
    spec: str, provider: str, litellm_model: str, host: str | None, port: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    metric: dict[str, Any] = {
        OPERATION_NAME: CHAT,
        PROVIDER_NAME: provider_name(provider, litellm_model),
        REQUEST_MODEL: model_name(litellm_model),
    }
    if host:
        metric[SERVER_ADDRESS] = host
        if port:
            metric[SERVER_PORT] = port
    return metric, {**metric, "lucky.model": spec}


_by_target: dict[int, tuple[Target, tuple[dict[str, Any], dict[str, Any]]]] = {}
_MAX_TARGETS = 4096


def _cached(target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per target object (a plan's targets live as long as its snapshot): one dict lookup per
    attempt. Not `Target`'s hash: it leaves the kwargs out, and a provider update may move the
    endpoint (api_base) while the spec stays the same."""
    entry = _by_target.get(id(target))
    if entry is not None and entry[0] is target:
        return entry[1]
    host, port = _server_of(target)
    value = _target_attributes(target.spec, target.provider, target.litellm_model, host, port)
    if len(_by_target) >= _MAX_TARGETS:
        _by_target.clear()
    _by_target[id(target)] = (target, value)
    return value


def metric_attributes(target: Target) -> dict[str, Any]:
    """Model, provider and server labels of a target (cached: never mutate the result)."""
    return _cached(target)[0]


def span_attributes(target: Target) -> dict[str, Any]:
    """Attributes an attempt span starts with (cached: never mutate the result)."""
    return _cached(target)[1]


class RecordAttributes(NamedTuple):
    """Label sets of an attempt's metric records, built once per distinct combination and shared
    by every record with it (the SDK copies what it keeps: they are never mutated)."""

    outcome: dict[str, Any]
    """Duration (and stream timings): model, provider, server, strategy, outcome, error type."""
    input_tokens: dict[str, Any]
    output_tokens: dict[str, Any]
    cost: dict[str, Any]
    """Cost: the labels of the token records without the token type."""
    cost_key: tuple[tuple[str, Any], ...]
    """`cost`'s items, hashable: where the cost counter totals it."""


_records: dict[tuple[Any, ...], tuple[dict[str, Any], RecordAttributes]] = {}
_MAX_RECORD_SETS = 4096


def record_attributes(
    base: dict[str, Any],
    server: tuple[str, int | None] | None,
    strategy: str,
    response_model: str | None,
    outcome: str,
    error_type: str | None,
) -> RecordAttributes:
    """The label sets of an attempt's metrics, from its target's `metric_attributes` (`base`),
    the server seen in the response when the target did not say (`server`), and the attempt's
    strategy, response model, outcome and error: one dict lookup once built."""
    key = (id(base), server, strategy, response_model, outcome, error_type)
    entry = _records.get(key)
    if entry is not None and entry[0] is base:
        return entry[1]
    labels: dict[str, Any] = {**base}
    if server is not None:
        labels[SERVER_ADDRESS] = server[0]
        labels[SERVER_PORT] = server[1]
    labels["lucky.strategy"] = strategy
    if response_model:
        labels[RESPONSE_MODEL] = response_model
    with_outcome = {**labels, "lucky.attempt.outcome": outcome}
    if error_type:
        with_outcome[ERROR_TYPE] = error_type
    value = RecordAttributes(
        with_outcome,
        {**labels, TOKEN_TYPE: "input"},
        {**labels, TOKEN_TYPE: "output"},
        labels,
        tuple(sorted(labels.items())),
    )
    if len(_records) >= _MAX_RECORD_SETS:
        _records.clear()
    _records[key] = (base, value)
    return value


# -- request parameters ----------------------------------------------------------------------------

_NUMERIC_PARAMS = (
    ("temperature", REQUEST_TEMPERATURE, float),
    ("top_p", REQUEST_TOP_P, float),
    ("top_k", REQUEST_TOP_K, float),
    ("frequency_penalty", REQUEST_FREQUENCY_PENALTY, float),
    ("presence_penalty", REQUEST_PRESENCE_PENALTY, float),
    ("seed", REQUEST_SEED, int),
    ("max_tokens", REQUEST_MAX_TOKENS, int),
    ("max_completion_tokens", REQUEST_MAX_TOKENS, int),
)


def request_attributes(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`gen_ai.request.*` for the parameters the caller actually passed (none invented)."""
    out: dict[str, Any] = {}
    if not kwargs:
        return out
    for key, name, kind in _NUMERIC_PARAMS:
        value = kwargs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and name not in out:
            out[name] = kind(value)
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        out[REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, Sequence) and stop and all(isinstance(s, str) for s in stop):
        out[REQUEST_STOP_SEQUENCES] = list(stop)
    choices = kwargs.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices != 1:
        out[REQUEST_CHOICE_COUNT] = choices
    return out


# -- messages --------------------------------------------------------------------------------------

_FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}
"""OpenAI finish reasons -> the semconv output message values (stop, length, content_filter,
tool_call, error)."""


def semconv_finish_reason(reason: Any) -> str:
    text = str(reason) if reason else "stop"
    return _FINISH_REASONS.get(text, text)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _tool_call_part(call: Any) -> dict[str, Any]:
    function = _get(call, "function")
    part: dict[str, Any] = {"type": "tool_call", "id": _get(call, "id"), "name": _get(function, "name")}
    arguments = _get(function, "arguments")
    if arguments is not None:
        part["arguments"] = arguments
    return part


def input_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """`gen_ai.input.messages` in the semconv shape: role and parts, JSON-encoded."""
    out = []
    for message in messages:
        content = message.get("content")
        role = str(message.get("role", "user"))
        if isinstance(content, str):
            parts: list[dict[str, Any]] = [{"type": "text", "content": content}]
        elif isinstance(content, list):
            parts = [
                {"type": "text", "content": part.get("text", "")}
                if isinstance(part, Mapping) and part.get("type") == "text"
                else {"type": str(part.get("type", "unknown")) if isinstance(part, Mapping) else "unknown"}
                for part in content
            ]
        else:
            parts = []
        if role == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": content if isinstance(content, str) else None,
                }
            ]
        for call in message.get("tool_calls") or ():
            parts.append(_tool_call_part(call))
        out.append({"role": role, "parts": parts})
    return redact(json.dumps(out, ensure_ascii=False, default=str))


def output_message(text: str | None, tool_calls: Sequence[Any], finish_reason: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "content": text})
    parts.extend(_tool_call_part(call) for call in tool_calls)
    return {"role": "assistant", "parts": parts, "finish_reason": semconv_finish_reason(finish_reason)}


def output_messages(messages: Sequence[dict[str, Any]]) -> str:
    """`gen_ai.output.messages`, JSON-encoded and redacted."""
    return redact(json.dumps(list(messages), ensure_ascii=False, default=str))


def response_output(response: Any) -> list[dict[str, Any]]:
    """Output messages of a whole (non-streamed) response, one per choice."""
    out = []
    for choice in _get(response, "choices") or ():
        message = _get(choice, "message")
        out.append(
            output_message(
                _get(message, "content"), _get(message, "tool_calls") or (), _get(choice, "finish_reason")
            )
        )
    return out


def finish_reasons(response: Any) -> list[str]:
    return [str(r) for r in (_get(c, "finish_reason") for c in _get(response, "choices") or ()) if r]
