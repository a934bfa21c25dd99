"""The guard's rules: stages, how long each is held, which metrics may regress by how much.

In ``models.yaml`` (camelCase keys, as the rest of the config)::

    rollout:
      guard:
        stages: [1, 5, 25, 50, 100]        # % of users on the registry path, in order
        minCalls: 200                      # per path, before a stage may advance
        minSeconds: 300                    # wall time a stage is held at least
        alpha: 0.05                        # wrong rollback: whole rollout; wrong advance: a stage
        rollbackMargin: 0                  # roll back when shown worse by more than this x threshold
        metrics:
          error_rate: +1pp                 # percentage points
          p95_latency: +20%                # relative to legacy
          cost: +10%                       # mean cost per call, relative to legacy
          feedback.thumbs_up: -0.05        # a user metric: see "direction" below

A stage may also be a mapping with its own minimums: ``- {percent: 25, minCalls: 1000}``.

**Thresholds.** A threshold is the regression the registry path is allowed, compared with legacy:
``+1pp`` (absolute, percentage points: rates only), ``+20%`` (relative to legacy's value),
``+250ms`` / ``+0.5s`` (absolute, latency only), or a bare signed number in the metric's own unit
(USD for cost, the value for feedback). Error rate and latency need a unit (``pp``/``%`` and
``ms``/``s``/``%``): a bare ``+20`` could mean anything. An error-rate threshold is above 0 and
at most ``+50pp``.

**Direction.** Error rate, latency and cost are worse when higher: their threshold is positive
(the ``+`` may be left out). A feedback metric can go either way, so its sign says which way is
worse: ``feedback.thumbs_up: -0.05`` means *lower is worse* and the registry may score up to
0.05 lower; ``feedback.regenerations: +0.1`` means *higher is worse*. A feedback threshold
without a sign is an error, and so is a zero threshold (nothing could ever be shown not worse).

**Two margins.** A stage *advances* when every metric is shown not worse than its threshold
(non-inferiority, margin = the threshold), but is *rolled back* as soon as one is shown worse than
legacy by more than ``rollbackMargin`` x its threshold: by default 0, i.e. shown worse at all (a
superiority test for a regression). One margin for both would make the kill switch wait for
evidence beyond the threshold: a registry 2 points worse against +1pp would serve thousands of calls
first. ``rollbackMargin: 1`` is that stricter-to-roll-back rule (a regression within the threshold
is then tolerated and held, not rolled back).

``metrics`` replaces the default set ``{error_rate: +1pp, p95_latency: +20%, cost: +10%}`` as a
whole, so a metric can be dropped by leaving it out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from ..yaml_loader import LineMap

__all__ = [
    "BUILTIN_METRICS",
    "DEFAULT_METRICS",
    "DEFAULT_STAGES",
    "GuardPolicy",
    "MetricName",
    "Stage",
    "Threshold",
    "parse_threshold",
    "validate_guard_policy",
]

DEFAULT_STAGES: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
BUILTIN_METRICS: tuple[str, ...] = ("error_rate", "p95_latency", "cost")
DEFAULT_METRICS: Mapping[str, str] = {"error_rate": "+1pp", "p95_latency": "+20%", "cost": "+10%"}
_ALIASES = {
    "error_rate": "error_rate",
    "errorRate": "error_rate",
    "p95_latency": "p95_latency",
    "p95Latency": "p95_latency",
    "cost": "cost",
}
_FEEDBACK = re.compile(r"^feedback\.([A-Za-z0-9][A-Za-z0-9_.\-]{0,63})$")
_THRESHOLD = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*(pp|%|ms|s)?\s*$")

Unit = Literal["", "pp", "%", "ms", "s"]
_NEEDS_UNIT: Mapping[str, tuple[tuple[str, ...], str]] = {
    "error_rate": (("pp", "%"), "+1pp (percentage points) or +20% (relative to legacy)"),
    "p95_latency": (("ms", "s", "%"), "+250ms, +0.5s or +20% (relative to legacy)"),
}
"""A bare number is ambiguous for these (``+20``: seconds? points? a fraction?): a unit is required."""
_MAX_ERROR_RATE_PP = 50.0
"""More than half the calls failing on top of legacy's is no guard at all (and +1000pp never trips)."""


