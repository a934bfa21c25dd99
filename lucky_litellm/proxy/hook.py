"""The hook (a LiteLLM `CustomLogger`): who calls, what runs, which route, and what the client sees.

Before the proxy routes a request it works out who is calling (`identity`), validates the spec,
checks access and budget and takes the rollout decision, answering bad requests with a clean
OpenAI-shaped 400/403/404/429 before anything is called. Then it picks the route
(`routes.deployment_route`): a one-model request goes to a Router deployment of that model,
everything else to the ``lucky`` provider (`provider`). After the call it makes the answer say
who answered (``model``, ``x-lucky-*`` headers), guards streams (`relay.StreamGuard`), and turns
errors into the statuses and headers of `errors`. While a guarded rollout runs it records each
request's outcome, latency and cost on its rollout path, whichever route served it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from litellm.integrations.custom_logger import CustomLogger

from ..errors import LuckyError, StrategyTimeoutError, StreamingNotSupportedError
from ..registry import default_models
from .context import CONTEXT_KEY, ProxySettings, RequestContext, context_of, is_lucky_name
from .errors import NO_RETRY, HttpError, http_error, is_mapped, upstream_error
from .identity import identify
from .provider import in_engine_call, price_engine_response
from .relay import StreamGuard
from .routes import ROUTE_PREFIX, deployment_route, engine_deployment

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from fastapi import HTTPException

__all__ = ["CLIENT_CREDENTIAL_FIELDS", "LuckyHook"]

_CHAT_CALL_TYPES = frozenset({"acompletion", "completion"})
_RAW_MODEL_NAME_KEY = "_complexity_router_return_raw_model_name"
"""litellm.constants.RETURN_RAW_MODEL_NAME_METADATA_KEY: keep the answering model in ``model``
instead of the proxy's restamp to the requested name."""

CLIENT_CREDENTIAL_FIELDS = frozenset(
    {"api_base", "base_url", "api_key", "api_version", "organization", "headers", "extra_headers"}
)
"""Request fields that would point lucky's calls at another endpoint or key. They are removed
from lucky requests unless the operator allows client-side credentials
(``general_settings.allow_client_side_credentials: true``, LiteLLM's own switch)."""

_log = logging.getLogger(__name__)


