"""lucky_litellm inside a LiteLLM proxy: tiers, user experiments and strategies for any OpenAI client.

Add to the proxy's ``config.yaml`` (full example: ``configs/proxy.yaml``)::

    model_list:
      - model_name: "tier:*"
        litellm_params: {model: "lucky/tier:*", num_retries: 0,
                         input_cost_per_token: 0, output_cost_per_token: 0}
      - model_name: "user:*"
        litellm_params: {model: "lucky/user:*", num_retries: 0,
                         input_cost_per_token: 0, output_cost_per_token: 0}
    litellm_settings:
      custom_provider_map: [{provider: lucky, custom_handler: lucky_litellm.proxy.handler}]
      callbacks: ["lucky_litellm.proxy.hook"]

and point ``LUCKY_MODELS_CONFIG`` at a ``models.yaml`` (providers, tiers, ``users:``, ``rollout:``).

Two objects share the work:

* `hook` (a `CustomLogger`) runs before the proxy routes a request. It works out who is calling
  (`proxy_identity`), validates the spec, checks access and budget, and takes the rollout decision,
  answering bad requests with a clean 400/403/404/429 before anything is called. When the request
  needs exactly one model that the proxy already serves as a deployment, it rewrites
  ``data["model"]`` to that deployment, so the proxy calls it directly with no extra layer (the
  *deployment route*). It stamps a `RequestContext` into the request's metadata.
* `handler` (a `CustomLLM`, provider ``lucky``) serves everything else (the *engine route*): it runs
  the strategy through `Models.run_plan` (or the one legacy call) with nested ``litellm.acompletion``
  calls marked ``no-log`` so the proxy logs and bills the request once, with the cost of every
  attempt (race losers included).

Errors raised by the handler are turned into the same clean answers by the hook's failure
callback, and ``x-lucky-*`` response headers say how each request was served.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from litellm.integrations.custom_logger import CustomLogger
from litellm.llms.custom_llm import CustomLLM, CustomLLMError

from .errors import BudgetExceededError, UnknownUserError
from .plan import Plan
from .providers import Target
from .proxy_errors import http_error, is_mapped
from .proxy_identity import Identity, check_access, identify
from .proxy_routes import deployment_route
from .proxy_stream import StreamRelay
from .registry import Models, default_models
from .rollout import Rollout
from .routing import routing_of
from .spec import parse_spec

if TYPE_CHECKING:
    from fastapi import HTTPException

__all__ = ["CONTEXT_KEY", "LuckyHook", "LuckyProvider", "ProxySettings", "RequestContext", "handler", "hook"]

CONTEXT_KEY = "lucky"
"""Key of the `RequestContext` in the request's ``metadata`` (visible in the proxy's logs)."""

LUCKY_PREFIXES = ("tier:", "user:")
_CHAT_CALL_TYPES = frozenset({"acompletion", "completion"})
_DROPPED_PARAMS = frozenset({"stream", "stream_options", "max_retries", "num_retries"})
_MAX_NESTING = 1
_ASYNC_ONLY = "the lucky provider is async-only: use it through the proxy"
_log = logging.getLogger(__name__)
_nesting: contextvars.ContextVar[int] = contextvars.ContextVar("lucky_proxy_nesting", default=0)


@dataclass(frozen=True)
class ProxySettings:
    """Switches read from the environment when the proxy loads this module."""

    deployment_route: bool = True
    """``LUCKY_PROXY_DEPLOYMENT_ROUTE=0`` sends single-model requests through the engine too."""
    response_headers: bool = True
    """``LUCKY_PROXY_HEADERS=0`` leaves out the ``x-lucky-*`` response headers."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        env = os.environ if environ is None else environ

        def flag(name: str) -> bool:
            return env.get(name, "1").strip().lower() not in ("0", "false", "no", "off")

        return cls(
            deployment_route=flag("LUCKY_PROXY_DEPLOYMENT_ROUTE"),
            response_headers=flag("LUCKY_PROXY_HEADERS"),
        )


class RequestContext(dict[str, Any]):
    """What the hook decided for one request, handed to the provider through the metadata.

    The items are plain JSON values, so the proxy's loggers can record them. Python objects
    (the plan, the error) live in attributes, out of any serialisation. Because it is a class of
    our own, a client cannot forge it: the hook drops whatever a body sends under the same key,
    and the provider accepts nothing but an instance of this class.
    """

    def __init__(self, identity: Identity, request_id: str | None) -> None:
        super().__init__(
            caller=identity.user_id,
            admin=identity.admin,
            identity_source=identity.source,
            request_id=request_id,
        )
        self.plan: Plan | None = None
        self.target: Target | None = None
        self.error: BaseException | None = None

    @property
    def owner(self) -> str | None:
        owner = self.get("owner")
        return owner if isinstance(owner, str) else None

    def identity(self) -> Identity:
        return Identity(self.get("caller"), bool(self.get("admin")), str(self.get("identity_source")))

    def prepare(self, name: str, models: Models) -> None:
        """Resolve `name` for this caller: access, rollout path, plan or legacy target, budget."""
        spec = parse_spec(name)
        owner = self.get("caller")
        if spec.kind == "user":
            assert spec.user_id is not None
            check_access(self.identity(), spec.user_id)
            owner = spec.user_id
        decision = Rollout(models).decide(owner)
        self.update(spec=spec.raw, owner=owner, rollout_path=decision.path, rollout_reason=decision.reason)
        if decision.path == "legacy":
            self.target = models.legacy_target(spec, user_id=owner)
            self.update(strategy="first", models=[self.target.spec])
            return
        self.plan = models.resolve(spec, user_id=owner)
        self.update(strategy=self.plan.strategy, models=self.plan.models)
        _check_budget(models, owner)

    def headers(self) -> dict[str, str]:
        keys = {
            "x-lucky-spec": "spec",
            "x-lucky-rollout-path": "rollout_path",
            "x-lucky-route": "route",
            "x-lucky-strategy": "strategy",
            "x-lucky-winner": "winner",
            "x-lucky-cost-usd": "cost_usd",
        }
        headers = {header: str(self[key]) for header, key in keys.items() if self.get(key) is not None}
        if self.get("models"):
            headers["x-lucky-models"] = ",".join(self["models"])
        return {name: value.encode("ascii", "replace").decode("ascii") for name, value in headers.items()}


