"""Typed configuration: the models registry config (`models.yaml`) and per-user experiment configs.

The YAML files are written in camelCase (``maxCost``, ``hedgeAfter``); Python callers may use the
snake_case field names. Both spellings are accepted everywhere, and unknown keys are errors, because
a typo such as ``stratgy`` that silently falls back to a default is the worst kind of config bug.
Durations are milliseconds in YAML (``timeout: 10000``) and each has a ``*_s`` property in seconds.

Validation never stops at the first problem: `validate_*` raise one `ConfigError` listing every
issue with its dotted path and, when the data came from YAML, the file and line. Input values are
never echoed (a pasted API key must not end up in a log), except for short did-you-mean hints.

This module must not import litellm: `import lucky_litellm` stays cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    NoReturn,
    TypeVar,
    Union,
    get_args,
)

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ..errors import ConfigError, ModelSpecError
from ..guard.policy import GuardPolicy
from ..routing import routing_of
from ..spec import parse_spec
from .params import check_params, check_provider_params

__all__ = [
    "DEFAULT_ALIASES",
    "MAX_CONCURRENT",
    "MAX_COST_USD",
    "MAX_MILLIS",
    "STRATEGIES",
    "CircuitConfig",
    "ExperimentConfig",
    "HealthConfig",
    "HedgeAfter",
    "HedgeBudgetConfig",
    "HedgingConfig",
    "Millis",
    "ModelResult",
    "ModelsConfig",
    "OutagePolicy",
    "ProviderConfig",
    "RequestDefaults",
    "Result",
    "RolloutConfig",
    "StateConfig",
    "Strategy",
    "StrictModel",
    "TelemetryConfig",
    "TierConfig",
    "UserConfig",
    "UserDefaults",
    "WhenAllOpen",
]

Strategy = Literal["first", "race", "fallback", "consensus"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_ALIASES: Mapping[str, str] = {"fast": "nano"}
MAX_RETRIES = 10
MAX_MILLIS = 86_400_000.0
"""Longest timeout or delay a config may set: 24 hours, in milliseconds."""
MAX_COST_USD = 1_000_000.0
"""Largest cost cap or budget a config may set, in USD."""
MAX_CONCURRENT = 100_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.@+\-]+$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_KEY_LIKE = re.compile(r"^(sk|pk|rk|gsk|xai|sk-ant|sk-or|AIza)[-_A-Za-z0-9]{6,}|^[A-Za-z0-9_\-]{24,}$")


# --------------------------------------------------------------------------- field checks


def _name_check(what: str, pattern: re.Pattern[str] = _NAME) -> Callable[[str], str]:
    """Names end up inside specs (``user:<id>:<experiment>``), so ':' and spaces must not get in."""
    if pattern is _USER_ID:
        rule = "letters, digits and _.@+- only"
    elif pattern is _PROVIDER:
        rule = "lowercase letters, digits, '_' or '-' only"
    else:
        rule = "start with a letter or digit, then letters, digits, '_', '.' or '-'"

    def check(value: str) -> str:
        if not pattern.match(value):
            raise PydanticCustomError(
                "lucky_name", "invalid {what} '{name}': {rule}", {"what": what, "name": value, "rule": rule}
            )
        return value

    return check


def _experiment_spec(value: str) -> str:
    """Experiments may use concrete models and tiers; a user: spec would let configs recurse."""
    spec = parse_spec(value)
    if spec.kind == "user":
        raise ModelSpecError(
            value, "user: specs cannot be used inside an experiment; use provider/model or tier:"
        )
    return value


def _concrete_spec(value: str) -> str:
    """Tiers and provider overrides name real models; one tier pointing at another is an alias."""
    spec = parse_spec(value)
    if spec.kind != "model":
        raise ModelSpecError(
            value, "expected a concrete provider/model spec here (use `aliases` for tier names)"
        )
    return value


def _env_name(value: str) -> str:
    """Reject pasted secrets without quoting them: the message may end up in logs."""
    if _ENV_NAME.match(value):
        return value
    if _KEY_LIKE.match(value):
        raise PydanticCustomError(
            "lucky_secret",
            "this looks like an API key, not the name of an environment variable; put the key in an "
            "environment variable and write its name here (e.g. OPENAI_API_KEY)",
        )
    raise PydanticCustomError(
        "lucky_env_name",
        "must be the NAME of an environment variable in UPPER_SNAKE_CASE (e.g. OPENAI_API_KEY)",
    )


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise PydanticCustomError("lucky_url", "must be an http:// or https:// URL")
    return value


ExperimentName = Annotated[str, AfterValidator(_name_check("experiment name"))]
TierName = Annotated[str, AfterValidator(_name_check("tier name"))]
ProviderName = Annotated[str, AfterValidator(_name_check("provider name", _PROVIDER))]
UserId = Annotated[str, AfterValidator(_name_check("user id", _USER_ID))]
EnvName = Annotated[str, AfterValidator(_env_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ExperimentSpec = Annotated[str, AfterValidator(_experiment_spec)]
ConcreteSpec = Annotated[str, AfterValidator(_concrete_spec)]
Params = Annotated[dict[str, Any], AfterValidator(check_params)]
"""A user experiment's extra litellm arguments: generation parameters only (see `params.py`)."""
ProviderParams = Annotated[dict[str, Any], AfterValidator(check_provider_params)]
# Every number is finite and bounded: 1e300 USD or ms would load, then overflow on every call.
Millis = Annotated[float, Field(gt=0, le=MAX_MILLIS, allow_inf_nan=False)]
Usd = Annotated[float, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]
Agreement = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Delay = Annotated[float, Field(ge=0, le=MAX_MILLIS, allow_inf_nan=False)]
Concurrency = Annotated[int, Field(gt=0, le=MAX_CONCURRENT)]
Switch = Annotated[bool, Field(strict=True)]
"""A YAML boolean (true/false); a string such as "yes" or "off" is refused, not guessed at."""
HedgeQuantile = Literal["auto", "p90", "p95", "p99"]


