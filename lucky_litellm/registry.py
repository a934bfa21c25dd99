"""`Models`: the registry that resolves specs to plans and runs them through litellm.

Provider settings and tiers live in one immutable snapshot that `update_provider` swaps as a
whole: a request reads the snapshot once when it starts, so in-flight requests keep the config
they started with while new requests see the new one.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import sys
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .alerts import CostAlerts
from .calls import PeekedStream, RequestRun
from .config import ModelsConfig, UserConfig, load_models_config, load_user_config, validate_models_config
from .errors import (
    BudgetExceededError,
    NoModelsAvailableError,
    StrategyTimeoutError,
    UnknownExperimentError,
    UnknownUserError,
)
from .flags_store import FlagState, FlagStore, store_from_url
from .limits import ConcurrencyLimiter, estimate_cost, estimate_prompt_tokens
from .plan import Plan
from .providers import ProviderDisabledError, ProviderTable, Target
from .retry import RetryPolicy
from .routing import Routing, attach_routing
from .spec import ModelSpec, parse_spec
from .stats import Stats
from .strategies import run_strategy
from .stream import LuckyStream
from .telemetry import Telemetry
from .tiers import TierTable, build_tier_config

__all__ = ["Models", "create_models", "default_models", "set_default_models"]

T = TypeVar("T")

_MAX_SPEC_DEPTH = 4


@dataclass(frozen=True)
class _Snapshot:
    providers: ProviderTable
    tiers: TierTable
    plans: dict[str, Plan] = field(default_factory=dict, compare=False)
    """Resolved `model` and `tier:` specs: a snapshot never changes, so neither do they."""
    user_plans: dict[str, tuple[UserConfig, Plan]] = field(default_factory=dict, compare=False)
    """Resolved `user:` specs with the user config they were built from; valid while that config
    is still the user's current one (`load_user_config` replaces it, which retires the entry)."""


_MAX_CACHED_PLANS = 4096


