"""Provider ``lucky`` (a LiteLLM `CustomLLM`): the engine route.

It serves what the hook did not hand to a deployment: multi-model strategies, and one-model
requests whose owner has a budget or a concurrency limit to hold for the whole request. It runs
the hook's plan through `Models.run_plan` (the legacy path is a one-model plan with no retries),
with nested ``litellm.acompletion`` calls marked ``no-log`` so the proxy logs and bills the
request once, with the cost of every attempt (race losers included).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NoReturn

from litellm.llms.custom_llm import CustomLLM, CustomLLMError

from ..registry import Models, default_models
from ..routing import routing_of
from .context import RequestContext, context_of
from .errors import http_error, is_mapped
from .relay import StreamRelay

__all__ = ["LuckyProvider", "in_engine_call", "price_engine_response"]

_DROPPED_PARAMS = frozenset({"stream", "stream_options", "max_retries", "num_retries"})
_MAX_NESTING = 1
_ASYNC_ONLY = "the lucky provider is async-only: use it through the proxy"
_nesting: contextvars.ContextVar[int] = contextvars.ContextVar("lucky_proxy_nesting", default=0)


class LuckyProvider(CustomLLM):
    """Provider ``lucky``: runs a spec's strategy for the proxy (see the module docstring)."""

    async def acompletion(
        self,
        model: str,
        messages: list[Any],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: Any,
        print_verbose: Any,
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        acompletion: Any = None,
        litellm_params: dict[str, Any] | None = None,
        logger_fn: Any = None,
        headers: dict[str, Any] | None = None,
        timeout: Any = None,
        client: Any = None,
    ) -> Any:
        ctx = _context_for(model, litellm_params)
        response = await _start(ctx, model, messages, optional_params, stream=False)
        routing = routing_of(response)
        ctx.update(winner=routing.winner, cost_usd=routing.cost_usd)
        hidden = response._hidden_params
        hidden["response_cost"] = routing.cost_usd  # every attempt, race losers included
        hidden.pop("additional_headers", None)  # the winner's llm_provider-* headers are internal
        if routing.winner:
            response.model = routing.winner  # the model that answered, as OpenAI's own API does
        return response

    async def astreaming(  # type: ignore[override]
        self,
        model: str,
        messages: list[Any],
        api_base: str,
        custom_prompt_dict: dict[str, Any],
        model_response: Any,
        print_verbose: Any,
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict[str, Any],
        acompletion: Any = None,
        litellm_params: dict[str, Any] | None = None,
        logger_fn: Any = None,
        headers: dict[str, Any] | None = None,
        timeout: Any = None,
        client: Any = None,
    ) -> AsyncIterator[Any]:
        ctx = _context_for(model, litellm_params)
        stream = await _start(ctx, model, messages, optional_params, stream=True)
        relay = StreamRelay(stream)
        ctx["winner"] = relay.winner  # chosen before the first chunk: fallback/race switch only before
        if ctx["winner"]:
            ctx.stream_headers["x-lucky-winner"] = ctx["winner"]
        try:
            async for chunk in relay:
                yield chunk
        except Exception as exc:
            ctx.error = exc
            _raise_for_provider(exc)
        finally:
            await relay.aclose()
            ctx.update(winner=relay.winner, cost_usd=relay.cost_usd)
            # Streamed responses are priced by the proxy at $0 (the group's per-token cost);
            # this is the documented way to add a custom provider's own cost.
            logging_obj.model_call_details["additional_response_cost"] = relay.cost_usd

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        raise CustomLLMError(status_code=501, message=_ASYNC_ONLY)

    def streaming(self, *args: Any, **kwargs: Any) -> Any:
        raise CustomLLMError(status_code=501, message=_ASYNC_ONLY)


def in_engine_call() -> bool:
    """Whether the running code is one of the engine's nested calls (this provider's context)."""
    return _nesting.get() > 0


