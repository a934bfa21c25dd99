"""The guard, rehearsed: 200 seeded simulated rollouts per claim of issue #17.

Each run drives both paths (`lucky_litellm.testing.rollout_sim`), calls `decide` every
`check_every` calls and applies its advance / rollback. The rates are measured over seeds 0..199,
so they are deterministic: a change to the statistic that moves them shows up here.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from lucky_litellm.guard import CallObservation, GuardPolicy, PathSummary, decide, validate_guard_policy
from lucky_litellm.guard.summary import latency_bucket_bounds
from lucky_litellm.testing import PathBehavior, RolloutScenario, simulate_many, simulate_rollout
from lucky_litellm.testing.rollout_every_call import RecordedCall, simulate_every_call

SEEDS = 200
LEGACY = PathBehavior(error_rate=0.01, latency_median_s=0.8, latency_sigma=0.5, cost_usd=0.002)


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_a_registry_no_worse_than_legacy_reaches_100_percent_in_90_percent_of_runs() -> None:
    # identical paths, the default policy (1 → 5 → 25 → 50 → 100 %, 200 calls and 300 s a stage)
    scenario = RolloutScenario(legacy=LEGACY, registry=LEGACY, check_every=10_000)
    runs = simulate_many(scenario, SEEDS)
    assert runs.completed >= 0.90, runs.completed
    assert runs.rolled_back <= 0.05, runs.rolled_back
    finished = [r for r in runs.results if r.completed]
    assert all(
        r.final_percent == 100 and [d.action for d in r.decisions] == ["advance"] * 4 for r in finished
    )


def test_a_registry_two_points_worse_on_error_rate_is_rolled_back_within_2000_registry_calls() -> None:
    """The issue's figure, from the most demanding stage (1 %, the default policy's first).

    "Calls" are calls on the registry path, the users exposed to the regression: at the 1 % stage
    2,000 calls in total are ~20 on the registry path, from which no test can tell 1 % from 3 %.
    The default rollback margin (0: roll back on any regression shown) decides on the whole 2
    points; with one margin (`rollbackMargin: 1`, shown beyond +1pp) the same runs need a median
    ~4,400 and a p95 ~8,300 registry calls (README, "How the decision is made")."""
    scenario = RolloutScenario(
        legacy=LEGACY,
        registry=dataclasses.replace(LEGACY, error_rate=0.03),
        check_every=2_000,  # ~20 registry calls between two checks at 1 %: counted at the check
        start_stage=0,
        max_calls=1_000_000,
    )
    runs = simulate_many(scenario, SEEDS)
    exposed = [r.registry_calls_until_rollback for r in runs.results]
    within = [n for n in exposed if n is not None and n < 2_000]
    assert len(within) >= 0.95 * SEEDS, (len(within), sorted(n or 0 for n in exposed)[SEEDS // 2])
    rolled = [r for r in runs.results if r.rolled_back]
    assert all(r.final_percent == 0 and r.last is not None for r in rolled)
    assert all(
        {f.metric for f in r.last.figures if f.verdict == "worse"} == {"error_rate"} for r in rolled if r.last
    )


def test_an_a_a_run_decided_after_every_call_rolls_back_in_at_most_5_percent_of_runs() -> None:
    # 200 seeds side by side, each decided after every one of 1,000 calls at the 50 % stage; with
    # the default rollback margin 0, identical paths sit exactly on the rollback boundary
    scenario = RolloutScenario(legacy=LEGACY, registry=LEGACY, start_stage=3, max_calls=1_000)
    runs = simulate_every_call(scenario, SEEDS)
    assert runs.rolled_back <= 0.05, runs.rolled_back


def test_at_the_threshold_itself_runs_decided_after_every_call_go_wrong_at_most_alpha_of_the_time() -> None:
    # registry exactly +1pp worse under one margin (rollbackMargin 1): the boundary of both the
    # rollback and the advance, where a fixed-sample test looked at after every call would roll
    # back (or advance) far more often than its alpha
    policy = validate_guard_policy({"metrics": {"error_rate": "+1pp"}, "minSeconds": 0, "rollbackMargin": 1})
    scenario = RolloutScenario(
        legacy=dataclasses.replace(LEGACY, error_rate=0.02),
        registry=dataclasses.replace(LEGACY, error_rate=0.03),
        policy=policy,
        start_stage=3,
        max_calls=4_000,
    )
    runs = simulate_every_call(scenario, SEEDS)
    assert runs.rolled_back <= policy.alpha, runs.rolled_back
    assert runs.advanced <= policy.alpha, runs.advanced


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_the_lockstep_simulation_decides_exactly_as_decide_after_every_call(margin: float) -> None:
    # a slower, slightly costlier registry, so that rollbacks happen within the horizon: replay
    # the recorded calls through PathSummary and the real `decide` after each one
    scenario = RolloutScenario(
        legacy=LEGACY,
        registry=dataclasses.replace(LEGACY, latency_median_s=1.3, error_rate=0.02, cost_usd=0.0021),
        policy=validate_guard_policy({"rollbackMargin": margin, "minSeconds": 5, "minCalls": 100}),
        start_stage=3,
        max_calls=1_500,
    )
    runs = simulate_every_call(scenario, 6, record=3)
    replayed = [_replay(scenario, calls) for calls in runs.recorded]
    assert replayed == list(zip(runs.actions[:3], runs.calls[:3], strict=True))
    assert "rollback" in runs.actions[:3]


def _replay(scenario: RolloutScenario, calls: list[RecordedCall]) -> tuple[str, int]:
    legacy, registry = PathSummary(), PathSummary()
    for number, call in enumerate(calls, 1):
        low, high = latency_bucket_bounds(call.bucket)
        latency = math.sqrt(low * high) if low > 0 else high / 2
        path = "registry" if call.registry else "legacy"
        (registry if call.registry else legacy).add(CallObservation(path, call.ok, latency, call.cost_usd))
        decision = decide(
            scenario.policy, scenario.start_stage, legacy, registry, number / scenario.calls_per_second
        )
        if decision.action != "hold":
            return decision.action, number
    return "hold", len(calls)


def test_a_slower_registry_is_rolled_back_on_p95_latency() -> None:
    scenario = RolloutScenario(
        legacy=LEGACY,
        registry=dataclasses.replace(LEGACY, latency_median_s=1.3),
        start_stage=3,
        check_every=250,
        max_calls=20_000,
    )
    runs = simulate_many(scenario, 50)
    assert runs.rolled_back >= 0.95, runs.rolled_back
    for result in runs.results:
        assert result.last is not None
        assert {f.metric for f in result.last.figures if f.verdict == "worse"} == {"p95_latency"}


def test_a_run_is_deterministic_for_its_seed() -> None:
    scenario = RolloutScenario(legacy=LEGACY, registry=LEGACY, check_every=2_000, max_calls=50_000)
    first, again = simulate_rollout(scenario, 7), simulate_rollout(scenario, 7)
    assert first == again
    assert simulate_rollout(scenario, 8).calls != first.calls or simulate_rollout(scenario, 8) != first


def test_feedback_worse_than_its_threshold_rolls_back() -> None:
    policy = validate_guard_policy({"metrics": {"feedback.thumbs_up": -0.05}, "minSeconds": 0})
    scenario = RolloutScenario(
        legacy=dataclasses.replace(LEGACY, feedback={"thumbs_up": 0.8}, feedback_rate=0.2),
        registry=dataclasses.replace(LEGACY, feedback={"thumbs_up": 0.6}, feedback_rate=0.2),
        policy=policy,
        check_every=500,
        start_stage=2,
        max_calls=100_000,
    )
    result = simulate_rollout(scenario, 1)
    assert result.rolled_back and result.last is not None
    (figure,) = result.last.figures
    assert figure.verdict == "worse" and not figure.higher_is_worse


@pytest.mark.parametrize("bad", [{"error_rate": 1.5}, {"latency_median_s": 0}, {"feedback": {"x": 2.0}}])
def test_impossible_behaviours_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PathBehavior(**bad)  # type: ignore[arg-type]


def test_a_scenario_checks_its_start_stage() -> None:
    with pytest.raises(IndexError):
        RolloutScenario(policy=GuardPolicy(stages=[50, 100]), start_stage=2)