class Models:
    """A registry of providers, tiers and user experiments, and the engine that runs them."""

    def __init__(
        self,
        config: ModelsConfig | Mapping[str, Any] | None = None,
        *,
        store: FlagStore | None = None,
        telemetry: Telemetry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if config is None:
            config = ModelsConfig()
        self._config = config if isinstance(config, ModelsConfig) else validate_models_config(config)
        self._environ = environ
        providers = ProviderTable.build(self._config, environ)
        self._snapshot = _Snapshot(providers, build_tier_config(config=self._config, providers=providers))
        self._users: dict[str, UserConfig] = {}
        self._update_lock = threading.Lock()
        rollout = self._config.rollout
        self.store: FlagStore = store or store_from_url(
            (environ or os.environ).get("LUCKY_STATE_URL") or rollout.state_url,
            initial=FlagState(
                enabled=rollout.enabled,
                percent=rollout.percent,
                test_users=frozenset(rollout.test_users),
                salt=rollout.salt,
            ),
        )
        self.telemetry = telemetry or Telemetry(capture_content=self._config.telemetry.capture_content)
        self.limiter = ConcurrencyLimiter()
        self._stats = Stats(enabled=self._config.performance_tracking)
        self.alerts = CostAlerts(self._config.telemetry.cost_alert_thresholds)
        for user_id, source in self._config.users.items():
            self.load_user_config(user_id, source)

    # -- configuration -------------------------------------------------------------------------

    @property
    def config(self) -> ModelsConfig:
        return self._config

    @property
    def providers(self) -> ProviderTable:
        return self._snapshot.providers

    @property
    def tiers(self) -> TierTable:
        return self._snapshot.tiers

    def load_user_config(
        self, user_id: str, source: str | os.PathLike[str] | Mapping[str, Any] | UserConfig
    ) -> UserConfig:
        """Load (or replace) a user's experiments from a path, YAML text, dict or `UserConfig`.

        Validation happens before anything is stored: a bad file leaves the old config in place.
        """
        config = load_user_config(source)
        parse_spec(f"user:{user_id}")  # the id must be usable in a spec
        self._users[user_id] = config
        return config

    def user_config(self, user_id: str) -> UserConfig:
        try:
            return self._users[user_id]
        except KeyError:
            raise UnknownUserError(user_id) from None

    @property
    def users(self) -> list[str]:
        return sorted(self._users)

    def update_provider(self, name: str, changes: Mapping[str, Any]) -> None:
        """Change one provider's settings at runtime, validated and atomic."""
        with self._update_lock:
            providers = self._snapshot.providers.with_update(name, changes)
            tiers = build_tier_config(config=self._config, providers=providers)
            self._snapshot = _Snapshot(providers, tiers)

    # -- resolution ----------------------------------------------------------------------------

    def resolve(self, spec: str | ModelSpec, *, user_id: str | None = None) -> Plan:
        """What `complete(spec)` would run, without calling anything.

        `user_id` is the caller; it does not change the plan (a `user:` spec names its own user),
        only which user's limits apply when the plan runs.
        """
        snapshot = self._snapshot
        raw = spec.raw if isinstance(spec, ModelSpec) else spec
        if isinstance(raw, str):
            plan = snapshot.plans.get(raw)
            if plan is not None:
                return plan
            cached = snapshot.user_plans.get(raw)
            if cached is not None and self._users.get(cached[1].user_id or "") is cached[0]:
                return cached[1]
        parsed = parse_spec(spec)
        # read before resolving: if the config is replaced meanwhile, the entry is simply stale
        user_config = self._users.get(parsed.user_id) if parsed.user_id is not None else None
        plan = self._resolve(parsed, snapshot)
        if not plan.targets:
            raise NoModelsAvailableError(parsed.raw, [f"{model}: {reason}" for model, reason in plan.skipped])
        if parsed.kind != "user":
            if len(snapshot.plans) >= _MAX_CACHED_PLANS:
                snapshot.plans.clear()
            snapshot.plans[raw] = plan
        elif user_config is not None:
            if len(snapshot.user_plans) >= _MAX_CACHED_PLANS:
                snapshot.user_plans.clear()
            snapshot.user_plans[raw] = (user_config, plan)
        return plan

    def legacy_target(self, spec: str | ModelSpec, *, user_id: str | None = None) -> Target:
        """The one concrete model a spec stands for on the legacy path: a tier's model, an
        experiment's first model, or the concrete model itself."""
        return self.resolve(spec, user_id=user_id).targets[0]

    def _resolve(self, spec: ModelSpec, snapshot: _Snapshot) -> Plan:
        defaults = self._config.defaults
        skipped: list[tuple[str, str]] = []
        if spec.kind == "user":
            assert spec.user_id is not None
            config = self.user_config(spec.user_id)
            name = spec.experiment or config.default_experiment
            experiment = config.experiments.get(name)
            if experiment is None:
                raise UnknownExperimentError(spec.user_id, name, list(config.experiments))
            targets = self._expand(experiment.providers, snapshot, skipped, 0)
            timeout_ms = experiment.timeout or config.defaults.timeout or defaults.timeout
            plan = Plan(
                spec=spec.raw,
                strategy=experiment.strategy,
                targets=targets,
                timeout_s=timeout_ms / 1000.0,
                retries=defaults.retries if experiment.retries is None else experiment.retries,
                max_cost=experiment.max_cost,
                hedge_after_s=None if experiment.hedge_after is None else experiment.hedge_after / 1000.0,
                min_agreement=experiment.min_agreement,
                experiment=name,
                user_id=spec.user_id,
                params=dict(experiment.params),
                skipped=tuple(skipped),
            )
        elif spec.kind == "tier":
            assert spec.tier is not None
            tier = snapshot.tiers.get(spec.tier)
            targets = self._expand(tier.models or (tier.model,), snapshot, skipped, 0)
            plan = Plan(
                spec=spec.raw,
                strategy=tier.strategy,
                targets=targets,
                timeout_s=(tier.timeout_ms or defaults.timeout) / 1000.0,
                retries=defaults.retries if tier.retries is None else tier.retries,
                max_cost=tier.max_cost,
                hedge_after_s=None if tier.hedge_after_ms is None else tier.hedge_after_ms / 1000.0,
                min_agreement=tier.min_agreement,
                tier=tier.name,
                skipped=tuple(skipped),
            )
        else:
            targets = self._expand((spec.raw,), snapshot, skipped, 0)
            plan = Plan(
                spec=spec.raw,
                strategy="first",
                targets=targets,
                timeout_s=defaults.timeout / 1000.0,
                retries=defaults.retries,
                skipped=tuple(skipped),
            )
        return plan

    def preview(self, spec: str | ModelSpec) -> Plan:
        """The plan `resolve` would return, even when every model's provider is disabled: then
        `targets` is empty and `skipped` says what would enable each one. Nothing is called, so
        showing a plan needs no key (`lucky-litellm resolve`, `tiers`)."""
        return self._resolve(parse_spec(spec), self._snapshot)

    def _expand(
        self, specs: Sequence[str], snapshot: _Snapshot, skipped: list[tuple[str, str]], depth: int
    ) -> tuple[Target, ...]:
        """Concrete targets for a list of specs; `tier:` entries expand to the tier's models."""
        targets: dict[str, Target] = {}
        for raw in specs:
            spec = parse_spec(raw)
            if spec.kind == "tier":
                if depth >= _MAX_SPEC_DEPTH:
                    raise NoModelsAvailableError(raw, [f"tiers nest deeper than {_MAX_SPEC_DEPTH} levels"])
                assert spec.tier is not None
                tier = snapshot.tiers.get(spec.tier)
                for target in self._expand(tier.models or (tier.model,), snapshot, skipped, depth + 1):
                    targets.setdefault(target.spec, target)
            elif spec.kind == "user":
                raise NoModelsAvailableError(raw, ["a user: spec cannot be a member of a model list"])
            else:
                try:
                    target = snapshot.providers.target_for(spec)
                except ProviderDisabledError as exc:
                    skipped.append((raw, str(exc)))
                    continue
                targets.setdefault(target.spec, target)
        return tuple(targets.values())

    # -- running -------------------------------------------------------------------------------

    async def complete(
        self,
        spec: str | ModelSpec,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run `spec` and return litellm's `ModelResponse` (or a `LuckyStream` for `stream=True`)."""
        plan = self.resolve(spec, user_id=user_id)
        return await self.run_plan(
            plan, messages, user_id=user_id, request_id=request_id, stream=stream, **kwargs
        )

    def complete_sync(
        self, spec: str | ModelSpec, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Any:
        """`complete` for synchronous code (not for streams; use `complete` from async code)."""
        if kwargs.get("stream"):
            raise ValueError("complete_sync does not stream; use `await complete(..., stream=True)`")
        return run_sync(self.complete(spec, messages, **kwargs))

    def model(self, spec: str, **defaults: Any) -> Any:
        """A callable bound to `spec` (and default kwargs): `await models.model("tier:fast")(messages)`."""
        self.resolve(spec, user_id=defaults.get("user_id"))
        return functools.partial(self.complete, spec, **defaults)

    async def run_plan(
        self,
        plan: Plan,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        stream: bool = False,
        rollout_path: str = "registry",
        **kwargs: Any,
    ) -> Any:
        if stream and plan.strategy == "consensus":
            raise ValueError(
                f"{plan.spec!r} uses consensus, which needs whole answers: call it without stream=True"
            )
        owner = user_id or plan.user_id
        user_config = self._users.get(owner) if owner else None
        max_concurrent = (user_config.defaults.max_concurrent if user_config else None) or (
            self._config.defaults.max_concurrent
        )
        cost_limit = user_config.defaults.cost_limit if user_config else None

        call_kwargs: dict[str, Any] = {**plan.params, **kwargs}
        call_kwargs.setdefault("num_retries", 0)
        call_kwargs.setdefault("max_retries", 0)
        if stream:
            call_kwargs["stream"] = True
            call_kwargs.setdefault("stream_options", {"include_usage": True})

        routing = Routing(
            spec=plan.spec,
            strategy=plan.strategy,
            models=plan.models,
            experiment=plan.experiment,
            user_id=owner,
            request_id=request_id,
            rollout_path=rollout_path,
        )
        if "litellm" not in sys.modules:
            # the first call of a process loads litellm (seconds): off the loop, before the deadline
            await asyncio.to_thread(importlib.import_module, "litellm")
        trace = self.telemetry.start_request(routing, messages)
        deadline = time.monotonic() + plan.timeout_s
        run = RequestRun(
            plan=plan,
            messages=messages,
            kwargs=call_kwargs,
            deadline=deadline,
            routing=routing,
            trace=trace,
            retry=RetryPolicy(plan.retries),
            stream=stream,
        )
        for model, reason in plan.skipped:
            run.skip(model, reason)

        slot_key = owner if (owner and max_concurrent) else None
        acquired = False
        reserved = 0.0
        settled = False

        def settle(error: BaseException | None) -> None:
            """Bill what was spent, free the slot, close the spans: exactly once per request."""
            nonlocal settled
            if settled:
                return
            settled = True
            routing.cost_usd = sum(attempt.cost_usd for attempt in routing.attempts)
            try:
                if owner and cost_limit is not None:
                    spent = self.store.settle_spend(owner, reserved, routing.cost_usd)
                    self.alerts.observe(owner, spent, cost_limit, trace.span)
                elif owner and routing.cost_usd:
                    self.store.add_spend(owner, routing.cost_usd)
            finally:
                if acquired and slot_key is not None:
                    self.limiter.release(slot_key)
                trace.finish(routing, error)
                if user_config is None or user_config.performance_tracking:
                    self._stats.record(routing, owner, cost_limit)

        try:
            if slot_key is not None and max_concurrent is not None:
                await self.limiter.acquire(slot_key, max_concurrent, deadline - time.monotonic())
                acquired = True
            budgeted = owner is not None and cost_limit is not None
            estimates = (
                self._estimates(plan, messages, call_kwargs)
                if (budgeted or plan.max_cost is not None)
                else {}
            )
            targets = self._within_cost(run, plan, estimates)
            if owner and cost_limit is not None:
                reserved = self._reserve(owner, plan.strategy, targets, estimates, cost_limit)
            result = await _with_deadline(run_strategy(run, targets), deadline)
        except asyncio.TimeoutError:
            error = StrategyTimeoutError(plan.spec, plan.timeout_s, routing.attempts)
            settle(error)
            raise error from None
        except BaseException as exc:
            settle(exc)
            raise

        if isinstance(result, PeekedStream):
            winner = next(a for a in routing.attempts if a.outcome == "won")
            target = next(t for t in targets if t.spec == winner.model)
            lucky_stream = LuckyStream(
                result,
                winner,
                target.litellm_model,
                settle,
                check_finish="mock_response" not in call_kwargs,
            )
            return attach_routing(lucky_stream, routing)
        settle(None)
        return attach_routing(result, routing)

    def _within_cost(
        self, run: RequestRun, plan: Plan, estimates: Mapping[str, float | None]
    ) -> list[Target]:
        """Drop models whose estimated cost exceeds the plan's maxCost (recorded as skipped)."""
        if plan.max_cost is None:
            return list(plan.targets)
        kept: list[Target] = []
        for target in plan.targets:
            estimate = estimates.get(target.spec)
            if estimate is not None and estimate > plan.max_cost:
                run.skip(target.spec, f"estimated cost ${estimate:.6f} exceeds maxCost ${plan.max_cost:.6f}")
            else:
                kept.append(target)
        if not kept:
            raise NoModelsAvailableError(plan.spec, [f"{a.model}: {a.error}" for a in run.routing.attempts])
        return kept

    @staticmethod
    def _estimates(
        plan: Plan, messages: Sequence[Mapping[str, Any]], kwargs: Mapping[str, Any]
    ) -> dict[str, float | None]:
        """Upper-bound cost per model: prompt tokens counted once, output = max_tokens."""
        prompt_tokens = estimate_prompt_tokens(messages)
        max_tokens = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
        return {t.spec: estimate_cost(t.litellm_model, prompt_tokens, max_tokens) for t in plan.targets}

    def _reserve(
        self,
        owner: str,
        strategy: str,
        targets: Sequence[Target],
        estimates: Mapping[str, float | None],
        limit: float,
    ) -> float:
        """Reserve the worst-case cost before calling, so concurrent requests cannot overspend."""
        costs = [estimates.get(t.spec) or 0.0 for t in targets]
        # race and consensus may bill every model; first and fallback pay for one success
        amount = sum(costs) if strategy in ("race", "consensus") else max(costs, default=0.0)
        spent = self.store.spent(owner)
        if amount <= 0 and spent >= limit:
            raise BudgetExceededError(owner, spent, limit, amount)
        self.store.reserve_spend(owner, amount, limit)
        return amount

    # -- stats ---------------------------------------------------------------------------------

    def on_cost_alert(self, callback: Any) -> None:
        """Call `callback(alert)` when a user's spend crosses a `costAlertThresholds` fraction."""
        self.alerts.add_callback(callback)

    def stats(self) -> dict[str, Any]:
        """Per model and per user: calls, errors, latency percentiles, tokens, cost, budget use."""
        return self._stats.snapshot(spent=self.store.spent)


async def _with_deadline(coro: Coroutine[Any, Any, T], deadline: float) -> T:
    """Await `coro` until `deadline` (monotonic); raises asyncio.TimeoutError when it passes."""
    remaining = deadline - time.monotonic()
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(remaining):
            return await coro
    return await asyncio.wait_for(coro, remaining)  # pragma: no cover - Python 3.10


# -- sync bridge ---------------------------------------------------------------------------------

_sync_loop: asyncio.AbstractEventLoop | None = None
_sync_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """One long-lived loop in a daemon thread for sync callers: litellm's HTTP clients are bound
    to the loop that created them, so a fresh `asyncio.run` per call would keep rebuilding them."""
    global _sync_loop
    with _sync_lock:
        if _sync_loop is None or _sync_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="lucky-litellm-sync", daemon=True).start()
            _sync_loop = loop
        return _sync_loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("complete_sync was called from a running event loop; use `await complete(...)`")
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()


# -- the default registry used by lucky_litellm.complete -----------------------------------------

_default: Models | None = None
_default_lock = threading.Lock()


def default_models() -> Models:
    """The registry behind `lucky_litellm.complete`: `LUCKY_MODELS_CONFIG` (a models.yaml) if set."""
    global _default
    with _default_lock:
        if _default is None:
            path = os.environ.get("LUCKY_MODELS_CONFIG")
            _default = Models(load_models_config(Path(path)) if path else None)
        return _default


def set_default_models(models: Models | None) -> None:
    global _default
    with _default_lock:
        _default = models


def create_models(config: ModelsConfig | Mapping[str, Any] | None = None, **options: Any) -> Models:
    return Models(config, **options)