def price_engine_response(request_data: Mapping[str, Any], response: Any) -> None:
    """Put the price of a nested call's response where litellm looks for one already made.

    litellm prices every response before returning it (model-info lookups, ~0.7 ms of CPU), yet
    nobody reads the nested call's figure but the engine, which prices the attempt from the
    response's usage with a cached price card anyway (`pricing`). Responses with tokens litellm
    prices apart (cache, reasoning, audio), or calls with their own prices, are left to litellm.
    """
    hidden = getattr(response, "_hidden_params", None)
    model = request_data.get("model")
    if not isinstance(hidden, dict) or not isinstance(model, str) or hidden.get("response_cost") is not None:
        return
    if any(key.endswith(("_cost_per_token", "_cost_per_second")) for key in request_data):
        return
    from ..pricing import plain_usage_cost

    cost = plain_usage_cost(model, getattr(response, "usage", None))
    if cost is not None:
        hidden["response_cost"] = cost


def _context_for(model: str, litellm_params: Mapping[str, Any] | None) -> RequestContext:
    if _nesting.get() >= _MAX_NESTING:
        # An engine call reached this provider again (a provider configured with
        # litellmProvider: lucky): the engine never needs that, and it could recurse forever.
        raise CustomLLMError(status_code=508, message=f"{model!r} routes back into the lucky provider")
    ctx = context_of((litellm_params or {}).get("metadata"))
    if ctx is None:
        # Without the hook nobody checked who may run which experiment: refuse rather than guess.
        raise CustomLLMError(
            status_code=500,
            message="lucky_litellm.proxy.hook is not active: add it to litellm_settings.callbacks",
        )
    return ctx


async def _start(
    ctx: RequestContext, model: str, messages: list[Any], optional_params: Mapping[str, Any], *, stream: bool
) -> Any:
    """Prepare (for names the hook did not see) and run the request; errors leave as statuses."""
    token = _nesting.set(_nesting.get() + 1)
    internal = _internal_calls()
    try:
        models = default_models()
        if ctx.get("spec") != model:
            ctx.prepare(model, models)  # a plain name routed here by a lucky/* model group
            ctx["route"] = "engine"
        return await _run(ctx, models, messages, optional_params, stream=stream)
    except Exception as exc:
        ctx.error = exc
        _raise_for_provider(exc)
    finally:
        _nesting.reset(token)
        if internal is not None:
            internal()


async def _run(
    ctx: RequestContext,
    models: Models,
    messages: list[Any],
    optional_params: Mapping[str, Any],
    *,
    stream: bool,
) -> Any:
    kwargs = {key: value for key, value in optional_params.items() if key not in _DROPPED_PARAMS}
    kwargs.update(ctx.credentials)  # only what the operator lets clients choose (see the hook)
    kwargs["no-log"] = True  # the outer proxy call is the one logged and billed
    if stream:  # the relay needs the upstream's usage; LiteLLM decides what the client sees
        kwargs["stream_options"] = {"include_usage": True}
    assert ctx.plan is not None
    return await models.run_plan(
        ctx.plan,
        messages,
        user_id=ctx.owner,
        request_id=ctx.get("request_id"),
        stream=stream,
        rollout_path=str(ctx.get("rollout_path") or "registry"),
        **kwargs,
    )


def _internal_calls() -> Callable[[], None] | None:
    """Mark this request's nested calls as LiteLLM-internal sub-calls; returns the undo.

    This is LiteLLM's own switch for nested sub-calls (``litellm._internal_context``, used by its
    RAG and file-search pipelines): it skips their logging and billing pipeline, which profiling
    showed to be most of what a nested call adds. The outer call is logged and billed once, with
    the cost of every attempt folded in by this provider. Tasks the engine starts (a race's
    attempts) inherit it, as context variables do.
    """
    try:
        from litellm._internal_context import is_internal_call
    except ImportError:  # pragma: no cover - an older LiteLLM: "no-log" alone then
        return None
    token = is_internal_call.set(True)
    return lambda: is_internal_call.reset(token)


def _raise_for_provider(exc: Exception) -> NoReturn:
    """Our errors leave as a `CustomLLMError`, whose status LiteLLM keeps (the hook's failure
    callback restores our headers); other errors leave unchanged, since LiteLLM maps them."""
    if not is_mapped(exc):
        raise exc
    error = http_error(exc)
    raise CustomLLMError(status_code=error.status, message=error.message) from exc
