"""What the hook decided for one proxy request, and the switches that shape those decisions.

The hook stamps a `RequestContext` into the request's ``metadata``; the provider, the stream
guard and the response hooks read it back, so every part of the request agrees on the owner, the
plan, the route and the deadline without deciding anything twice.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..rollout import Rollout
from ..spec import parse_spec
from .identity import Identity, check_access

if TYPE_CHECKING:
    from ..plan import Plan
    from ..registry import Models

__all__ = ["CONTEXT_KEY", "LUCKY_PREFIXES", "ProxySettings", "RequestContext", "context_of", "is_lucky_name"]

CONTEXT_KEY = "lucky"
"""Key of the `RequestContext` in the request's ``metadata`` (visible in the proxy's logs)."""

LUCKY_PREFIXES = ("tier:", "user:")


@dataclass(frozen=True)
class ProxySettings:
    """Switches read from the environment when the proxy loads this package."""

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
    """The hook's decision for one request, handed to the provider through the metadata.

    The items are plain JSON values, so the proxy's loggers can record them. Python objects
    (the plan, the error, the client's own credentials) live in attributes, out of any
    serialisation. Because it is a class of our own, a client cannot forge it: the hook drops
    whatever a body sends under the same key, and the provider accepts nothing but an instance.
    """

    def __init__(self, identity: Identity, request_id: str | None) -> None:
        super().__init__(
            caller=identity.user_id,
            admin=identity.admin,
            identity_source=identity.source,
            request_id=request_id,
        )
        self.plan: Plan | None = None
        self.error: BaseException | None = None
        self.deadline: float | None = None
        """`time.monotonic()` by which the whole answer, stream body included, must be done."""
        self.credentials: dict[str, Any] = {}
        """Client-side credentials the operator allows (see `hook`); empty otherwise."""
        self.guard: tuple[Any, float] | None = None
        """(recorder, start) while a guarded rollout records this request (see `hook`)."""
        self.stream_headers: dict[str, str] = {}
        """The dict handed to the proxy for a stream's headers; filled in once the winner is
        known, which the proxy reads again after the first chunk."""

    @property
    def owner(self) -> str | None:
        owner = self.get("owner")
        return owner if isinstance(owner, str) else None

    @property
    def legacy(self) -> bool:
        return self.get("rollout_path") == "legacy"

    def identity(self) -> Identity:
        return Identity(self.get("caller"), bool(self.get("admin")), str(self.get("identity_source")))

    def prepare(self, name: str, models: Models) -> None:
        """Resolve `name` for this caller: access, rollout path, plan, deadline.

        The legacy path is a plan too: one model (the tier's, or the experiment's first), no
        retries, no strategy extras; it keeps the spec's deadline and the owner's budget (the
        engine's lease reserves it), the safety limits that hold on every path.
        """
        spec = parse_spec(name)
        owner = self.get("caller")
        if spec.kind == "user":
            assert spec.user_id is not None
            check_access(self.identity(), spec.user_id)
            owner = spec.user_id
        decision = Rollout(models).decide(owner)
        if decision.path == "registry":  # autoTier: a concrete model a tier maps to runs as the tier
            spec = parse_spec(models.registry_spec(spec))
        self.update(spec=spec.raw, owner=owner)
        plan = models.resolve(spec, user_id=owner)
        # only a request that resolved takes a path: a refused one (a typo's 400) says none
        self.update(rollout_path=decision.path, rollout_reason=decision.reason)
        if decision.path == "legacy":
            plan = dataclasses.replace(
                plan,
                strategy="first",
                targets=plan.targets[:1],
                retries=0,
                max_cost=None,
                hedge_after_s=None,
                min_agreement=None,
                params={},
            )
        self.plan = plan
        self.deadline = time.monotonic() + plan.timeout_s
        self.update(strategy=plan.strategy, models=plan.models)

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

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


def context_of(metadata: object) -> RequestContext | None:
    value = metadata.get(CONTEXT_KEY) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, RequestContext) else None


def is_lucky_name(model: object) -> bool:
    return isinstance(model, str) and model.startswith(LUCKY_PREFIXES)