@dataclass(frozen=True)
class Threshold:
    """A parsed regression threshold.

    `relative` thresholds compare the ratio registry/legacy with ``1 + amount``; absolute ones the
    difference registry - legacy with `amount`, in the metric's unit (fraction, seconds, USD).
    `higher_is_worse` is the direction of regression; `amount` keeps the written sign (so it is
    negative when lower is worse)."""

    amount: float
    relative: bool
    higher_is_worse: bool
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def margin(self) -> float:
        """The allowed regression as a positive number (fraction, or relative share)."""
        return abs(self.amount)


def parse_threshold(metric: str, value: object) -> Threshold:
    """``"+1pp"``, ``"+20%"``, ``"+250ms"``, ``-0.05`` → a `Threshold` for `metric` (its canonical name).

    Raises ValueError (with a message naming what is wrong, never echoing long input)."""
    if isinstance(value, Threshold):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a threshold such as +1pp, +20% or -0.05")
    text = str(value)
    explicit_sign = isinstance(value, str) and text.strip()[:1] in "+-" and text.strip() != ""
    if isinstance(value, int | float):
        if not math.isfinite(float(value)):
            raise ValueError("must be a finite number")
        number, unit, sign = float(value), "", "-" if value < 0 else "+"
        explicit_sign = value < 0  # YAML drops a '+'; a negative number is explicit
    else:
        match = _THRESHOLD.match(text) if len(text) <= 40 else None
        if not match:
            raise ValueError("expected a threshold such as +1pp, +20%, +250ms or -0.05 (sign, number, unit)")
        sign, unit = match.group(1) or "+", match.group(3) or ""
        number = float(text.strip().lstrip("+-").strip().removesuffix(unit).strip())
        if sign == "-":
            number = -number
    if number == 0:
        raise ValueError("a threshold of 0 could never be shown not worse; give the regression allowed")
    feedback = metric.startswith("feedback.")
    if feedback and not explicit_sign:
        raise ValueError(
            "a feedback threshold needs a sign: -0.05 if lower is worse, +0.05 if higher is worse"
        )
    if not feedback and number < 0:
        raise ValueError(
            f"{metric} is worse when higher: its threshold must be positive (e.g. +{-number:g}{unit})"
        )
    if unit == "pp" and metric != "error_rate":
        raise ValueError("'pp' (percentage points) applies to error_rate only")
    if unit in ("ms", "s") and metric != "p95_latency":
        raise ValueError(f"'{unit}' applies to p95_latency only")
    if metric in _NEEDS_UNIT and unit not in _NEEDS_UNIT[metric][0]:
        raise ValueError(f"{metric} needs a unit: {_NEEDS_UNIT[metric][1]}")
    if metric == "error_rate" and unit == "pp" and number > _MAX_ERROR_RATE_PP:
        raise ValueError(
            f"error_rate: +{number:g}pp is not a sensible regression allowance; "
            f"give at most +{_MAX_ERROR_RATE_PP:g}pp (or a relative +N%)"
        )
    amount = number / 100 if unit in ("pp", "%") else number / 1000 if unit == "ms" else number
    if unit == "%" and amount <= -1:
        raise ValueError("a relative threshold must be above -100%")
    canonical = f"{'+' if number > 0 else '-'}{abs(number):g}{unit}"
    return Threshold(amount=amount, relative=unit == "%", higher_is_worse=number > 0, text=canonical)


def _canonical_metric(key: object) -> str:
    if not isinstance(key, str):
        raise PydanticCustomError("lucky_metric", "metric names must be strings")
    if key in _ALIASES:
        return _ALIASES[key]
    if _FEEDBACK.match(key):
        return key
    raise PydanticCustomError(
        "lucky_metric",
        "unknown metric '{name}': use error_rate, p95_latency, cost or feedback.<name>",
        {"name": key[:40]},
    )


