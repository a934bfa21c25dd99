"""Gradual rollout of the registry path, with an instant kill switch.

A call takes the **registry** path (tiers, experiments, strategies) or the **legacy** path: one
plain `litellm.acompletion` on the concrete model the spec maps to, exactly what code did before
adopting lucky_litellm. Who takes which path is decided by flags in a `FlagStore` (in memory, or
Redis so every process and proxy replica agrees; a decision reads a cached snapshot, no I/O):

1. models disabled (kill switch) → legacy for everyone, test users included;
2. test users → registry;
3. otherwise the user's stable bucket (hash of salt and user id, 10,000 buckets) against the
   rollout percentage; raising the percentage only ever adds users.

The calls follow the migration plan (DESIGN.md, "Rollout"); each one sets a phase:

- ``add_test_user(id)``: phase 1, test users on the registry path (with the percentage at 0);
- ``set_rollout_percent(n)``: phase 2, the gradual share; it also lifts an earlier kill switch,
  since resuming at n % is what an operator means after a rollback;
- ``enable_models()``: phase 4, the full rollout, every user (the percentage becomes 100);
- ``disable_models()``: phase 5, the instant rollback, every user on the legacy path, test users too.

The module-level functions act on the default registry's store, so `lucky-litellm rollout ...`
and a process configured with the same `LUCKY_STATE_URL` see the same flags. Changes are
administrative and synchronous (one Redis round trip); call them off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .bucketing import Decision, RolloutPolicy
from .messages import check_messages
from .routing import Attempt, Routing, attach_routing

if TYPE_CHECKING:
    from .guard.store import PathName
    from .registry import Models
    from .state import FlagStore

__all__ = [
    "Rollout",
    "add_test_user",
    "complete",
    "complete_sync",
    "decide",
    "disable_models",
    "enable_models",
    "get_model",
    "is_enabled_for",
    "remove_test_user",
    "rollout_status",
    "set_rollout_percent",
]


class Rollout:
    """Rollout decisions and the two call paths for one `Models` registry."""

    def __init__(self, models: Models) -> None:
        self.models = models

    @property
    def store(self) -> FlagStore:
        """The flags (`models.state.flags`)."""
        return self.models.state.flags

    def policy(self) -> RolloutPolicy:
        flags = self.store.current()
        return RolloutPolicy(
            enabled=flags.enabled, percent=flags.percent, test_users=flags.test_users, salt=flags.salt
        )

    def decide(self, user_id: str | None) -> Decision:
        return self.policy().decide(user_id)

    def is_enabled_for(self, user_id: str | None) -> bool:
        return self.decide(user_id).path == "registry"

    def set_percent(self, percent: float) -> None:
        """Gradual phase: `percent` % of users (sticky) and the test users on the registry path.

        The percentage is written before the switch is turned back on, so a registry that was
        killed never serves a moment at the old percentage.
        """
        value = RolloutPolicy.check_percent(percent)
        self.store.set_percent(value)
        self.store.set_enabled(True)

    def enable(self) -> None:
        """Full rollout: every user on the registry path."""
        self.store.set_percent(100.0)
        self.store.set_enabled(True)

    def disable(self) -> None:
        """Kill switch: every call, test users included, takes the legacy path."""
        self.store.set_enabled(False)

    def status(self) -> dict[str, Any]:
        """The flags read now from the store, and where from (the last known ones, said so, if
        the store is unreachable)."""
        from .errors import StateUnavailableError

        store = self.store
        source = store.location
        reachable = True
        try:
            flags = store.read()
        except StateUnavailableError as exc:
            flags, reachable = store.current(), False
            source = f"{source}; {exc}: showing this process's last known flags"
        return {
            "reachable": reachable,
            "enabled": flags.enabled,
            "percent": flags.percent,
            "test_users": sorted(flags.test_users),
            "salt": flags.salt,
            "version": flags.version,
            "store": source,
            "shared": store.shared,
        }

    async def complete(
        self,
        spec: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The registry path or the legacy path, as the flags decide for `user_id`.

        On the registry path a concrete model that a tier maps to runs as that tier (`autoTier`);
        the legacy path keeps the concrete model."""
        decision = self.decide(user_id)
        if decision.path == "registry":
            return await self.registry_complete(
                spec, messages, user_id=user_id, request_id=request_id, **kwargs
            )
        return await self.legacy_complete(spec, messages, user_id=user_id, request_id=request_id, **kwargs)

    def get_model(
        self, model: str, *, user_id: str | None = None, request_id: str | None = None, **defaults: Any
    ) -> Callable[..., Awaitable[Any]]:
        """An awaitable callable bound to the path decided now for `user_id` (the wrapper's
        ``getModel``): ``await rollout.get_model("openai/gpt-4.1-mini", user_id=u)(messages)``.

        The decision is taken once, so every call through it takes the same path even if the flags
        change meanwhile; the spec is checked now, so a typo fails here rather than per call."""
        if self.decide(user_id).path == "registry":
            self.models.resolve(self.models.registry_spec(model), user_id=user_id)
            run = self.registry_complete
        else:
            self.models.legacy_target(model, user_id=user_id)
            run = self.legacy_complete
        return functools.partial(run, model, user_id=user_id, request_id=request_id, **defaults)

    async def registry_complete(
        self,
        spec: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The registry path: tiers, experiments, strategies, with `autoTier` applied."""
        models = self.models
        plan = models.resolve(models.registry_spec(spec), user_id=user_id)
        return await self._recorded(
            "registry",
            lambda rid: models.run_plan(
                plan, messages, user_id=user_id, request_id=rid, rollout_path="registry", **kwargs
            ),
            request_id,
        )

    async def legacy_complete(
        self,
        spec: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """One plain `litellm.acompletion` on the spec's concrete model: no strategy, no retries
        added, no budget; only a routing record and a span so the path stays visible."""
        check_messages(messages)  # as the registry path does: a caller's mistake, nothing sent
        return await self._recorded(
            "legacy", lambda rid: self._legacy_call(spec, messages, user_id, rid, kwargs), request_id
        )

    async def _recorded(
        self, path: PathName, call: Callable[[str | None], Awaitable[Any]], request_id: str | None
    ) -> Any:
        """Run `call(request_id)`; while a guarded rollout runs, its recorder times it for `path`."""
        recorder = self.models.state.guard.recording  # None unless a guarded rollout runs
        if recorder is None:
            return await call(request_id)
        return await recorder.track(path, call, request_id)

    async def _legacy_call(
        self,
        spec: str,
        messages: Sequence[Mapping[str, Any]],
        user_id: str | None,
        request_id: str | None,
        kwargs: dict[str, Any],
    ) -> Any:
        import litellm

        target = self.models.legacy_target(spec, user_id=user_id)
        routing = Routing(
            spec=spec,
            strategy="first",
            models=[target.spec],
            user_id=user_id,
            request_id=request_id,
            rollout_path="legacy",
        )
        attempt = Attempt(model=target.spec, tries=1)
        routing.attempts.append(attempt)
        trace = self.models.telemetry.start_request(routing, messages, kwargs)
        span = trace.start_attempt(target, attempt)
        started = time.perf_counter()
        call_kwargs = {**target.call_kwargs(), **kwargs}
        span.prepare(call_kwargs)
        try:
            with span.use():  # instrumentation below the call nests under its span
                response = await litellm.acompletion(
                    model=target.litellm_model, messages=list(messages), **call_kwargs
                )
        except BaseException as exc:
            attempt.outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            attempt.error_type = type(exc).__qualname__
            attempt.latency_ms = routing.latency_ms = (time.perf_counter() - started) * 1000
            span.call_done(attempt, error=None if attempt.outcome == "cancelled" else exc)
            trace.finish(routing, None if attempt.outcome == "cancelled" else exc)
            raise
        from .calls import record_response

        attempt.latency_ms = routing.latency_ms = (time.perf_counter() - started) * 1000
        if not kwargs.get("stream"):
            record_response(attempt, response, target)
        attempt.outcome = "won"
        routing.winner = target.spec
        routing.cost_usd = attempt.cost_usd
        span.call_done(attempt, response=None if kwargs.get("stream") else response)
        trace.finish(routing)
        return attach_routing(response, routing)


_default: Rollout | None = None


def _rollout() -> Rollout:
    global _default
    from .registry import default_models

    models = default_models()
    if _default is None or _default.models is not models:
        _default = Rollout(models)
    return _default


def add_test_user(user_id: str) -> None:
    """Always send this user through the registry path (unless models are disabled)."""
    _rollout().store.add_test_user(user_id)


def remove_test_user(user_id: str) -> None:
    _rollout().store.remove_test_user(user_id)


def set_rollout_percent(percent: float) -> None:
    """Phase 2 of the migration: share of users (0–100, decimals allowed) on the registry path.

    Buckets are sticky, so raising the share only adds users. Lifts an earlier kill switch.
    """
    _rollout().set_percent(percent)


def enable_models() -> None:
    """Phase 4 of the migration, the full rollout: every user on the registry path (100 %)."""
    _rollout().enable()


def disable_models() -> None:
    """Kill switch: every call, test users included, takes the legacy path from now on."""
    _rollout().disable()


def is_enabled_for(user_id: str | None) -> bool:
    return _rollout().is_enabled_for(user_id)


def decide(user_id: str | None) -> Decision:
    return _rollout().decide(user_id)


def rollout_status() -> dict[str, Any]:
    return _rollout().status()


async def complete(spec: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> Any:
    return await _rollout().complete(spec, messages, **kwargs)


def get_model(
    model: str, *, user_id: str | None = None, request_id: str | None = None, **defaults: Any
) -> Callable[..., Awaitable[Any]]:
    """`Rollout.get_model` on the default registry: a callable bound to the decided path."""
    return _rollout().get_model(model, user_id=user_id, request_id=request_id, **defaults)


def complete_sync(spec: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> Any:
    from .registry import run_sync

    return run_sync(_rollout().complete(spec, messages, **kwargs))