def _hedge_after_kind(value: Any) -> str:
    """A number (or a numeric string) is milliseconds; any other string names a quantile."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return "quantile"
    return "ms"


HedgeAfter = Annotated[
    Union[Annotated[Delay, Tag("ms")], Annotated[HedgeQuantile, Tag("quantile")]],  # noqa: UP007
    Discriminator(_hedge_after_kind),
]
"""`hedgeAfter`: milliseconds, or ``auto``/``p90``/``p95``/``p99`` (the observed latency quantile
of the model in flight, see `HedgingConfig`)."""


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _only_for(strategy_needed: str, key: str, value: Any, info: ValidationInfo) -> Any:
    """Strategy extras only mean something for one strategy; elsewhere they would be silently ignored."""
    strategy = info.data.get("strategy")
    if value is not None and strategy is not None and strategy != strategy_needed:
        raise PydanticCustomError(
            "lucky_strategy_extra",
            "{key} only applies to strategy {needed} (this one uses {strategy})",
            {"key": key, "needed": strategy_needed, "strategy": strategy},
        )
    return value


# --------------------------------------------------------------------------- schemas


class StrictModel(BaseModel):
    """Base of every config model: camelCase or snake_case keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    _lines: Any = PrivateAttr(default=None)
    """The `LineMap` of the YAML this config was loaded from (see `config.load.source_lines`)."""

    def __eq__(self, other: object) -> bool:
        """Equal when the settings are: where a config was loaded from does not count."""
        if isinstance(other, StrictModel) and type(other) is type(self):
            return self.__dict__ == other.__dict__
        return NotImplemented


WhenAllOpen = Literal["fail", "tryLeastRecentlyFailed"]


