"""The deployment route: hand a one-model request to a deployment the proxy already serves.

Running one model through the engine means a second, nested ``litellm.acompletion`` inside the
proxy's own call; when the operator already has a deployment of exactly that model, rewriting the
request's ``model`` to it gets the same answer without the extra layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import UnknownUserError

if TYPE_CHECKING:
    from .providers import Target
    from .proxy import RequestContext
    from .registry import Models

__all__ = ["deployment_route", "find_deployment"]


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


def _normalise_base(value: object) -> str | None:
    return value.rstrip("/") if isinstance(value, str) and value else None


def deployment_route(ctx: RequestContext, models: Models) -> str | None:
    """The deployment a request may be handed to, or None when it needs the engine.

    The registry path qualifies only when nothing of the engine's would be lost: one model, and
    no maxCost, costLimit or maxConcurrent to enforce for the owner. The legacy path is one plain
    call by definition, so any matching deployment serves it.
    """
    if ctx.target is not None:
        return find_deployment(_router(), ctx.target)
    plan = ctx.plan
    if plan is None or len(plan.targets) != 1 or plan.max_cost is not None:
        return None
    owner = ctx.owner
    if owner is not None:
        try:
            defaults = models.user_config(owner).defaults
        except UnknownUserError:
            defaults = None
        if defaults is not None and (defaults.cost_limit is not None or defaults.max_concurrent is not None):
            return None
        if models.config.defaults.max_concurrent is not None:
            return None
    return find_deployment(_router(), plan.targets[0])
