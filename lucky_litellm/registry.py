"""`Models`: the registry that resolves specs to plans and runs them through litellm.

Provider settings and tiers live in one immutable snapshot that `update_provider` swaps as a
whole: a request reads the snapshot once when it starts, so in-flight requests keep the config
they started with while new requests see the new one.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .alerts import CostAlerts
from .config import ModelsConfig, UserConfig, load_models_config, load_user_config
from .config.load import validate_models_schema
from .config.resolve import check_user_config
from .engine import Lease, is_warm, start_warm_up, warm_up
from .errors import (
    ConfigError,
    ConfigIssue,
    InvalidArgumentError,
    NoModelsAvailableError,
    StreamingNotSupportedError,
    UnknownExperimentError,
    UnknownTierError,
    UnknownUserError,
)
from .health import Circuits, HedgeState, ModelHealth, hedge_policy
from .limits import ConcurrencyLimiter
from .messages import check_messages
from .plan import Plan
from .providers import ProviderDisabledError, ProviderTable, Target
from .spec import ModelSpec, parse_spec
from .state import FlagState, State, state_from_url
from .stats import Stats
from .sync import run_sync
from .telemetry import Telemetry, capture_from_env
from .tiers import (
    _REVERSE_PREFERENCE,
    DEFAULT_MODELS,
    TierResolver,
    TierTable,
    build_tier_config,
    get_default_tier_name,
)

if TYPE_CHECKING:
    from .config.schema import HealthConfig
    from .health import HedgePolicy
    from .middleware import Middleware

__all__ = ["Models", "create_models", "default_models", "set_default_models"]

T = TypeVar("T")

_MAX_SPEC_DEPTH = 4


@dataclass(frozen=True)
class _Snapshot:
    providers: ProviderTable
    tiers: TierTable
    plans: dict[str, Plan] = field(default_factory=dict, compare=False)
    """Resolved `model` and `tier:` specs: a snapshot never changes, so neither do they."""
    auto_tiers: dict[str, str] = field(default_factory=dict, compare=False)
    """`autoTier`: concrete spec -> the ``tier:`` spec it runs as on the rollout's registry path."""
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
        state: State | None = None,
        telemetry: Telemetry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if config is None:
            config = ModelsConfig()
        self._config = config if isinstance(config, ModelsConfig) else validate_models_schema(config)
        self._environ = environ
        providers = ProviderTable.build(self._config, environ)
        self._snapshot = _Snapshot(providers, build_tier_config(config=self._config, providers=providers))
        self._default_spec = _default_spec(self._config, self._snapshot.tiers)
        self._middleware: tuple[Middleware, ...] = _configured_middleware(self._config)
        self._users: dict[str, UserConfig] = {}
        self._update_lock = threading.Lock()
        rollout = self._config.rollout
        self.state: State = state or state_from_url(
            rollout.state_url_in(os.environ if environ is None else environ),
            initial=FlagState(
                enabled=rollout.enabled,
                percent=rollout.percent,
                test_users=frozenset(rollout.test_users),
                salt=rollout.salt,
            ),
            on_outage=self._config.state.on_outage,
        )
        self.telemetry = telemetry or Telemetry(
            # unset in the config: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT decides
            capture_content=self._config.telemetry.capture_content
            if "capture_content" in self._config.telemetry.model_fields_set
            else capture_from_env(environ)  # None: os.environ; {} is an empty environment
        )
        self.state.guard.tracer = self.telemetry._tracer  # guarded-rollout decisions as spans
        self.circuits: Circuits | None = _circuits(self._config, self.state)
        """Per-model circuit breakers (``health.circuit``); None when switched off."""
        self.limiter = ConcurrencyLimiter()
        self.hedging = HedgeState()
        """Latency windows and hedge budgets (`hedgeAfter: auto`), kept across reloads."""
        self._stats = Stats(enabled=self._config.performance_tracking)
        self.alerts = CostAlerts(self._config.telemetry.cost_alert_thresholds)
        for user_id, source in self._config.users.items():
            self.load_user_config(user_id, source)
        start_warm_up()  # litellm loads in the background while the application starts

    # -- configuration -------------------------------------------------------------------------

    @property
    def store(self) -> State:
        """The rollout flags and spend ledger (`state`); `store.spent(user)` reads synchronously."""
        return self.state

    @property
    def config(self) -> ModelsConfig:
        return self._config

    @property
    def providers(self) -> ProviderTable:
        return self._snapshot.providers

    @property
    def tiers(self) -> TierTable:
        return self._snapshot.tiers

    @property
    def default_spec(self) -> str:
        """What a call without a spec runs: ``tier:<defaultTier>``, else the ``default`` tier."""
        return self._default_spec

    def load_user_config(
        self, user_id: str, source: str | os.PathLike[str] | Mapping[str, Any] | UserConfig
    ) -> UserConfig:
        """Load (or replace) a user's experiments from a path, YAML text, dict or `UserConfig`.

        Validation happens before anything is stored: a bad file leaves the old config in place.
        """
        config = load_user_config(source)
        parse_spec(f"user:{user_id}")  # the id must be usable in a spec
        snapshot = self._snapshot
        check_user_config(config, snapshot.providers, snapshot.tiers)  # typos fail here, not per call
        self._users[user_id] = config
        # a changed maxConcurrent applies to requests already waiting for a slot, not only to new ones
        self.limiter.set_limit(
            user_id, config.defaults.max_concurrent or self._config.defaults.max_concurrent
        )
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

    def resolve(
        self, spec: str | ModelSpec, *, user_id: str | None = None, credentials: bool = False
    ) -> Plan:
        """What `complete(spec)` would run, without calling anything.

        `user_id` is the caller; it does not change the plan (a `user:` spec names its own user),
        only which user's limits apply when the plan runs. `credentials=True`: the call brings
        its own `api_key`/`api_base`, so providers disabled only for want of them are kept.
        """
        snapshot = self._snapshot
        raw = spec.raw if isinstance(spec, ModelSpec) else spec
        if credentials:  # never cached: the plan is only valid with the call's own credentials
            return self._resolve(parse_spec(spec), snapshot, credentials=True)
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

    def registry_spec(self, spec: str | ModelSpec) -> str:
        """The spec a call runs on the rollout's registry path: with `autoTier` (the default), a
        concrete model that a tier maps to becomes that tier (``openai/gpt-4.1-mini`` ->
        ``tier:medium``), so code written for one model gets the tier's strategy and the active
        provider during the migration. Anything else is returned unchanged."""
        raw = spec.raw if isinstance(spec, ModelSpec) else spec
        if not self._config.rollout.auto_tier:
            return raw
        snapshot = self._snapshot
        resolved = snapshot.auto_tiers.get(raw)
        if resolved is None:
            resolved = TierResolver(snapshot.tiers).resolve_model_spec(raw)
            if resolved == raw and parse_spec(raw).kind == "model":
                # a model of another provider's tier table: old code names openai models while the
                # active provider is another one; the tier's model of the active provider answers
                tier = _tier_of_any_provider(raw, self._config, snapshot.tiers)
                resolved = raw if tier is None else f"tier:{tier}"
            if len(snapshot.auto_tiers) >= _MAX_CACHED_PLANS:
                snapshot.auto_tiers.clear()
            snapshot.auto_tiers[raw] = resolved
        return resolved

    def legacy_target(self, spec: str | ModelSpec, *, user_id: str | None = None) -> Target:
        """The one concrete model a spec stands for on the legacy path: a tier's model, an
        experiment's first model, or the concrete model itself."""
        return self.resolve(spec, user_id=user_id).targets[0]

    def _resolve(self, spec: ModelSpec, snapshot: _Snapshot, *, credentials: bool = False) -> Plan:
        defaults = self._config.defaults
        skipped: list[tuple[str, str]] = []
        if spec.kind == "user":
            assert spec.user_id is not None
            config = self.user_config(spec.user_id)
            name = spec.experiment or config.default_experiment
            experiment = config.experiments.get(name)
            if experiment is None:
                raise UnknownExperimentError(spec.user_id, name, list(config.experiments))
            targets = self._expand(experiment.providers, snapshot, skipped, 0, credentials)
            timeout_ms = experiment.timeout or config.defaults.timeout or defaults.timeout
            plan = Plan(
                spec=spec.raw,
                strategy=experiment.strategy,
                targets=targets,
                timeout_s=timeout_ms / 1000.0,
                retries=defaults.retries if experiment.retries is None else experiment.retries,
                max_cost=experiment.max_cost,
                hedge_after_s=experiment.hedge_after_s,
                hedging=self._hedge_policy(
                    experiment.strategy,
                    experiment.hedge_after,
                    experiment.health,
                    f"user:{spec.user_id}:{name}",
                ),
                min_agreement=experiment.min_agreement,
                attempt_timeout_s=experiment.attempt_timeout_s,
                experiment=name,
                user_id=spec.user_id,
                params=dict(experiment.params),
                skipped=tuple(skipped),
                **_circuit_overrides(experiment),
            )
        elif spec.kind == "tier":
            assert spec.tier is not None
            tier = snapshot.tiers.get(spec.tier)
            targets = self._expand(tier.models or (tier.model,), snapshot, skipped, 0, credentials)
            plan = Plan(
                spec=spec.raw,
                strategy=tier.strategy,
                targets=targets,
                timeout_s=(tier.timeout_ms or defaults.timeout) / 1000.0,
                retries=defaults.retries if tier.retries is None else tier.retries,
                max_cost=tier.max_cost,
                hedge_after_s=_fixed_seconds(tier.hedge_after_ms),
                hedging=self._hedge_policy(tier.strategy, tier.hedge_after_ms, None, f"tier:{tier.name}"),
                min_agreement=tier.min_agreement,
                attempt_timeout_s=_seconds(tier.attempt_timeout_ms),
                tier=tier.name,
                skipped=tuple(skipped),
            )
        else:
            targets = self._expand((spec.raw,), snapshot, skipped, 0, credentials)
            plan = Plan(
                spec=spec.raw,
                strategy="first",
                targets=targets,
                timeout_s=defaults.timeout / 1000.0,
                retries=defaults.retries,
                skipped=tuple(skipped),
            )
        return plan

    def _hedge_policy(
        self, strategy: str, hedge_after: float | str | None, override: HealthConfig | None, key: str
    ) -> HedgePolicy | None:
        if strategy != "race" or hedge_after is None:
            return None
        config = self._config.health.merged(override).hedging
        return hedge_policy(self.hedging, hedge_after, config, key)

    def preview(self, spec: str | ModelSpec) -> Plan:
        """The plan `resolve` would return, even when every model's provider is disabled: then
        `targets` is empty and `skipped` says what would enable each one. Nothing is called, so
        showing a plan needs no key (`lucky-litellm resolve`, `tiers`)."""
        return self._resolve(parse_spec(spec), self._snapshot)

    def _expand(
        self,
        specs: Sequence[str],
        snapshot: _Snapshot,
        skipped: list[tuple[str, str]],
        depth: int,
        credentials: bool = False,
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
                for target in self._expand(
                    tier.models or (tier.model,), snapshot, skipped, depth + 1, credentials
                ):
                    targets.setdefault(target.spec, target)
            elif spec.kind == "user":
                raise NoModelsAvailableError(raw, ["a user: spec cannot be a member of a model list"])
            else:
                try:
                    target = snapshot.providers.target_for(spec, credentials=credentials)
                except ProviderDisabledError as exc:
                    skipped.append((raw, str(exc)))
                    continue
                targets.setdefault(target.spec, target)
        return tuple(targets.values())

    # -- running -------------------------------------------------------------------------------

    async def complete(
        self,
        spec: str | ModelSpec | None,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run `spec` and return litellm's `ModelResponse` (or a `LuckyStream` for `stream=True`).

        `api_key` / `api_base` passed here switch a provider on for this call, as with
        `litellm.acompletion`, even when the environment has no key for it. `spec=None` runs
        `defaultTier`. `messages` is checked first (`InvalidMessagesError`): nothing is sent."""
        check_messages(messages)
        if spec is None:
            spec = self._default_spec
        if not is_warm():  # resolving may ask litellm about a model: never import it on the loop
            await warm_up()
        if kwargs.get("api_key") is not None or kwargs.get("api_base") is not None:
            plan = self.resolve(spec, user_id=user_id, credentials=True)
        else:
            plan = self.resolve(spec, user_id=user_id)
        return await self._run_plan(
            plan, messages, user_id=user_id, request_id=request_id, stream=stream, **kwargs
        )

    def complete_sync(
        self, spec: str | ModelSpec | None, messages: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> Any:
        """`complete` for synchronous code (not for streams; use `complete` from async code)."""
        if kwargs.get("stream"):
            raise StreamingNotSupportedError(
                "complete_sync does not stream; use `await complete(..., stream=True)`"
            )
        check_messages(messages)  # before a loop is even started
        return run_sync(self.complete(spec, messages, **kwargs))

    def model(self, spec: str | None = None, **defaults: Any) -> Any:
        """A callable bound to `spec` (and default kwargs): `await models.model("tier:fast")(messages)`.
        Without a spec it is bound to `defaultTier`."""
        if spec is None:
            spec = self._default_spec
        self.resolve(spec, user_id=defaults.get("user_id"))
        return functools.partial(self.complete, spec, **defaults)

    def use(self, middleware: Middleware) -> Middleware:
        """Append `middleware` (``async def mw(request, call_next)``) to the chain run around every
        request; the first added runs outermost. Returns it, so it also works as a decorator."""
        if not callable(middleware):
            raise InvalidArgumentError(f"middleware must be callable, got {type(middleware).__name__}")
        self._middleware = (*self._middleware, middleware)
        return middleware

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        return self._middleware

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
        """Run a resolved plan under one request lease (see `engine.Lease`), through the
        middleware chain if there is one. `messages` is checked first (`InvalidMessagesError`)."""
        check_messages(messages)
        return await self._run_plan(
            plan,
            messages,
            user_id=user_id,
            request_id=request_id,
            stream=stream,
            rollout_path=rollout_path,
            **kwargs,
        )

    async def _run_plan(
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
        """`run_plan` once `messages` has been checked."""
        if self._middleware:
            return await self._run_chain(
                plan,
                messages,
                user_id=user_id,
                request_id=request_id,
                stream=stream,
                rollout_path=rollout_path,
                kwargs=kwargs,
            )
        lease = Lease(
            self,
            plan,
            messages,
            user_id=user_id,
            request_id=request_id,
            stream=stream,
            rollout_path=rollout_path,
            kwargs=kwargs,
        )
        async with lease:
            return await lease.execute()

    async def _run_chain(
        self,
        plan: Plan,
        messages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None,
        request_id: str | None,
        stream: bool,
        rollout_path: str,
        kwargs: dict[str, Any],
    ) -> Any:
        from .middleware import Request, run_chain

        async def endpoint(request: Request) -> Any:
            check_messages(request.messages)  # a middleware may have changed them
            lease = Lease(
                self,
                request.plan,
                request.messages,
                user_id=request.user_id,
                request_id=request.request_id,
                stream=request.stream,
                rollout_path=rollout_path,
                kwargs=request.kwargs,
            )
            async with lease:
                return await lease.execute()

        request = Request(
            spec=plan.spec,
            plan=plan,
            messages=list(messages),
            kwargs=dict(kwargs),
            user_id=user_id,
            request_id=request_id,
            stream=stream,
        )
        return await run_chain(self._middleware, request, endpoint)

    async def warm_up(self) -> None:
        """Load litellm and its tokenizer now (off the event loop), not on the first request.

        `Models()` already starts this in a background thread; every request waits for it before
        its deadline clock starts, so awaiting it is only needed to take the wait out of a call."""
        await warm_up()

    # -- stats ---------------------------------------------------------------------------------

    def on_cost_alert(self, callback: Any) -> None:
        """Call `callback(alert)` when a user's spend crosses a `costAlertThresholds` fraction."""
        self.alerts.add_callback(callback)

    def stats(self) -> dict[str, Any]:
        """Per model and per user: calls, errors, latency percentiles, tokens, cost, budget use."""
        return self._stats.snapshot(spent=self.state.spent)

    def health(self) -> list[ModelHealth]:
        """Each model's circuit as this process sees it (fleet-wide with a shared store): state,
        failures in a row, calls and failures over the window, cooldown left."""
        return [] if self.circuits is None else self.circuits.health()


def _circuits(config: ModelsConfig, state: State) -> Circuits | None:
    """The registry's circuit breakers, shared through the state store when it is shared."""
    circuit = config.health.circuit
    if not circuit.enabled:
        return None
    store = None
    if state.connection is not None:
        from .state.health import RedisHealthStore

        store = RedisHealthStore(state.connection)
    return Circuits(circuit, store)


def _configured_middleware(config: ModelsConfig) -> tuple[Middleware, ...]:
    """Import the ``middleware:`` entries now: a typo fails when the registry is built."""
    if not config.middleware:
        return ()
    from .middleware import load_configured

    chain, issues = load_configured(config.middleware)
    if issues:
        raise ConfigError(issues, "invalid models config")
    return chain


def _default_spec(config: ModelsConfig, tiers: TierTable) -> str:
    """``tier:<defaultTier>``, checked now: a typo must fail when the registry is built, not per call."""
    if config.default_tier is None:
        return f"tier:{get_default_tier_name()}"
    try:
        tiers.get(config.default_tier)
    except UnknownTierError as exc:
        raise ConfigError([ConfigIssue("defaultTier", str(exc))], "invalid models config") from None
    return f"tier:{config.default_tier}"


def _tier_of_any_provider(raw: str, config: ModelsConfig, tiers: TierTable) -> str | None:
    """The tier that `raw` fills in some provider's tier table (built-in or configured)."""
    tables = [*DEFAULT_MODELS.values(), *(cfg.models for cfg in config.providers.values() if cfg.models)]
    known = set(tiers.known())
    order = [*(t for t in _REVERSE_PREFERENCE if t in known), *sorted(known - set(_REVERSE_PREFERENCE))]
    for tier in order:
        if any(table.get(tier) == raw for table in tables):
            return tier
    return None


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _circuit_overrides(experiment: Any) -> dict[str, Any]:
    """An experiment's ``health.circuit`` overrides as `Plan` fields (none: the registry's)."""
    health = experiment.health
    if health is None:
        return {}
    circuit = health.circuit
    written = circuit.model_fields_set
    out: dict[str, Any] = {}
    if "enabled" in written:
        out["circuit"] = circuit.enabled
    if "when_all_open" in written:
        out["when_all_open"] = circuit.when_all_open
    return out


def _fixed_seconds(ms: float | str | None) -> float | None:
    """A fixed `hedgeAfter` in seconds; None for none or a quantile word (see `Plan.hedging`)."""
    return None if ms is None or isinstance(ms, str) else ms / 1000.0


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
