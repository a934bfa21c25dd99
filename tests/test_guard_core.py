"""The guard's decision core: thresholds, summaries, policy validation, the decision rule."""

from __future__ import annotations

import json
import math
import random

import pytest

from lucky_litellm.config import load_models_config
from lucky_litellm.errors import ConfigError
from lucky_litellm.guard import (
    CallObservation,
    Decision,
    FeedbackObservation,
    GuardPolicy,
    PathSummary,
    SummaryError,
    decide,
    parse_threshold,
    validate_guard_policy,
)
from lucky_litellm.guard.summary import LATENCY_GROWTH, latency_bucket, latency_bucket_bounds

# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("metric", "text", "amount", "relative", "higher_is_worse"),
    [
        ("error_rate", "+1pp", 0.01, False, True),
        ("error_rate", "0.5pp", 0.005, False, True),
        ("error_rate", "+50%", 0.5, True, True),
        ("p95_latency", "+20%", 0.2, True, True),
        ("p95_latency", "+250ms", 0.25, False, True),
        ("p95_latency", "+0.5s", 0.5, False, True),
        ("cost", "+10%", 0.1, True, True),
        ("cost", 0.002, 0.002, False, True),
        ("feedback.thumbs_up", -0.05, -0.05, False, False),
        ("feedback.thumbs_up", "-5%", -0.05, True, False),
        ("feedback.regenerations", "+0.1", 0.1, False, True),
    ],
)
def test_thresholds_parse_to_amount_kind_and_direction(
    metric: str, text: object, amount: float, relative: bool, higher_is_worse: bool
) -> None:
    threshold = parse_threshold(metric, text)
    assert threshold.amount == pytest.approx(amount)
    assert threshold.relative is relative
    assert threshold.higher_is_worse is higher_is_worse


@pytest.mark.parametrize(
    ("metric", "text", "message"),
    [
        ("error_rate", "-1pp", "must be positive"),
        ("cost", "+0%", "threshold of 0"),
        ("cost", "+1pp", "error_rate only"),
        ("error_rate", "+3ms", "p95_latency only"),
        ("feedback.thumbs", 0.05, "needs a sign"),
        ("feedback.thumbs", "-120%", "above -100%"),
        ("cost", "ten percent", "expected a threshold"),
        ("cost", True, "expected a threshold"),
        ("cost", math.nan, "finite"),
    ],
)
def test_bad_thresholds_say_what_is_wrong(metric: str, text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_threshold(metric, text)


# --------------------------------------------------------------------------- summaries


def _random_summary(seed: int, path: str = "registry") -> PathSummary:
    rng = random.Random(seed)
    summary = PathSummary()
    for _ in range(300):
        summary.add(CallObservation(path, rng.random() > 0.1, rng.lognormvariate(-1, 1), rng.random() / 100))  # type: ignore[arg-type]
    for _ in range(40):
        summary.add(FeedbackObservation(path, rng.choice(["thumbs_up", "stars.v2"]), rng.random()))  # type: ignore[arg-type]
    return summary


def test_increments_applied_one_by_one_rebuild_the_same_summary() -> None:
    rng = random.Random(3)
    counters: dict[str, float] = {}
    direct = PathSummary()
    for _ in range(500):
        obs = CallObservation("legacy", rng.random() > 0.2, rng.expovariate(2), 0.001)
        direct.add(obs)
        for key, delta in PathSummary.increments(obs).items():
            counters[key] = counters.get(key, 0.0) + delta
    feedback = FeedbackObservation("legacy", "thumbs_up", 1.0)
    direct.add(feedback)
    for key, delta in PathSummary.increments(feedback).items():
        counters[key] = counters.get(key, 0.0) + delta
    assert PathSummary.from_counters(counters) == direct


def test_counters_round_trip_through_redis_style_bytes() -> None:
    summary = _random_summary(1)
    stored = {key.encode(): repr(value).encode() for key, value in summary.to_counters().items()}
    stored[b"started_at"] = b"1700000000.5"  # fields of the store's own are ignored
    assert PathSummary.from_counters(stored) == summary


def test_a_garbled_counter_is_a_typed_error_naming_it() -> None:
    with pytest.raises(SummaryError, match="'calls'"):
        PathSummary.from_counters({"calls": b"twelve"})


def test_merge_adds_every_counter_and_leaves_both_sides_alone() -> None:
    a, b = _random_summary(1), _random_summary(2)
    a_before, b_before = a.to_counters(), b.to_counters()
    merged = a.merge(b)
    assert merged.calls == a.calls + b.calls
    assert merged.errors == a.errors + b.errors
    assert merged.latency_count == a.latency_count + b.latency_count
    assert merged.feedback["thumbs_up"].n == a.feedback["thumbs_up"].n + b.feedback["thumbs_up"].n
    assert a.to_counters() == a_before and b.to_counters() == b_before
    assert PathSummary.from_counters(merged.to_counters()) == merged


def test_latency_buckets_are_log_spaced_and_hold_their_values() -> None:
    for latency in (0.00005, 0.0123, 0.5, 1.0, 37.2, 10_000.0):
        low, high = latency_bucket_bounds(latency_bucket(latency))
        assert low <= latency < high
    low, high = latency_bucket_bounds(latency_bucket(1.0))
    assert high / low == pytest.approx(LATENCY_GROWTH)


def test_failed_calls_count_as_errors_and_cost_but_not_latency() -> None:
    summary = PathSummary()
    summary.add(CallObservation("registry", False, 0.001, 0.01))
    summary.add(CallObservation("registry", True, 2.0, 0.03))
    assert (summary.calls, summary.errors, summary.latency_count) == (2, 1, 1)
    assert summary.mean_cost == pytest.approx(0.02)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CallObservation("registry", True, -1.0, 0.0),
        lambda: CallObservation("registry", True, 1.0, math.inf),
        lambda: CallObservation("canary", True, 1.0, 0.0),  # type: ignore[arg-type]
        lambda: FeedbackObservation("legacy", "has space", 1.0),
        lambda: FeedbackObservation("legacy", "ok", math.nan),
    ],
)
def test_bad_observations_are_refused(make: object) -> None:
    with pytest.raises(SummaryError):
        make()  # type: ignore[operator]