def _metrics(value: object) -> object:
    """Canonical metric names, and each threshold parsed against its metric.

    Every bad metric is reported, each at its own key (hence its own line): the errors are raised
    together as one `ValidationError`, which pydantic merges under ``metrics``."""
    if not isinstance(value, Mapping):
        return value  # pydantic reports "expected a mapping"
    parsed: dict[str, Threshold] = {}
    errors: list[InitErrorDetails] = []

    def problem(key: object, error: PydanticCustomError) -> None:
        loc = (key,) if isinstance(key, str | int) else ()
        errors.append(InitErrorDetails(type=error, loc=loc, input=None))

    for key, raw in value.items():
        try:
            name = _canonical_metric(key)
        except PydanticCustomError as exc:
            problem(key, exc)
            continue
        if name in parsed:
            problem(
                key, PydanticCustomError("lucky_metric", "metric '{name}' is given twice", {"name": name})
            )
            continue
        try:
            parsed[name] = parse_threshold(name, raw)
        except ValueError as exc:
            problem(key, PydanticCustomError("lucky_threshold", "{reason}", {"reason": str(exc)}))
    if errors:
        raise ValidationError.from_exception_data("metrics", errors, hide_input=True)
    if not parsed:
        raise PydanticCustomError("lucky_metric", "name at least one metric")
    return parsed


def _default_metrics() -> dict[str, Any]:
    return {name: parse_threshold(name, text) for name, text in DEFAULT_METRICS.items()}


Metrics = Annotated[
    dict[str, Any],
    BeforeValidator(_metrics),
    PlainSerializer(lambda value: {name: str(t) for name, t in value.items()}),
]
MetricName = str
"""``error_rate``, ``p95_latency``, ``cost`` or ``feedback.<name>``."""


class _GuardModel(BaseModel):
    """Same conventions as `config.schema.StrictModel` (camelCase or snake_case, unknown keys
    rejected, immutable, inputs never echoed); kept apart so the config schema can import it."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )


Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
MinCalls = Annotated[int, Field(ge=1, le=100_000_000)]
Seconds = Annotated[float, Field(ge=0, le=30 * 86_400, allow_inf_nan=False)]


class Stage(_GuardModel):
    """One stage: the share of users on the registry path, and (optionally) its own minimums."""

    percent: Percent
    min_calls: MinCalls | None = None
    """Calls on each path before this stage may advance; default the policy's ``minCalls``."""
    min_seconds: Seconds | None = None
    """Seconds this stage is held at least; default the policy's ``minSeconds``."""


def _stage(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"percent": value}
    return value