class CircuitConfig(StrictModel):
    """Circuit breakers: a model that keeps failing is skipped for a cooldown, then one probe at a
    time decides whether it is back. The defaults follow LiteLLM's Router, which also cools a
    failing deployment down unless told otherwise (there: 5 s after 3 failures a minute)."""

    enabled: bool = True
    """Skip models whose circuit is open. Off: every model is always called, nothing is counted."""
    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    """Failures (errors or timeouts) in a row that open the circuit."""
    error_rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = 0.5
    """Share of failed calls over the sliding `window` that opens the circuit (null: off)."""
    min_calls: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    """Calls the window must hold before `errorRate` is judged."""
    window: Millis = 60000.0
    """Length of the sliding error-rate window, in milliseconds."""
    cooldown: Millis = 5000.0
    """How long an open circuit skips its model before one probe is let through, in milliseconds."""
    max_retry_after: Millis = 600000.0
    """A 429 opens the circuit for its Retry-After, at most this long (milliseconds)."""
    when_all_open: WhenAllOpen = "fail"
    """Every model of a plan open: ``fail`` fast (`CircuitOpenError`), or
    ``tryLeastRecentlyFailed`` (call the open model whose last failure is oldest)."""

    @property
    def window_s(self) -> float:
        return self.window / 1000.0

    @property
    def cooldown_s(self) -> float:
        return self.cooldown / 1000.0

    @property
    def max_retry_after_s(self) -> float:
        return self.max_retry_after / 1000.0


class HedgeBudgetConfig(StrictModel):
    """gRPC-style retry throttling for hedges: each request adds ``tokenRatio`` of a token, each
    hedge spends one, and no hedge starts while the bucket holds ``maxTokens / 2`` or less."""

    token_ratio: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.1
    """Hedges allowed per request in the long run: 0.1 = at most 10 % extra requests."""
    max_tokens: Annotated[float, Field(ge=2, le=10_000, allow_inf_nan=False)] = 20.0
    """Size of the bucket; a burst of ``maxTokens / 2`` hedges is allowed on top of the ratio (at
    10 the bursts of a busy client, many requests late at once, were refused; see README)."""


class HedgingConfig(StrictModel):
    """``health.hedging``: what ``hedgeAfter: auto`` (or ``p90``/``p95``/``p99``) does."""

    quantile: Literal["p90", "p95", "p99"] = "p95"
    """The latency quantile ``auto`` hedges at ("The Tail at Scale" hedges at p95)."""
    floor: Delay = 50.0
    """Shortest hedge delay in ms, however fast the model has been."""
    ceiling: Millis = 10_000.0
    """Longest hedge delay in ms, however slow the model has been."""
    initial: Delay = 1000.0
    """Hedge delay in ms until ``minSamples`` latencies of the model are known."""
    min_samples: Annotated[int, Field(ge=1, le=100_000)] = 20
    """Successful latencies of a model needed before its quantile is trusted (registry-wide)."""
    window: Annotated[int, Field(ge=1, le=100_000)] = 200
    """How many recent successful latencies are kept per model (registry-wide)."""
    budget: HedgeBudgetConfig | None = Field(default_factory=HedgeBudgetConfig)
    """The hedge budget; ``null`` turns it off. Quantile hedging always obeys it; a fixed
    ``hedgeAfter: <ms>`` obeys it only when ``budget`` is written in the config."""

    @field_validator("ceiling")
    @classmethod
    def _ceiling_above_floor(cls, value: float, info: ValidationInfo) -> float:
        floor = info.data.get("floor")
        if floor is not None and value < floor:
            raise PydanticCustomError(
                "lucky_hedge_ceiling",
                "ceiling ({ceiling} ms) is below floor ({floor} ms)",
                {"ceiling": f"{value:g}", "floor": f"{floor:g}"},
            )
        return value

    @field_validator("window")
    @classmethod
    def _window_holds_min_samples(cls, value: int, info: ValidationInfo) -> int:
        needed = info.data.get("min_samples")
        if needed is not None and value < needed:
            raise PydanticCustomError(
                "lucky_hedge_window",
                "window ({window}) must hold at least minSamples ({needed}) latencies",
                {"window": value, "needed": needed},
            )
        return value

    def merged(self, override: HedgingConfig | None) -> HedgingConfig:
        """These settings with the keys `override` sets (an experiment's) written over them."""
        if override is None or not override.model_fields_set:
            return self
        return self.model_copy(update={key: getattr(override, key) for key in override.model_fields_set})