# --------------------------------------------------------------------------- policy


def test_default_policy_is_the_issue_s_plan() -> None:
    policy = GuardPolicy()
    assert [stage.percent for stage in policy.stages] == [1, 5, 25, 50, 100]
    assert {name: str(t) for name, t in policy.metrics.items()} == {
        "error_rate": "+1pp",
        "p95_latency": "+20%",
        "cost": "+10%",
    }
    assert policy.alpha == 0.05


def test_policy_reads_camel_case_and_stage_mappings() -> None:
    policy = validate_guard_policy(
        {
            "stages": [5, {"percent": 50, "minCalls": 1000, "minSeconds": 60}, 100],
            "minCalls": 300,
            "minSeconds": 10,
            "metrics": {"errorRate": "+2pp", "p95Latency": "+300ms", "feedback.thumbs_up": -0.1},
        }
    )
    assert [policy.stage_min_calls(i) for i in range(3)] == [300, 1000, 300]
    assert [policy.stage_min_seconds(i) for i in range(3)] == [10, 60, 10]
    assert list(policy.metrics) == ["error_rate", "p95_latency", "feedback.thumbs_up"]
    assert policy.metric_alpha == pytest.approx(0.05 / 3)
    # the rollback side is split over metrics and the stages that compare (not a 100 % one)
    assert policy.compared_stages == 2
    assert policy.rollback_alpha == pytest.approx(0.05 / 6)


def test_the_rollback_margin_is_a_fraction_of_each_threshold() -> None:
    assert GuardPolicy().rollback_margin == 0
    policy = validate_guard_policy({"rollbackMargin": 0.5, "metrics": {"error_rate": "+1pp", "cost": "+10%"}})
    assert policy.rollback_limit(policy.metrics["error_rate"]) == pytest.approx(0.005)
    assert policy.rollback_limit(policy.metrics["cost"]) == pytest.approx(0.05)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", float("nan")])
def test_a_bad_rollback_margin_is_an_error_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_guard_policy({"rollbackMargin": bad})
    assert {issue.path for issue in caught.value.issues} == {"rollbackMargin"}


def test_policy_errors_name_each_field() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_guard_policy(
            {"stages": [1, 50, 25], "minCals": 3, "alpha": 0.7, "metrics": {"latency": "+20%"}}
        )
    paths = {issue.path for issue in caught.value.issues}
    assert paths == {"stages.2", "minCals", "alpha", "metrics.latency"}  # at the metric itself
    assert "did you mean 'minCalls'" in str(caught.value)
    assert "use error_rate, p95_latency, cost or feedback.<name>" in str(caught.value)


