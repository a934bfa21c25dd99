"""The deployment route: hand a one-model request to a deployment of the proxy's own Router.

Running one model through the engine means a second, nested ``litellm.acompletion`` inside the
proxy's own call: litellm's whole request pipeline (setup, logging object, callbacks, cost) runs
twice, which profiling showed to be most of the engine route's cost. When a request needs exactly
one model, rewriting its ``model`` to a Router deployment of that model makes the proxy's own
call the only one. The operator's deployment is used when there is one (same name, or the same
litellm model at the same ``api_base``); otherwise the hook registers one, once per target, named
``lucky-route/<spec>``, with the operator's provider settings from the models file (so credentials
stay the operator's) and ``num_retries: 0`` (the Router must not retry past the deadline).

The guarantees of the engine stay with the request on this route too: the hook passes the
deadline as the call's ``timeout``, the stream guard (`relay.StreamGuard`) enforces it over the
stream body and turns a cut stream into an error event, and requests whose owner has a
``costLimit`` or ``maxConcurrent``, or whose plan has a ``maxCost``, keep the engine route, where
the reservation and the slot are held for the whole request.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UnknownUserError

if TYPE_CHECKING:
    from ..providers import Target
    from ..registry import Models
    from .context import RequestContext

__all__ = ["ROUTE_PREFIX", "deployment_route", "engine_deployment", "find_deployment", "register_deployment"]

ROUTE_PREFIX = "lucky-route/"
"""Names of the deployments the hook registers; a client may not ask for them directly."""

_register_lock = threading.Lock()


def _router() -> Any:
    from litellm.proxy import proxy_server

    return getattr(proxy_server, "llm_router", None)


def _served_by_lucky(deployment: Mapping[str, Any]) -> bool:
    params = deployment.get("litellm_params") or {}
    return str(params.get("model", "")).startswith("lucky/")


def find_deployment(router: Any, target: Target) -> str | None:
    """The proxy model group that serves exactly `target`, if the operator configured one.

    A group named after the target (``openai/gpt-4.1-mini``) matches; so does any deployment calling
    the same litellm model at the same ``api_base`` (a target without its own ``api_base`` matches
    on the model alone). Groups served by this provider never match, so rewriting cannot loop.
    """
    if router is None:
        return None
    model_list: Sequence[Mapping[str, Any]] = getattr(router, "model_list", None) or ()
    names = getattr(router, "model_names", None) or set()
    for exact in (target.spec, target.litellm_model):
        if exact in names and not any(
            _served_by_lucky(d) for d in model_list if d.get("model_name") == exact
        ):
            return exact
    api_base = _normalise_base(target.kwargs.get("api_base"))
    for deployment in model_list:
        params = deployment.get("litellm_params") or {}
        if params.get("model") != target.litellm_model or _served_by_lucky(deployment):
            continue
        if api_base is None or _normalise_base(params.get("api_base")) == api_base:
            name = deployment.get("model_name")
            return name if isinstance(name, str) else None
    return None


def register_deployment(router: Any, target: Target) -> str | None:
    """Add a Router deployment for `target` (once) and return its model name; None without a Router.

    The deployment carries the target's litellm model and its provider settings, never anything
    from a request, and ``num_retries: 0``.
    """
    if router is None:
        return None
    if target.provider == "lucky" or target.litellm_model.startswith("lucky/"):
        return None  # would route back into the lucky provider
    name = ROUTE_PREFIX + target.spec
    if name in (getattr(router, "model_names", None) or ()):
        return name
    from litellm.types.router import Deployment, LiteLLM_Params

    with _register_lock:
        if name in router.model_names:
            return name
        params = {**target.call_kwargs(), "model": target.litellm_model, "num_retries": 0}
        deployment = Deployment(
            model_name=name,
            litellm_params=LiteLLM_Params(**params),
            model_info={"id": f"lucky:{target.spec}"},
        )
        router.add_deployment(deployment)
    return name


def _normalise_base(value: object) -> str | None:
    return value.rstrip("/") if isinstance(value, str) and value else None


def deployment_route(ctx: RequestContext, models: Models) -> str | None:
    """The deployment a request may be handed to, or None when it needs the engine.

    It qualifies only when nothing of the engine's would be lost: one model, and no maxCost,
    costLimit or maxConcurrent to hold for the whole request (see the module docstring).
    """
    plan = ctx.plan
    if plan is None or len(plan.targets) != 1 or plan.max_cost is not None or ctx.credentials:
        return None
    if models.config.defaults.max_concurrent is not None:
        return None
    owner = ctx.owner
    if owner is not None:
        try:
            defaults = models.user_config(owner).defaults
        except UnknownUserError:
            defaults = None
        if defaults is not None and (defaults.cost_limit is not None or defaults.max_concurrent is not None):
            return None
    router = _router()
    target = plan.targets[0]
    return find_deployment(router, target) or register_deployment(router, target)


def engine_deployment(requested: str, spec: str) -> str | None:
    """An exact model group for the engine route of `spec`, registered once; None keeps `requested`.

    A ``tier:*`` / ``user:*`` wildcard group costs the proxy's Router a pattern match per request
    (profiled: ~8 % of an engine-route request's CPU, the largest item after the nested call).
    The group registered here, ``lucky-route/<spec>``, carries the litellm params of the lucky
    wildcard group `requested` matches (the operator's ``num_retries``, prices, timeouts), with
    ``model: lucky/<spec>``: the same provider, found by an exact lookup. Without a matching
    wildcard group nothing is registered (the proxy answers as it would have).
    """
    router = _router()
    if router is None:
        return None
    name = ROUTE_PREFIX + spec
    if name in (getattr(router, "model_names", None) or ()):
        return name
    template = _lucky_wildcard(router, requested)
    if template is None:
        return None
    from litellm.types.router import Deployment, LiteLLM_Params

    with _register_lock:
        if name in router.model_names:
            return name
        params = {**(template.get("litellm_params") or {}), "model": "lucky/" + spec}
        prices = {key: params.pop(key) for key in _pricing_fields() & params.keys()}
        deployment = Deployment(
            model_name=name,
            litellm_params=LiteLLM_Params(**params),
            model_info={**prices, "id": f"lucky-engine:{spec}"},
        )
        router.add_deployment(deployment)
    return name


def _pricing_fields() -> frozenset[str]:
    """litellm's custom-pricing parameters (``input_cost_per_token`` ...).

    In a deployment's ``litellm_params`` they make litellm register the deployment's prices in
    its cost map again on every call (profiled: ~1 ms of CPU per engine request, the whole map
    re-indexed); in its ``model_info`` the Router registers them once, when the deployment is
    added, under the deployment's id, where litellm's cost calculation finds them all the same.
    """
    try:
        from litellm.types.utils import CustomPricingLiteLLMParams
    except ImportError:  # pragma: no cover - another LiteLLM layout: leave the prices where they are
        return frozenset()
    return frozenset(CustomPricingLiteLLMParams.model_fields)


def _lucky_wildcard(router: Any, requested: str) -> Mapping[str, Any] | None:
    model_list: Sequence[Mapping[str, Any]] = getattr(router, "model_list", None) or ()
    for deployment in model_list:
        pattern = deployment.get("model_name")
        if (
            isinstance(pattern, str)
            and "*" in pattern
            and _served_by_lucky(deployment)
            and fnmatch.fnmatchcase(requested, pattern)
        ):
            return deployment
    return None