class HealthConfig(StrictModel):
    """``health:`` in models.yaml (and per experiment): how the strategies react to how models do."""

    hedging: HedgingConfig = Field(default_factory=HedgingConfig)
    """Adaptive hedging (``hedgeAfter: auto``) and the hedge budget."""
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)
    """Circuit breakers: a failing model is skipped for a cooldown (per experiment, only
    ``enabled`` and ``whenAllOpen`` may be overridden: a model's circuit is shared)."""

    def merged(self, override: HealthConfig | None) -> HealthConfig:
        """These settings with an experiment's overrides (only the keys it writes) applied."""
        if override is None:
            return self
        return self.model_copy(update={"hedging": self.hedging.merged(override.hedging)})


_CIRCUIT_PER_EXPERIMENT = frozenset({"enabled", "when_all_open"})
"""The circuit settings an experiment may override; the thresholds belong to the model's circuit,
which every experiment calling the model shares."""


def _refuse_shared(cls: type[BaseModel], info: ValidationInfo, section: str, also: str = "") -> NoReturn:
    """Refuse a registry-wide key written in an experiment. A validator per key (not one check of
    the whole section) so that every such key is reported in one pass, each at its own line."""
    field = cls.model_fields[info.field_name or ""]
    raise PydanticCustomError(
        "lucky_registry_wide",
        "{key} is shared by every experiment: set it in models.yaml under {section}{also}",
        {"key": field.alias or info.field_name, "section": section, "also": also},
    )


class ExperimentHedgingConfig(HedgingConfig):
    """``health.hedging`` of an experiment: everything but the registry-wide latency window."""

    settable_keys: ClassVar[tuple[str, ...]] = ("quantile", "floor", "ceiling", "initial", "budget")

    @field_validator("window", "min_samples", mode="before")
    @classmethod
    def _window_is_shared(cls, value: object, info: ValidationInfo) -> NoReturn:
        _refuse_shared(cls, info, "health.hedging")


class ExperimentCircuitConfig(CircuitConfig):
    """``health.circuit`` of an experiment: only ``enabled`` and ``whenAllOpen`` (a model's
    circuit, its thresholds and cooldown, is shared by every experiment calling it)."""

    settable_keys: ClassVar[tuple[str, ...]] = ("enabled", "whenAllOpen")

    @field_validator(*sorted(set(CircuitConfig.model_fields) - _CIRCUIT_PER_EXPERIMENT), mode="before")
    @classmethod
    def _thresholds_are_shared(cls, value: object, info: ValidationInfo) -> NoReturn:
        _refuse_shared(cls, info, "health.circuit", " (an experiment may set enabled and whenAllOpen)")


class ExperimentHealthConfig(HealthConfig):
    """``health:`` of an experiment: overrides of the registry's settings (only the keys written)."""

    hedging: ExperimentHedgingConfig = Field(default_factory=ExperimentHedgingConfig)
    """Adaptive hedging overrides (not ``window``/``minSamples``: registry-wide)."""
    circuit: ExperimentCircuitConfig = Field(default_factory=ExperimentCircuitConfig)
    """Circuit overrides: ``enabled`` and ``whenAllOpen`` only."""


