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

import difflib
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .errors import ConfigError, ConfigIssue, ModelSpecError
from .routing import routing_of
from .spec import parse_spec
from .yaml_loader import LineMap, PathPart, load_yaml, yaml_type_name

__all__ = [
    "DEFAULT_ALIASES",
    "STRATEGIES",
    "ExperimentConfig",
    "ModelResult",
    "ModelsConfig",
    "ProviderConfig",
    "RequestDefaults",
    "Result",
    "RolloutConfig",
    "Strategy",
    "StrictModel",
    "TelemetryConfig",
    "TierConfig",
    "UserConfig",
    "UserDefaults",
    "load_models_config",
    "load_user_config",
    "load_user_configs",
    "load_yaml",
    "safe_validate_models_config",
    "safe_validate_user_config",
    "validate_models_config",
    "validate_user_config",
]

Strategy = Literal["first", "race", "fallback", "consensus"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_ALIASES: Mapping[str, str] = {"fast": "nano"}
MAX_RETRIES = 10

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.@+\-]+$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_KEY_LIKE = re.compile(r"^(sk|pk|rk|gsk|xai|sk-ant|sk-or|AIza)[-_A-Za-z0-9]{6,}|^[A-Za-z0-9_\-]{24,}$")
_FORBIDDEN_PARAMS = {
    "model": "is chosen by lucky_litellm from the spec",
    "messages": "is passed per request",
    "api_key": "must not be written in a config file; set the provider's apiKeyEnv instead",
}


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


def _params(value: dict[str, Any]) -> dict[str, Any]:
    for key, why in _FORBIDDEN_PARAMS.items():
        if key in value:
            raise PydanticCustomError("lucky_param", "'{key}' {why}", {"key": key, "why": why})
    return value