def test_a_bad_threshold_is_reported_at_its_metric_with_its_yaml_line() -> None:
    yaml_text = "rollout:\n  guard:\n    metrics:\n      error_rate: +1pp\n      cost: -10%\n"
    with pytest.raises(ConfigError) as caught:
        load_models_config(yaml_text)
    (issue,) = caught.value.issues
    assert issue.path == "rollout.guard.metrics.cost"
    assert issue.line == 5
    assert "must be positive" in issue.message


def test_models_yaml_carries_the_guard_section() -> None:
    config = load_models_config("rollout:\n  percent: 0\n  guard:\n    stages: [10, 100]\n    minCalls: 50\n")
    assert config.rollout.guard is not None
    assert [s.percent for s in config.rollout.guard.stages] == [10, 100]
    assert load_models_config("rollout: {}\n").rollout.guard is None


# --------------------------------------------------------------------------- decisions


def _fill(summary: PathSummary, path: str, n: int, error_rate: float, seed: int, scale: float = 1.0) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        summary.add(
            CallObservation(
                path,
                rng.random() >= error_rate,
                scale * rng.lognormvariate(-1, 0.4),
                rng.uniform(0.001, 0.003),
            )
        )  # type: ignore[arg-type]


def test_identical_paths_with_enough_calls_advance_with_figures_that_explain_it() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 20_000, 0.02, 1)
    _fill(registry, "registry", 20_000, 0.02, 2)
    decision = decide(GuardPolicy(), 2, legacy, registry, stage_elapsed_s=3600)
    assert decision.action == "advance"
    assert (decision.percent, decision.next_percent) == (25, 50)
    for figure in decision.figures:
        assert figure.verdict == "not worse"
        assert figure.ci_low is not None and figure.ci_high is not None
        assert figure.ci_low <= figure.difference <= figure.ci_high < figure.threshold


def test_a_clearly_worse_error_rate_rolls_back_even_before_the_stage_minimums() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 5_000, 0.01, 1)
    _fill(registry, "registry", 150, 0.30, 2)
    decision = decide(GuardPolicy(), 0, legacy, registry, stage_elapsed_s=1)
    assert decision.action == "rollback" and decision.next_percent == 0
    (worse,) = [f for f in decision.figures if f.verdict == "worse"]
    assert worse.metric == "error_rate" and worse.ci_low is not None and worse.ci_low > 0.01


def test_a_small_regression_shown_beyond_doubt_rolls_back_though_within_its_threshold() -> None:
    # +0.5pp on error rate, on 100,000 calls a path: shown within +1pp AND shown worse than legacy
    legacy, registry = PathSummary(), PathSummary()
    legacy.calls, legacy.errors = 100_000, 1_000
    registry.calls, registry.errors = 100_000, 1_500
    one_metric = {"metrics": {"error_rate": "+1pp"}, "minSeconds": 0}
    decision = decide(validate_guard_policy(one_metric), 1, legacy, registry, stage_elapsed_s=1)
    (figure,) = decision.figures
    assert decision.action == "rollback"  # rollback wins over "not worse than the threshold"
    assert figure.verdict == "worse" and figure.rollback_limit == 0
    assert figure.ci_low is not None and figure.ci_high is not None
    assert figure.ci_low > 0 and figure.ci_high < figure.threshold
    # one margin (rollbackMargin 1): within the threshold, so it advances
    lenient = validate_guard_policy({**one_metric, "rollbackMargin": 1})
    assert decide(lenient, 1, legacy, registry, stage_elapsed_s=1).action == "advance"


def test_a_slower_registry_is_shown_worse_on_p95() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 5_000, 0.0, 1)
    _fill(registry, "registry", 5_000, 0.0, 2, scale=2.0)
    decision = decide(GuardPolicy(), 3, legacy, registry, stage_elapsed_s=1000)
    figure = next(f for f in decision.figures if f.metric == "p95_latency")
    assert figure.verdict == "worse" and figure.relative
    assert figure.difference == pytest.approx(1.0, abs=0.1)
    assert decision.action == "rollback"