class _StrategyOptions(StrictModel):
    """Checks and unit conversions shared by experiments and tier overrides. The fields stay in
    the subclasses: `strategy` must be declared before `hedge_after`/`min_agreement` for the
    checks to see it."""

    if TYPE_CHECKING:  # declared by the subclasses, in the order the checks need
        timeout: float | None
        attempt_timeout: float | None
        hedge_after: float | str | None

    @field_validator("hedge_after", check_fields=False)
    @classmethod
    def _hedge_only_for_race(cls, value: float | str | None, info: ValidationInfo) -> float | str | None:
        return _only_for("race", "hedgeAfter", value, info)

    @field_validator("min_agreement", check_fields=False)
    @classmethod
    def _agreement_only_for_consensus(cls, value: float | None, info: ValidationInfo) -> float | None:
        return _only_for("consensus", "minAgreement", value, info)

    @property
    def timeout_s(self) -> float | None:
        return _seconds(self.timeout)

    @property
    def hedge_after_s(self) -> float | None:
        """A fixed `hedgeAfter` in seconds; None when unset or a quantile (``auto``, ``p95``...)."""
        return None if isinstance(self.hedge_after, str) else _seconds(self.hedge_after)

    @property
    def attempt_timeout_s(self) -> float | None:
        return _seconds(self.attempt_timeout)


class ExperimentConfig(_StrategyOptions):
    """One named experiment of a user config: which models run, and how."""

    strategy: Strategy = "first"
    """How the providers are combined: first | race | fallback | consensus."""
    providers: Annotated[list[ExperimentSpec], Field(min_length=1)]
    """Model specs in priority order: ``provider/model`` or ``tier:<name>``."""
    timeout: Millis | None = None
    """Deadline of the whole experiment, in milliseconds."""
    attempt_timeout: Millis | None = None
    """Longest one call to one model may take, in milliseconds, inside the experiment deadline;
    a call past it is cancelled and counts as a transient failure (retried, or the next model).
    Default: derived from the deadline and the strategy (see README, "Per-attempt budgets")."""
    max_cost: Usd | None = None
    """Most a single request may cost, in USD; dearer models are skipped."""
    hedge_after: HedgeAfter | None = None
    """race only: start the next model when the previous has not answered within this many ms, or
    within its observed latency quantile (``auto`` = p95, ``p90``, ``p95``, ``p99``)."""
    min_agreement: Agreement | None = None
    """consensus only: share of answers that must agree (default: strict majority)."""
    retries: Retries | None = None
    """Retries of transient errors per model; default from the registry defaults."""
    health: ExperimentHealthConfig | None = None
    """Overrides of the registry's ``health:`` settings for this experiment (only the keys written)."""
    description: str | None = None
    params: Params = Field(default_factory=dict)
    """Generation parameters passed to litellm (temperature, max_tokens, tools, ...); an allow-list:
    nothing that redirects traffic or credentials, nor litellm's retry/stream/timeout switches."""


class UserDefaults(StrictModel):
    """Per-user settings that apply to every experiment."""

    experiment: str | None = None
    """Experiment used by ``user:<id>`` specs; defaults to the first one."""
    max_concurrent: Concurrency | None = None
    """Requests of this user in flight at once."""
    timeout: Millis | None = None
    """Deadline of an experiment without its own timeout, in milliseconds."""
    cost_limit: Usd | None = None
    """Total budget of this user in USD."""

    @property
    def timeout_s(self) -> float | None:
        return _seconds(self.timeout)


class UserConfig(StrictModel):
    """A user's YAML experiment config (``configs/*-example.yaml``)."""

    name: str | None = None
    description: str | None = None
    experiments: Annotated[dict[ExperimentName, ExperimentConfig], Field(min_length=1)]
    defaults: UserDefaults = Field(default_factory=UserDefaults)
    performance_tracking: Switch = True
    """Record per-model latency and cost for this user in `Models.stats()`."""

    @field_validator("defaults")
    @classmethod
    def _default_experiment_exists(cls, value: UserDefaults, info: ValidationInfo) -> UserDefaults:
        experiments = info.data.get("experiments")
        if value.experiment is not None and experiments is not None and value.experiment not in experiments:
            raise PydanticCustomError(
                "lucky_unknown_experiment",
                "'{name}' is not an experiment of this config; known: {known}",
                {"name": value.experiment, "known": ", ".join(experiments), "loc_suffix": ("experiment",)},
            )
        return value

    @property
    def default_experiment(self) -> str:
        return self.defaults.experiment or next(iter(self.experiments))