ExperimentName = Annotated[str, AfterValidator(_name_check("experiment name"))]
TierName = Annotated[str, AfterValidator(_name_check("tier name"))]
ProviderName = Annotated[str, AfterValidator(_name_check("provider name", _PROVIDER))]
UserId = Annotated[str, AfterValidator(_name_check("user id", _USER_ID))]
EnvName = Annotated[str, AfterValidator(_env_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ExperimentSpec = Annotated[str, AfterValidator(_experiment_spec)]
ConcreteSpec = Annotated[str, AfterValidator(_concrete_spec)]
Params = Annotated[dict[str, Any], AfterValidator(_params)]
Millis = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]
Agreement = Annotated[float, Field(gt=0, le=1)]
Delay = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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


class _StrategyOptions(StrictModel):
    """Checks and unit conversions shared by experiments and tier overrides. The fields stay in
    the subclasses: `strategy` must be declared before `hedge_after`/`min_agreement` for the
    checks to see it."""

    if TYPE_CHECKING:  # declared by the subclasses, in the order the checks need
        timeout: float | None
        attempt_timeout: float | None
        hedge_after: float | None

    @field_validator("hedge_after", check_fields=False)
    @classmethod
    def _hedge_only_for_race(cls, value: float | None, info: ValidationInfo) -> float | None:
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
        return _seconds(self.hedge_after)

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
    hedge_after: Delay | None = None
    """race only: start the next model when the previous has not answered within this many ms."""
    min_agreement: Agreement | None = None
    """consensus only: share of answers that must agree (default: strict majority)."""
    retries: Retries | None = None
    """Retries of transient errors per model; default from the registry defaults."""
    description: str | None = None
    params: Params = Field(default_factory=dict)
    """Extra litellm keyword arguments (temperature, max_tokens, ...)."""


class UserDefaults(StrictModel):
    """Per-user settings that apply to every experiment."""

    experiment: str | None = None
    """Experiment used by ``user:<id>`` specs; defaults to the first one."""
    max_concurrent: Annotated[int, Field(gt=0)] | None = None
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
    performance_tracking: bool = True
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
    enabled: bool | None = None
    """None = automatic: enabled when the key env var is set or an api_base is given."""
    litellm_provider: ProviderName | None = None
    """litellm's prefix for this provider's models (``openai`` for OpenAI-compatible servers)."""
    models: dict[TierName, ConcreteSpec] = Field(default_factory=dict)
    """Tier name -> model overrides for this provider."""
    params: Params = Field(default_factory=dict)
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
    hedge_after: Delay | None = None
    min_agreement: Agreement | None = None


class RolloutConfig(StrictModel):
    """Who gets the registry path; everyone else takes the legacy single-model path."""

    enabled: bool = True
    """Global switch; false is the kill switch."""
    percent: Annotated[float, Field(ge=0, le=100)] = 100.0
    """Share of users (sticky by user id) on the registry path."""
    test_users: list[str] = Field(default_factory=list)
    """Users always on the registry path while enabled."""
    salt: Annotated[str, Field(min_length=1)] = "lucky"
    """Mixed into the bucketing hash; change it to reshuffle who is in the percentage."""
    state_url: str | None = None
    """Where flags live across processes (``redis://127.0.0.1:6379/0``); env LUCKY_STATE_URL wins."""

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
        return os.environ.get("LUCKY_STATE_URL") or self.state_url


OutagePolicy = Literal["fail-closed", "local-share"]


class StateConfig(StrictModel):
    """How the shared state store (Redis, `LUCKY_STATE_URL`) behaves when it cannot be reached."""

    on_outage: OutagePolicy = "local-share"
    """Budgets while Redis is unreachable: ``fail-closed`` refuses budgeted calls; ``local-share``
    lets each process spend at most its share (by replica heartbeats) of what remained."""


class TelemetryConfig(StrictModel):
    """OpenTelemetry switches; prompt and answer text stay out of spans unless capture_content."""

    capture_content: bool = False
    cost_alert_thresholds: list[Annotated[float, Field(gt=0, le=10)]] = Field(
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
    max_concurrent: Annotated[int, Field(gt=0)] | None = None

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
    """Active provider; else env LUCKY_PROVIDER; else openai."""
    providers: dict[ProviderName, ProviderConfig] = Field(default_factory=dict)
    tiers: dict[TierName, TierConfig] = Field(default_factory=dict)
    aliases: dict[TierName, TierName] = Field(default_factory=lambda: dict(DEFAULT_ALIASES))
    """Extra tier names (``fast`` -> ``nano``)."""
    users: dict[UserId, UserEntry] = Field(default_factory=dict)
    """User id -> YAML file (relative to this file's folder) or an inline user config."""
    defaults: RequestDefaults = Field(default_factory=RequestDefaults)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    performance_tracking: bool = True

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
        return self.provider or os.environ.get("LUCKY_PROVIDER") or "openai"


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


# --------------------------------------------------------------------------- validation

_M = TypeVar("_M", bound=StrictModel)


def validate_models_config(
    data: Mapping[str, Any] | ModelsConfig, *, source: str | None = None
) -> ModelsConfig:
    """Validate a registry config; raises `ConfigError` listing every problem."""
    return _validate(ModelsConfig, data, LineMap(file=source), "invalid models config")


def safe_validate_models_config(
    data: Mapping[str, Any] | ModelsConfig, *, source: str | None = None
) -> Result[ModelsConfig]:
    return _safe(lambda: validate_models_config(data, source=source))


def validate_user_config(data: Mapping[str, Any] | UserConfig, *, source: str | None = None) -> UserConfig:
    """Validate a user experiment config; raises `ConfigError` listing every problem."""
    return _validate(UserConfig, data, LineMap(file=source), "invalid user config")


def safe_validate_user_config(
    data: Mapping[str, Any] | UserConfig, *, source: str | None = None
) -> Result[UserConfig]:
    return _safe(lambda: validate_user_config(data, source=source))


def _safe(validate: Callable[[], T]) -> Result[T]:
    try:
        return Result(success=True, data=validate())
    except ConfigError as exc:
        return Result(success=False, error=exc)


def _validate(cls: type[_M], data: object, lines: LineMap, title: str) -> _M:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        issue = ConfigIssue(
            "", f"expected a mapping at the top level, got {yaml_type_name(data)}", lines.file
        )
        raise ConfigError([issue], title)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        # `from None`: pydantic's own text would repeat the offending input values.
        raise ConfigError(_issues(cls, exc, lines), title) from None


# --------------------------------------------------------------------------- loading

ConfigSource = str | os.PathLike[str] | Mapping[str, Any]


def load_user_config(source: ConfigSource | UserConfig) -> UserConfig:
    """Load a user config from a path, YAML text, a mapping or an existing `UserConfig`."""
    if isinstance(source, UserConfig):
        return source
    data, lines = load_yaml(source)
    return _validate(UserConfig, data, lines, "invalid user config")


def load_models_config(source: ConfigSource | ModelsConfig) -> ModelsConfig:
    """Load a registry config; `users:` file paths come back absolute and are checked to exist.

    Relative user paths are resolved against the folder of the models file (or the working
    directory when the config was given as text or a mapping), so the result does not depend on
    where the process later runs.
    """
    if isinstance(source, ModelsConfig):
        return source
    data, lines = load_yaml(source)
    config = _validate(ModelsConfig, data, lines, "invalid models config")
    base = Path(lines.file).parent if lines.file else Path.cwd()
    users: dict[str, str | UserConfig] = {}
    issues: list[ConfigIssue] = []
    for user_id, entry in config.users.items():
        if isinstance(entry, str):
            path = _absolute(entry, base)
            if not path.is_file():
                where = ("users", user_id)
                issues.append(
                    ConfigIssue(
                        "users." + user_id,
                        f"user config file not found: {path}",
                        lines.file,
                        lines.line_for(where),
                    )
                )
            entry = str(path)
        users[user_id] = entry
    if issues:
        raise ConfigError(issues, "invalid models config")
    return config.model_copy(update={"users": users})


def load_user_configs(
    config: ModelsConfig, *, base_dir: str | os.PathLike[str] | None = None
) -> dict[str, UserConfig]:
    """Load every user of a registry config, reporting the problems of all files in one error."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    loaded: dict[str, UserConfig] = {}
    issues: list[ConfigIssue] = []
    for user_id, entry in config.users.items():
        try:
            loaded[user_id] = (
                entry if isinstance(entry, UserConfig) else load_user_config(_absolute(entry, base))
            )
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues, "invalid user configs")
    return loaded


def _absolute(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return Path(os.path.abspath(candidate if candidate.is_absolute() else base / candidate))


# --------------------------------------------------------------------------- error translation


def _issues(root: type[BaseModel], exc: ValidationError, lines: LineMap) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        path, owner, is_key = _resolve_loc(root, tuple(error["loc"]))
        ctx = error.get("ctx") or {}
        path = (*path, *ctx.get("loc_suffix", ()))
        message = _message(error, owner, path)
        if is_key and not message.startswith("invalid"):
            message = f"invalid key: {message}"
        dotted = ".".join(str(part) for part in path)
        issues.append(ConfigIssue(dotted, message, lines.file, lines.line_for(path)))
    return sorted(issues, key=lambda issue: issue.line if issue.line is not None else float("inf"))


_UNIONS = (Union, types.UnionType)


def _resolve_loc(
    root: type[BaseModel], loc: tuple[PathPart, ...]
) -> tuple[tuple[PathPart, ...], type[BaseModel] | None, bool]:
    """Follow pydantic's error location through the schema.

    Returns the path as the author wrote it (union tags and ``[key]`` markers dropped), the model
    that owns the last key (for did-you-mean on unknown keys) and whether the error is about a
    mapping key rather than its value.
    """
    path: list[PathPart] = []
    owner: type[BaseModel] | None = None
    current: Any = root
    is_key = False
    index = 0
    while index < len(loc):
        part = loc[index]
        annotation = _strip(current)
        origin = get_origin(annotation)
        if part == "[key]":
            is_key = True
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            field = _field(annotation, str(part))
            current = field.annotation if field is not None else None
            path.append(part)
        elif origin is dict:
            current = get_args(annotation)[1]
            path.append(part)
        elif origin is list:
            current = get_args(annotation)[0]
            path.append(part)
        elif origin in _UNIONS:
            current, consumed = _union_member(get_args(annotation), part)
            index += consumed  # a discriminator tag is not a key of the document
            continue
        else:
            current = None
            path.append(part)
        index += 1
    return tuple(path), owner, is_key


def _strip(annotation: Any) -> Any:
    """Drop Annotated wrappers and Optional's None, keeping tagged union members as they are."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in _UNIONS:
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return annotation


def _is_tagged(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and any(isinstance(m, Tag) for m in annotation.__metadata__)


def _union_member(members: tuple[Any, ...], part: PathPart) -> tuple[Any, int]:
    """The union member an error location continues into, and whether `part` was its tag."""
    for member in members:
        if _is_tagged(member) and any(isinstance(m, Tag) and m.tag == part for m in member.__metadata__):
            return _strip(member), 1
    for member in members:
        stripped = _strip(member)
        if isinstance(stripped, type) and issubclass(stripped, BaseModel):
            return stripped, 0
    return None, 0


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _message(error: Mapping[str, Any], owner: type[BaseModel] | None, path: tuple[PathPart, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    key = str(path[-1]) if path else ""
    got = yaml_type_name(error.get("input"))
    if kind == "extra_forbidden":
        return _unknown_key(key, owner)
    if kind == "invalid_key":
        return "keys must be strings (quote it in YAML)"
    if kind == "missing":
        return "required, but missing"
    if kind == "literal_error":
        return _one_of(ctx.get("expected", ""), error.get("input"))
    if kind in ("string_type", "string_sub_type"):
        return f"expected a string, got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {'a fraction' if kind == 'int_from_float' else got}"
    if kind in ("float_type", "float_parsing"):
        unit = " (milliseconds, e.g. 10000)" if key in ("timeout", "hedgeAfter", "hedge_after") else ""
        return f"expected a number{unit}, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "model_type" and len(path) == 2 and path[0] == "users":
        return f"expected the path of a YAML file or an inline user config, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping, got {got}"
    if kind in ("list_type", "iterable_type"):
        hint = " (write one item per '- ' line)" if got == "string" else ""
        return f"expected a list, got {got}{hint}"
    if kind == "too_short":
        return {
            "providers": "must list at least one model",
            "experiments": "must define at least one experiment",
        }.get(key, "must not be empty")
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    bounds = {
        "greater_than": ("must be greater than", "gt"),
        "greater_than_equal": ("must be at least", "ge"),
        "less_than": ("must be less than", "lt"),
        "less_than_equal": ("must be at most", "le"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        if kind == "greater_than_equal" and ctx.get(name) == 0:
            return "must not be negative"
        return f"{words} {ctx.get(name):g}"
    if kind == "finite_number":
        return "must be a finite number"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _unknown_key(key: str, owner: type[BaseModel] | None) -> str:
    if owner is None:
        return f"unknown key {key!r}"
    spellings: dict[str, str] = {}
    for name, info in owner.model_fields.items():
        alias = info.alias or name
        spellings[name] = name if "_" in key else alias
        spellings[alias] = name if "_" in key else alias
    close = difflib.get_close_matches(key, list(spellings), n=1, cutoff=0.6)
    if not close:
        lowered = {spelling.lower().replace("_", ""): spelling for spelling in spellings}
        match = lowered.get(key.lower().replace("_", "").replace("-", ""))
        close = [match] if match else []
    if close:
        return f"unknown key {key!r} (did you mean {spellings[close[0]]!r}?)"
    allowed = ", ".join(dict.fromkeys(info.alias or name for name, info in owner.model_fields.items()))
    return f"unknown key {key!r}; allowed: {allowed}"


def _one_of(expected: str, value: object) -> str:
    options = re.findall(r"'([^']*)'", expected)
    message = f"must be one of {', '.join(options)}"
    if isinstance(value, str) and len(value) <= 40:
        close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.5)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message