class LuckyHook(CustomLogger):
    """Validates, authorises and routes ``tier:`` / ``user:`` requests before the proxy does."""

    def __init__(self, settings: ProxySettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ProxySettings.from_env()

    # -- before the call -------------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        metadata.pop(CONTEXT_KEY, None)  # a client-sent value must never pass for ours
        model = data.get("model")
        if isinstance(model, str) and model.startswith(ROUTE_PREFIX):
            error = ValueError(f"{model!r} is internal to lucky_litellm; ask for the tier or experiment")
            raise http_error(error).as_proxy_exception()
        if str(getattr(call_type, "value", call_type)) not in _CHAT_CALL_TYPES:
            if is_lucky_name(model):
                error = ValueError(f"{model!r}: lucky_litellm specs are served on /v1/chat/completions only")
                raise http_error(error).as_proxy_exception()
            return data
        ctx = RequestContext(identify(user_api_key_dict, data), data.get("litellm_call_id"))
        metadata[CONTEXT_KEY] = ctx
        if not is_lucky_name(model):
            return data  # plain names: the proxy's own deployments, or the engine via a lucky/* group
        metadata[_RAW_MODEL_NAME_KEY] = True
        _take_credentials(ctx, data)
        models = default_models()
        try:
            ctx.prepare(str(model), models)
            assert ctx.plan is not None
            if data.get("stream") and ctx.plan.strategy == "consensus":
                raise StreamingNotSupportedError(
                    f"{model!r} uses consensus, which needs whole answers; call it without stream"
                )
        except Exception as exc:
            if not is_mapped(exc):  # a bug, not a bad request: keep the traceback in the proxy's log
                _log.exception("lucky_litellm hook failed for %r", model)
            raise http_error(exc).as_proxy_exception() from None
        recorder = models.state.guard.recording  # None unless a guarded rollout runs
        if recorder is not None:
            ctx.guard = (recorder, time.perf_counter())
        deployment = deployment_route(ctx, models) if self.settings.deployment_route else None
        if deployment is None:
            ctx["route"] = "engine"
            data["model"] = engine_deployment(str(model), str(ctx["spec"])) or model
            return data
        plan = ctx.plan
        ctx.update(route=f"deployment:{deployment}", winner=plan.targets[0].spec)
        data["model"] = deployment
        for key, value in plan.params.items():
            data.setdefault(key, value)
        data["timeout"] = plan.timeout_s  # the deadline, not LiteLLM's 600 s default
        data["num_retries"] = 0  # a Router retry would run past the deadline
        return data

    # -- after the call --------------------------------------------------------------------------

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> Any:
        """The engine's nested calls: priced here, once (see `provider.price_engine_response`)."""
        if in_engine_call():
            price_engine_response(request_data, response)
        return None

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        ctx = context_of(data.get("metadata"))
        if ctx is None or "spec" not in ctx:
            return response
        if ctx.get("route") != "engine":
            cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
            ctx["cost_usd"] = float(cost) if isinstance(cost, int | float) else 0.0
        if ctx.get("winner") and hasattr(response, "model"):
            response.model = ctx["winner"]
        if ctx.guard is not None:
            _record(ctx, ok=True)
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        ctx = context_of(request_data.get("metadata"))
        if ctx is None or "spec" not in ctx:
            async for chunk in response:
                yield chunk
            return
        try:
            async for chunk in StreamGuard(response, ctx):
                yield chunk
        except Exception as exc:
            if ctx.guard is not None:
                _record(ctx, ok=False, error=ctx.error or exc)
            raise
        if ctx.guard is not None:
            _record(ctx, ok=True)  # the whole stream: its cost is known now

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> HTTPException | None:
        """Give errors raised after the hook the same clean answers the hook gives."""
        ctx = context_of(request_data.get("metadata"))
        if ctx is None or "spec" not in ctx:
            return None
        if ctx.guard is not None:
            _record(ctx, ok=False, error=ctx.error or original_exception)
        error = _answer_for(ctx, original_exception)
        return error.as_exception() if error is not None else None

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        ctx = context_of(data.get("metadata"))
        if ctx is None or "spec" not in ctx or not self.settings.response_headers:
            return None
        if data.get("stream") and response is not None:
            # The proxy reads this same dict again once the first chunk is in, so what becomes
            # known by then (the engine's winner) still makes it into the headers.
            ctx.stream_headers.update(ctx.headers())
            return ctx.stream_headers
        return ctx.headers()


def _record(ctx: RequestContext, *, ok: bool, error: BaseException | None = None) -> None:
    """Count this request for the running guard, once: its path, outcome, latency and cost (a
    refusal caused by the caller, such as a budget, is not the path's failure)."""
    from ..guard.recorder import CALLER_ERRORS
    from ..guard.summary import CallObservation

    guard, ctx.guard = ctx.guard, None
    if guard is None or isinstance(error, CALLER_ERRORS):
        return
    recorder, started = guard
    cost = ctx.get("cost_usd") if ok else 0.0
    try:
        observation = CallObservation(
            path="legacy" if ctx.legacy else "registry",
            ok=ok,
            latency_s=time.perf_counter() - started,
            cost_usd=float(cost) if isinstance(cost, int | float) and cost >= 0 else 0.0,
        )
        recorder.record(observation, str(ctx.get("request_id") or id(ctx)))
    except Exception:  # recording must never change the answer
        _log.exception("lucky_litellm could not record a request for the guarded rollout")


def _answer_for(ctx: RequestContext, exc: BaseException) -> HttpError | None:
    """The answer for a failed lucky request, or None to keep LiteLLM's own."""
    if ctx.error is not None and is_mapped(ctx.error):
        return http_error(ctx.error)
    if isinstance(exc, LuckyError):
        return http_error(exc)
    if _is_timeout(exc) and ctx.plan is not None:  # the deadline, passed as the call's timeout
        return http_error(StrategyTimeoutError(str(ctx["spec"]), ctx.plan.timeout_s, []))
    error = upstream_error(exc)
    if error is not None:
        return error
    if getattr(exc, "status_code", None) == 500:  # a reset or protocol error: the upstream's fault
        return HttpError(502, _message(exc), type(exc).__name__, dict(NO_RETRY))
    return None


def _message(exc: BaseException) -> str:
    from ..errors import redact

    return redact(str(getattr(exc, "message", exc)))[:2000]


def _is_timeout(exc: BaseException) -> bool:
    return any(cls.__name__ in ("Timeout", "APITimeoutError") for cls in type(exc).__mro__)


def _take_credentials(ctx: RequestContext, data: dict[str, Any]) -> None:
    """Remove client-chosen endpoints and keys from a lucky request; keep them for the engine
    only when the operator allows client-side credentials, as LiteLLM itself does."""
    found = {key: data.pop(key) for key in CLIENT_CREDENTIAL_FIELDS & data.keys()}
    if found and _client_credentials_allowed():
        ctx.credentials = found


def _client_credentials_allowed() -> bool:
    try:
        from litellm.proxy.proxy_server import general_settings
    except ImportError:  # pragma: no cover - outside a proxy
        return False
    return bool(general_settings.get("allow_client_side_credentials") is True)