class ProviderConfig(StrictModel):
    """How to reach one provider. Keys are never stored, only the name of the env var holding them."""

    api_key_env: EnvName | None = None
    """NAME of the environment variable holding the API key (e.g. OPENAI_API_KEY)."""
    api_base: HttpUrl | None = None
    """Endpoint URL, e.g. an OpenAI-compatible local server."""
    api_base_env: EnvName | None = None
    """NAME of an environment variable holding the endpoint URL."""
    enabled: Switch | None = None
    """None = automatic: enabled when the key env var is set or an api_base is given."""
    litellm_provider: ProviderName | None = None
    """litellm's prefix for this provider's models (``openai`` for OpenAI-compatible servers)."""
    models: dict[TierName, ConcreteSpec] = Field(default_factory=dict)
    """Tier name -> model overrides for this provider."""
    params: ProviderParams = Field(default_factory=dict)
    """Extra litellm keyword arguments for every call to this provider (api_version, ...)."""


class TierConfig(_StrategyOptions):
    """An override of one built tier; unset fields keep the built tier's values."""

    model: ConcreteSpec | None = None
    models: Annotated[list[ConcreteSpec], Field(min_length=1)] | None = None
    strategy: Strategy | None = None
    timeout: Millis | None = None
    attempt_timeout: Millis | None = None
    """Longest one call to one model may take, in milliseconds (see `ExperimentConfig`)."""
    max_cost: Usd | None = None
    retries: Retries | None = None
    hedge_after: HedgeAfter | None = None
    min_agreement: Agreement | None = None


class RolloutConfig(StrictModel):
    """Who gets the registry path; everyone else takes the legacy single-model path."""

    enabled: Switch = True
    """Global switch; false is the kill switch."""
    percent: Annotated[float, Field(ge=0, le=100)] = 100.0
    """Share of users (sticky by user id) on the registry path."""
    test_users: list[str] = Field(default_factory=list)
    """Users always on the registry path while enabled."""
    salt: Annotated[str, Field(min_length=1)] = "lucky"
    """Mixed into the bucketing hash; change it to reshuffle who is in the percentage."""
    state_url: str | None = None
    """Where flags live across processes (``redis://127.0.0.1:6379/0``); env LUCKY_STATE_URL wins."""
    auto_tier: Switch = True
    """On the registry path, a concrete model that a tier maps to runs as that tier (its strategy
    and the active provider apply); the legacy path keeps the concrete model."""
    guard: GuardPolicy | None = None
    """Guarded rollout (``lucky-litellm rollout guard start``): stages, minimums, metric thresholds;
    see `lucky_litellm.guard.policy`."""

    @field_validator("state_url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z][a-z0-9+.\-]*://", value):
            raise PydanticCustomError(
                "lucky_url", "must be a URL such as redis://127.0.0.1:6379/0 or memory://"
            )
        return value

    @property
    def effective_state_url(self) -> str | None:
        return self.state_url_in(os.environ)

    def state_url_in(self, environ: Mapping[str, str]) -> str | None:
        """The flag store URL: ``LUCKY_STATE_URL`` in `environ` wins over ``stateUrl``."""
        return environ.get("LUCKY_STATE_URL") or self.state_url


OutagePolicy = Literal["fail-closed", "local-share"]


class StateConfig(StrictModel):
    """How the shared state store (Redis, `LUCKY_STATE_URL`) behaves when it cannot be reached."""

    on_outage: OutagePolicy = "local-share"
    """Budgets while Redis is unreachable: ``fail-closed`` refuses budgeted calls; ``local-share``
    lets each process spend at most its share (by replica heartbeats) of what remained."""


class TelemetryConfig(StrictModel):
    """OpenTelemetry switches; prompt and answer text stay out of spans unless capture_content."""

    capture_content: Switch = False
    cost_alert_thresholds: list[Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0]
    )
    """Fractions of a user's costLimit at which a cost alert is emitted (kept sorted, unique)."""

    @field_validator("cost_alert_thresholds")
    @classmethod
    def _sorted_unique(cls, value: list[float]) -> list[float]:
        return sorted(set(value))