def test_not_worse_everywhere_still_holds_until_the_stage_minimums() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 20_000, 0.0, 1)
    _fill(registry, "registry", 20_000, 0.0, 2)
    policy = validate_guard_policy({"minSeconds": 600})
    assert decide(policy, 1, legacy, registry, stage_elapsed_s=599).action == "hold"
    assert decide(policy, 1, legacy, registry, stage_elapsed_s=600).action == "advance"


def test_few_calls_give_no_verdict_and_the_last_stage_never_advances() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 10, 0.5, 1)
    _fill(registry, "registry", 10, 0.5, 2)
    decision = decide(GuardPolicy(), 0, legacy, registry, stage_elapsed_s=10_000)
    assert decision.action == "hold"
    assert {f.verdict for f in decision.figures} == {"undecided"}
    _fill(legacy, "legacy", 20_000, 0.0, 3)
    _fill(registry, "registry", 20_000, 0.0, 4)
    assert decide(GuardPolicy(), 4, legacy, registry, stage_elapsed_s=10_000).action == "hold"


def test_lower_is_worse_feedback_is_judged_in_its_own_direction() -> None:
    policy = validate_guard_policy({"metrics": {"feedback.thumbs_up": -0.05}})
    legacy, registry = PathSummary(), PathSummary()
    rng = random.Random(5)
    for _ in range(4000):
        legacy.add(FeedbackObservation("legacy", "thumbs_up", float(rng.random() < 0.8)))
        registry.add(FeedbackObservation("registry", "thumbs_up", float(rng.random() < 0.6)))
    (figure,) = decide(policy, 0, legacy, registry, 0).figures
    assert figure.verdict == "worse" and not figure.higher_is_worse
    assert figure.ci_high is not None and figure.ci_high < -0.05


def test_decisions_survive_a_json_round_trip() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 3_000, 0.01, 1)
    _fill(registry, "registry", 40, 0.01, 2)
    decision = decide(GuardPolicy(), 0, legacy, registry, stage_elapsed_s=5)
    text = json.dumps(decision.to_dict(), allow_nan=False)
    assert Decision.from_dict(json.loads(text)) == decision


def test_a_decision_recorded_before_the_rollback_limit_still_loads() -> None:
    legacy, registry = PathSummary(), PathSummary()
    _fill(legacy, "legacy", 3_000, 0.01, 1)
    _fill(registry, "registry", 100, 0.01, 2)
    old = decide(GuardPolicy(), 0, legacy, registry, stage_elapsed_s=5).to_dict()
    for figure in old["figures"]:
        del figure["rollback_limit"]
    loaded = Decision.from_dict(old)
    assert [f.rollback_limit for f in loaded.figures] == [None, None, None]
    assert [f.metric for f in loaded.figures] == ["error_rate", "p95_latency", "cost"]


def test_every_bad_metric_is_reported_at_its_own_line(tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "rollout:\n  guard:\n    metrics:\n      latency: +20%\n      cost: +1pp\n      error_rate: +1000pp\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_models_config(path)
    lines = {issue.path: issue.line for issue in caught.value.issues}
    assert lines == {
        "rollout.guard.metrics.latency": 4,
        "rollout.guard.metrics.cost": 5,
        "rollout.guard.metrics.error_rate": 6,
    }


@pytest.mark.parametrize(
    ("metric", "value", "message"),
    [
        ("p95_latency", 20, r"p95_latency needs a unit: \+250ms, \+0\.5s or \+20%"),
        ("p95_latency", "+20", "p95_latency needs a unit"),
        ("error_rate", 1, r"error_rate needs a unit: \+1pp \(percentage points\) or \+20%"),
        ("error_rate", "+0.01", "error_rate needs a unit"),
        ("error_rate", "+1000pp", r"at most \+50pp"),
        ("error_rate", "+50.5pp", r"at most \+50pp"),
    ],
)
def test_ambiguous_or_absurd_thresholds_are_refused(metric: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_threshold(metric, value)


@pytest.mark.parametrize(
    ("metric", "value"),
    [("error_rate", "+50pp"), ("error_rate", "+0.5pp"), ("p95_latency", "+0.5s"), ("cost", 0.01)],
)
def test_thresholds_with_their_units_are_accepted(metric: str, value: object) -> None:
    assert parse_threshold(metric, value).margin > 0