def _check_budget(models: Models, owner: str | None) -> None:
    """Refuse before routing when the owner has already spent their costLimit."""
    if owner is None:
        return
    try:
        limit = models.user_config(owner).defaults.cost_limit
    except UnknownUserError:
        return
    if limit is not None:
        spent = models.store.spent(owner)
        if spent >= limit:
            raise BudgetExceededError(owner, spent, limit)


def context_of(metadata: object) -> RequestContext | None:
    value = metadata.get(CONTEXT_KEY) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, RequestContext) else None


def is_lucky_name(model: object) -> bool:
    return isinstance(model, str) and model.startswith(LUCKY_PREFIXES)


# -- the hook ------------------------------------------------------------------------------------


class LuckyHook(CustomLogger):
    """Validates, authorises and routes ``tier:`` / ``user:`` requests before the proxy does."""

    def __init__(self, settings: ProxySettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ProxySettings.from_env()

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        metadata.pop(CONTEXT_KEY, None)  # a client-sent value must never pass for ours
        model = data.get("model")
        if str(getattr(call_type, "value", call_type)) not in _CHAT_CALL_TYPES:
            if is_lucky_name(model):
                error = ValueError(f"{model!r}: lucky_litellm specs are served on /chat/completions only")
                raise http_error(error).as_exception()
            return data
        ctx = RequestContext(identify(user_api_key_dict, data), data.get("litellm_call_id"))
        metadata[CONTEXT_KEY] = ctx
        if not is_lucky_name(model):
            return data  # plain names: the proxy's own deployments, or the engine via a lucky/* group
        models = default_models()
        try:
            ctx.prepare(str(model), models)
            if data.get("stream") and ctx.plan is not None and ctx.plan.strategy == "consensus":
                raise ValueError(
                    f"{model!r} uses consensus, which needs whole answers; call it without stream"
                )
        except Exception as exc:
            if not is_mapped(exc):  # a bug, not a bad request: keep the traceback in the proxy's log
                _log.exception("lucky_litellm hook failed for %r", model)
            raise http_error(exc).as_exception() from None
        deployment = deployment_route(ctx, models) if self.settings.deployment_route else None
        if deployment is None:
            ctx["route"] = "engine"
            return data
        ctx["route"] = f"deployment:{deployment}"
        data["model"] = deployment
        if ctx.plan is not None:
            for key, value in ctx.plan.params.items():
                data.setdefault(key, value)
            data.setdefault("timeout", ctx.plan.timeout_s)
        return data

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> HTTPException | None:
        """Give errors raised inside the provider the same clean answer the hook gives."""
        ctx = context_of(request_data.get("metadata"))
        if ctx is not None and ctx.error is not None and is_mapped(ctx.error):
            return http_error(ctx.error).as_exception()
        return None

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
        return ctx.headers()


# -- the provider --------------------------------------------------------------------------------


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
        relay = StreamRelay(stream, ctx.target.litellm_model if ctx.target is not None else None)
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


async def _run(
    ctx: RequestContext,
    models: Models,
    messages: list[Any],
    optional_params: Mapping[str, Any],
    *,
    stream: bool,
) -> Any:
    kwargs = {key: value for key, value in optional_params.items() if key not in _DROPPED_PARAMS}
    kwargs["no-log"] = True  # the outer proxy call is the one logged and billed
    owner = ctx.owner
    request_id = ctx.get("request_id")
    if ctx.target is not None:  # legacy path: one plain call, no retries added
        kwargs["max_retries"] = 0
        if stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
        return await Rollout(models).legacy_complete(
            ctx["spec"], messages, user_id=owner, request_id=request_id, **kwargs
        )
    assert ctx.plan is not None
    if stream:  # the relay needs the upstream's usage; LiteLLM decides what the client sees
        kwargs["stream_options"] = {"include_usage": True}
    return await models.run_plan(
        ctx.plan,
        messages,
        user_id=owner,
        request_id=request_id,
        stream=stream,
        rollout_path="registry",
        **kwargs,
    )


def _raise_for_provider(exc: Exception) -> NoReturn:
    """Our errors leave as a `CustomLLMError`, whose status LiteLLM keeps; upstream errors (the
    legacy path's) leave unchanged, since LiteLLM already maps them."""
    if not is_mapped(exc):
        raise exc
    error = http_error(exc)
    raise CustomLLMError(status_code=error.status, message=error.message) from exc


handler = LuckyProvider()
hook = LuckyHook()
default_models()  # load LUCKY_MODELS_CONFIG now: a broken config stops the proxy at startup