class GuardPolicy(_GuardModel):
    """How a guarded rollout advances (see the module docstring for the YAML and the thresholds)."""

    stages: Annotated[list[Annotated[Stage, BeforeValidator(_stage)]], Field(min_length=1, max_length=50)] = (
        Field(default_factory=lambda: [Stage(percent=p) for p in DEFAULT_STAGES])
    )
    """Registry share of each stage in %, increasing; a number or ``{percent, minCalls, minSeconds}``."""
    min_calls: MinCalls = 200
    """Calls on EACH path (registry and legacy) before a stage may advance."""
    min_seconds: Seconds = 300.0
    """Seconds a stage is held at least before it may advance (rollback does not wait)."""
    alpha: Annotated[float, Field(gt=0, lt=0.5, allow_inf_nan=False)] = 0.05
    """Chance of a wrong rollback over the WHOLE rollout (of a registry no worse than legacy by more
    than the rollback margin: split over metrics and compared stages, see `rollback_alpha`), and of
    a wrong advance per stage (of one beyond a threshold: split over metrics, `metric_alpha`),
    however often the decision is taken."""
    rollback_margin: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    """Roll back when a metric is shown worse than legacy by more than this fraction of its
    threshold: 0 (default) = shown worse at all; 1 = shown worse than the threshold itself."""
    metrics: Metrics = Field(default_factory=lambda: _default_metrics())
    """Metric → threshold; replaces the default set as a whole."""

    @field_validator("stages")
    @classmethod
    def _increasing(cls, value: list[Stage]) -> list[Stage]:
        for index in range(1, len(value)):
            if value[index].percent <= value[index - 1].percent:
                raise PydanticCustomError(
                    "lucky_stages",
                    "stages must increase: stage {index} ({now}%) is not above the one before ({before}%)",
                    {
                        "index": index + 1,  # 1-based, as the CLI numbers stages
                        "now": f"{value[index].percent:g}",
                        "before": f"{value[index - 1].percent:g}",
                        "loc_suffix": (index,),
                    },
                )
        return value

    # ------------------------------------------------------------------ helpers

    @property
    def thresholds(self) -> dict[str, Threshold]:
        return dict(self.metrics)

    def percent(self, stage_index: int) -> float:
        return self.stages[self.check_stage(stage_index)].percent

    def stage_min_calls(self, stage_index: int) -> int:
        stage = self.stages[self.check_stage(stage_index)]
        return stage.min_calls if stage.min_calls is not None else self.min_calls

    def stage_min_seconds(self, stage_index: int) -> float:
        stage = self.stages[self.check_stage(stage_index)]
        return stage.min_seconds if stage.min_seconds is not None else self.min_seconds

    def is_last(self, stage_index: int) -> bool:
        return self.check_stage(stage_index) == len(self.stages) - 1

    def check_stage(self, stage_index: int) -> int:
        if isinstance(stage_index, bool) or not isinstance(stage_index, int):
            raise TypeError(f"stage_index must be an int, got {type(stage_index).__name__}")
        if not 0 <= stage_index < len(self.stages):
            raise IndexError(f"stage_index {stage_index} is outside 0..{len(self.stages) - 1}")
        return stage_index

    @property
    def metric_alpha(self) -> float:
        """The advance-side error budget of each metric in a stage (alpha / number of metrics)."""
        return self.alpha / len(self.metrics)

    @property
    def compared_stages(self) -> int:
        """Stages where the paths can be compared: all but a 100 % one (nobody left on legacy)."""
        return max(1, sum(1 for stage in self.stages if stage.percent < 100))

    @property
    def rollback_alpha(self) -> float:
        """The rollback-side error budget of each metric in a stage: alpha / (metrics x compared
        stages), so an A/A rollout is wrongly rolled back with probability at most alpha over all
        its stages, metrics and looks (each stage's data is fresh: a union bound)."""
        return self.alpha / (len(self.metrics) * self.compared_stages)

    def rollback_limit(self, threshold: Threshold) -> float:
        """The difference (in the threshold's terms, signed like it) beyond which a metric shown
        worse is rolled back: ``rollbackMargin x threshold``."""
        return self.rollback_margin * threshold.amount


def validate_guard_policy(
    data: Mapping[str, Any] | GuardPolicy | None,
    *,
    source: str | None = None,
    lines: LineMap | None = None,
) -> GuardPolicy:
    """A `GuardPolicy` from a mapping (``rollout.guard`` of models.yaml, or its own file).

    Raises `ConfigError` listing every problem with its path (``metrics.cost``, ``stages.2``), and
    its file and line when `lines` (from `yaml_loader.load_yaml`) says where the policy was written."""
    from ..config.issues import pydantic_issues
    from ..yaml_loader import LineMap

    if data is None:
        return GuardPolicy()
    if isinstance(data, GuardPolicy):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError([ConfigIssue("", "expected a mapping", source)], "invalid guard policy")
    try:
        return GuardPolicy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            pydantic_issues(GuardPolicy, exc, lines or LineMap(file=source)), "invalid guard policy"
        ) from None