class RequestDefaults(StrictModel):
    """Defaults for requests whose tier or experiment does not set them."""

    timeout: Millis = 60000.0
    """Milliseconds."""
    retries: Retries = 2
    max_concurrent: Concurrency | None = None

    @property
    def timeout_s(self) -> float:
        return self.timeout / 1000.0


def _user_entry_kind(value: Any) -> str:
    return "path" if isinstance(value, str) else "inline"


UserEntry = Annotated[
    Union[Annotated[str, Tag("path")], Annotated[UserConfig, Tag("inline")]],  # noqa: UP007
    Discriminator(_user_entry_kind),
]


class ModelsConfig(StrictModel):
    """The registry config (``configs/models.yaml``): providers, tier overrides, users, rollout."""

    provider: ProviderName | None = None
    """Active provider, unless env LUCKY_PROVIDER names one; else openai."""
    providers: dict[ProviderName, ProviderConfig] = Field(default_factory=dict)
    tiers: dict[TierName, TierConfig] = Field(default_factory=dict)
    aliases: dict[TierName, TierName] = Field(default_factory=lambda: dict(DEFAULT_ALIASES))
    """Extra tier names (``fast`` -> ``nano``)."""
    users: dict[UserId, UserEntry] = Field(default_factory=dict)
    """User id -> YAML file (relative to this file's folder) or an inline user config."""
    defaults: RequestDefaults = Field(default_factory=RequestDefaults)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    """Circuit breakers (``health.circuit``), adaptive hedging and its budget (``health.hedging``)."""
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    performance_tracking: Switch = Field(
        default=True,
        validation_alias=AliasChoices(
            "trackPerformance", "track_performance", "performanceTracking", "performance_tracking"
        ),
    )
    """Record per-model latency and cost in `Models.stats()` (``trackPerformance``)."""
    track_cost: Switch = True
    """Price every answer (`routing.cost_usd`, stats, cost alerts). Off: answers carry no cost, except
    for users with a ``costLimit``, whose budget needs it."""
    default_tier: TierName | None = None
    middleware: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(default_factory=list)
    """Importable middleware (``package.module:name``), run in order around every request."""
    """The tier a call without a spec runs (``complete(None, ...)``, ``models.model()``)."""

    @field_validator("aliases")
    @classmethod
    def _no_self_alias(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            if name == target:
                raise PydanticCustomError(
                    "lucky_alias", "alias '{name}' points at itself", {"name": name, "loc_suffix": (name,)}
                )
        return value

    @property
    def active_provider(self) -> str:
        return self.active_provider_in(os.environ)

    def active_provider_in(self, environ: Mapping[str, str]) -> str:
        """``LUCKY_PROVIDER`` in `environ`, else ``provider``, else openai (environment over file)."""
        return environ.get("LUCKY_PROVIDER") or self.provider or "openai"


# --------------------------------------------------------------------------- results

T = TypeVar("T")


@dataclass(frozen=True)
class Result(Generic[T]):
    """Outcome of a `safe_validate_*` call, for callers that prefer values to exceptions."""

    success: bool
    data: T | None = None
    error: ConfigError | None = None


class ModelResult(BaseModel):
    """A typed summary of one answer, for callers who do not want litellm's `ModelResponse`."""

    model_config = ConfigDict(frozen=True)

    content: str | None
    model: str
    strategy: str
    cost_usd: float
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None

    @classmethod
    def from_response(cls, response: Any) -> ModelResult:
        """Summarise a response returned by `complete`; raises LookupError for foreign responses."""
        routing = routing_of(response)
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        usage = getattr(response, "usage", None)
        return cls(
            content=getattr(message, "content", None),
            model=routing.winner or getattr(response, "model", None) or "",
            strategy=routing.strategy,
            cost_usd=routing.cost_usd,
            latency_ms=routing.latency_ms,
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
        )
