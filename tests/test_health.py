"""Circuit breakers (issue #16): a model that keeps failing is skipped for a cooldown, then one
probe at a time decides whether it is back; request-caused 4xx never count; all-open fails fast.

Real HTTP against the fake upstream; the fleet tests use a real `redis-server` and a second
process. Cooldowns are long (no cooldown may pass early on a loaded machine, between a failure and
the next call); a test that needs one to pass moves the circuits' clock forward (`clock`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from lucky_litellm import CircuitOpenError, LuckyError, Models, routing_of
from lucky_litellm.config import validate_models_config
from lucky_litellm.errors import AllModelsFailedError, ConfigError
from lucky_litellm.testing import Behavior, FakeUpstream

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

DEAD, OK = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"
DEAD_NAME, OK_NAME = "gpt-4.1-mini", "gpt-4.1-nano"


COOLDOWN_MS = 30_000
"""Longer than any test runs: an open circuit stays open until the test moves `clock` on."""
DEADLINE_MS = 30_000
"""The experiments' timeout: a fallback's first model gets half of it, which a loaded machine's
first litellm call (client set-up, then the 503) must never run out of: that would be a
failure that never reached the upstream."""


class CircuitClock:
    """The circuits' monotonic clock, which the test moves forward: a cooldown passes at once
    when the test says so, and never by itself while a loaded machine runs a test slowly."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> CircuitClock:
    """Every time the circuits read (`lucky_litellm.health.circuits` reads only `time.monotonic`)."""
    clock = CircuitClock()
    monkeypatch.setattr("lucky_litellm.health.circuits.time", clock)
    return clock


def health_models(
    up: FakeUpstream, *, circuit: dict[str, Any] | None = None, state_url: str | None = None, **extra: Any
) -> Models:
    """Two models (DEAD first), experiments of every shape, long cooldowns, no retries."""
    users = {
        "u": {
            "experiments": {
                "fb": {"strategy": "fallback", "providers": [DEAD, OK], "timeout": DEADLINE_MS},
                "one": {"strategy": "first", "providers": [DEAD], "timeout": DEADLINE_MS},
                "both": {"strategy": "fallback", "providers": [DEAD, OK], "timeout": DEADLINE_MS},
                "race": {"strategy": "race", "providers": [DEAD, OK], "timeout": DEADLINE_MS},
                "ignore": {
                    "strategy": "first",
                    "providers": [DEAD],
                    "health": {"circuit": {"enabled": False}},
                },
                "lrf": {
                    "strategy": "fallback",
                    "providers": [DEAD, OK],
                    "health": {"circuit": {"whenAllOpen": "tryLeastRecentlyFailed"}},
                },
            }
        }
    }
    settings = {"consecutiveFailures": 3, "cooldown": COOLDOWN_MS, "errorRate": None, **(circuit or {})}
    config = upstream_config(
        up,
        users=users,
        defaults={"retries": 0},
        health={"circuit": settings},
        **({"rollout": {"stateUrl": state_url}} if state_url else {}),
        **extra,
    )
    return Models(config, environ=dict(PLANTED_KEYS))


async def call(models: Models, experiment: str) -> Any:
    return await models.complete(f"user:u:{experiment}", MESSAGES)


async def fail_times(models: Models, experiment: str, n: int) -> None:
    for _ in range(n):
        with pytest.raises(LuckyError):
            await call(models, experiment)


# -- opening ------------------------------------------------------------------------------------


async def test_a_circuit_opens_after_the_threshold_and_the_model_is_skipped(fake_upstream):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    models = health_models(fake_upstream)
    for _ in range(3):
        response = await call(models, "fb")
        assert [a.outcome for a in routing_of(response).attempts] == ["failed", "won"]
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "open"

    response = await call(models, "fb")
    skipped, won = routing_of(response).attempts
    assert (skipped.model, skipped.outcome, won.model, won.outcome) == (DEAD, "skipped", OK, "won")
    assert skipped.error is not None and skipped.error.startswith("circuit open")
    assert fake_upstream.call_count(DEAD_NAME) == 3  # the fourth request never reached it


async def test_failures_below_the_threshold_are_reset_by_a_success(fake_upstream):
    fake_upstream.script(
        DEAD_NAME, [Behavior(status=503), Behavior(status=503), Behavior(), Behavior(status=503)]
    )
    models = health_models(fake_upstream)
    for _ in range(4):
        await call(models, "fb")
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "closed"
    [health] = [h for h in models.health() if h.model == DEAD]
    assert (health.consecutive_failures, health.calls, health.failures) == (1, 4, 3)


async def test_timeouts_count_as_failures(fake_upstream):
    fake_upstream.script(DEAD_NAME, Behavior(hang=True))
    models = health_models(fake_upstream)
    models.load_user_config(
        "t",
        {"experiments": {"x": {"strategy": "fallback", "providers": [DEAD, OK], "attemptTimeout": 500}}},
    )
    for _ in range(3):
        await models.complete("user:t:x", MESSAGES)
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "open"


async def test_the_error_rate_over_the_window_opens_a_circuit(fake_upstream):
    fake_upstream.script(DEAD_NAME, [Behavior(), Behavior(status=503)] * 10)
    models = health_models(
        fake_upstream, circuit={"errorRate": 0.5, "minCalls": 6, "consecutiveFailures": 50}
    )
    for _ in range(6):
        await call(models, "fb")
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "open"
    [health] = [h for h in models.health() if h.model == DEAD]
    assert "error rate 50%" in health.reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_4xx_caused_by_the_request_never_opens_a_circuit(fake_upstream, status):
    fake_upstream.script(DEAD_NAME, Behavior(status=status))
    models = health_models(
        fake_upstream, circuit={"consecutiveFailures": 1, "errorRate": 0.01, "minCalls": 1}
    )
    await fail_times(models, "one", 4)
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "closed"
    assert fake_upstream.call_count(DEAD_NAME) == 4


async def test_a_429_opens_the_circuit_for_its_retry_after(fake_upstream, clock):
    fake_upstream.script(DEAD_NAME, [Behavior(status=429, retry_after=20), Behavior()])
    models = health_models(fake_upstream, circuit={"consecutiveFailures": 50, "cooldown": 300_000})
    await fail_times(models, "one", 1)
    circuits = models.circuits
    assert circuits is not None and circuits.state_of(DEAD) == "open"
    [health] = [h for h in models.health() if h.model == DEAD]
    assert 10 < health.cooldown_remaining_s <= 20  # the Retry-After, not the 5 min cooldown
    assert "429" in health.reason
    clock.advance(20)
    assert circuits.state_of(DEAD) == "half-open"
    await call(models, "one")  # the probe succeeds
    assert circuits.state_of(DEAD) == "closed"


async def test_cancelled_race_losers_do_not_count(fake_upstream):
    fake_upstream.script(DEAD_NAME, Behavior(latency_ms=2000))
    models = health_models(fake_upstream, circuit={"consecutiveFailures": 1})
    for _ in range(3):
        response = await call(models, "race")
        assert routing_of(response).winner == OK
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "closed"


# -- half-open ------------------------------------------------------------------------------------


async def test_half_open_lets_exactly_one_probe_through_under_concurrency(fake_upstream, clock):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    models = health_models(fake_upstream)
    await fail_times(models, "one", 3)
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "open"
    clock.advance(COOLDOWN_MS / 1000)
    assert models.circuits.state_of(DEAD) == "half-open"
    fake_upstream.script(DEAD_NAME, Behavior(status=503, latency_ms=200))  # a slow probe that fails
    before = fake_upstream.call_count(DEAD_NAME)

    responses = await asyncio.gather(*(call(models, "fb") for _ in range(20)))
    assert fake_upstream.call_count(DEAD_NAME) - before == 1
    outcomes = [routing_of(r).attempts[0].outcome for r in responses]
    assert outcomes.count("failed") == 1 and outcomes.count("skipped") == 19
    assert all(routing_of(r).winner == OK for r in responses)
    assert models.circuits.state_of(DEAD) == "open"  # the failed probe re-opened it


async def test_a_successful_probe_closes_the_circuit(fake_upstream, clock):
    fake_upstream.script(DEAD_NAME, [Behavior(status=503)] * 3 + [Behavior()])
    models = health_models(fake_upstream)
    await fail_times(models, "one", 3)
    clock.advance(COOLDOWN_MS / 1000)
    response = await call(models, "fb")
    assert routing_of(response).winner == DEAD
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "closed"


# -- every model open -------------------------------------------------------------------------------


async def test_all_open_fails_fast_with_a_typed_error_naming_each_model(fake_upstream):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    fake_upstream.script(OK_NAME, Behavior(status=503))
    models = health_models(fake_upstream, circuit={"cooldown": 30000})
    for _ in range(3):
        with pytest.raises(AllModelsFailedError):
            await call(models, "both")
    calls = fake_upstream.call_count()

    started = time.perf_counter()
    with pytest.raises(CircuitOpenError) as info:
        await call(models, "both")
    # no call, no wait: well within the experiment's deadline (time that a strategy waiting for
    # the deadline, or for a model, would spend); a loaded machine only stretches the CPU work
    assert time.perf_counter() - started < DEADLINE_MS / 1000 / 2
    assert fake_upstream.call_count() == calls
    error = info.value
    assert set(error.retry_in_s) == {DEAD, OK}
    assert all(25 < seconds <= 30 for seconds in error.retry_in_s.values())
    assert DEAD in str(error) and OK in str(error) and "retried in" in str(error)


async def test_all_open_can_try_the_least_recently_failed_model_instead(fake_upstream):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    fake_upstream.script(OK_NAME, Behavior(status=503))
    models = health_models(fake_upstream, circuit={"cooldown": 30000, "consecutiveFailures": 1})
    with pytest.raises(AllModelsFailedError):
        await call(models, "both")  # DEAD failed first, then OK
    fake_upstream.script(DEAD_NAME, Behavior(content="back"))

    response = await call(models, "lrf")
    attempts = routing_of(response).attempts
    assert [(a.model, a.outcome) for a in attempts] == [(OK, "skipped"), (DEAD, "won")]
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "closed"


async def test_an_experiment_can_ignore_open_circuits(fake_upstream):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    models = health_models(fake_upstream)
    await fail_times(models, "one", 3)
    with pytest.raises(CircuitOpenError):
        await call(models, "one")
    fake_upstream.script(DEAD_NAME, Behavior())
    response = await call(models, "ignore")
    assert routing_of(response).winner == DEAD


def test_circuits_can_be_switched_off(fake_upstream):
    models = health_models(fake_upstream, circuit={"enabled": False})
    assert models.circuits is None and models.health() == []


# -- config -----------------------------------------------------------------------------------------


def test_health_config_defaults_follow_litellms_router():
    circuit = validate_models_config({}).health.circuit
    assert circuit.enabled and circuit.consecutive_failures == 5 and circuit.cooldown == 5000
    assert circuit.when_all_open == "fail"


def test_bad_health_config_is_refused_with_file_and_line(tmp_path):
    from lucky_litellm.config import load_models_config

    path = tmp_path / "models.yaml"
    path.write_text(
        "health:\n  circuit:\n    cooldown: -5\n    whenAllOpen: tryLeastRecentlyUsed\n    threshold: 3\n"
    )
    with pytest.raises(ConfigError) as info:
        load_models_config(path)
    text = str(info.value)
    assert "health.circuit.cooldown" in text and "models.yaml:3" in text
    assert "health.circuit.whenAllOpen" in text and "did you mean 'tryLeastRecentlyFailed'" in text
    assert "health.circuit.threshold" in text and "models.yaml:5" in text


# -- telemetry --------------------------------------------------------------------------------------


async def test_skipped_attempts_and_probes_carry_the_circuit_state_on_their_spans(fake_upstream, clock):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lucky_litellm.telemetry import Telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    models = health_models(fake_upstream, telemetry={"captureContent": False})
    models.telemetry = Telemetry(
        tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    await fail_times(models, "one", 3)
    exporter.clear()

    await call(models, "fb")
    skipped = [s for s in exporter.get_finished_spans() if s.name == f"chat {DEAD_NAME}"]
    assert [dict(s.attributes or {}).get("lucky.attempt.outcome") for s in skipped] == ["skipped"]
    attributes = dict(skipped[0].attributes or {})
    assert attributes["lucky.circuit.state"] == "open"
    assert str(attributes["lucky.skip.reason"]).startswith("circuit open")
    data = reader.get_metrics_data()
    assert data is not None
    [skips] = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "lucky.circuit.skips"
        for point in metric.data.data_points
    ]
    assert skips.value == 1
    assert dict(skips.attributes or {}) == {"lucky.model": DEAD, "lucky.circuit.state": "open"}

    clock.advance(COOLDOWN_MS / 1000)
    exporter.clear()
    await call(models, "fb")  # the half-open probe
    [probe] = [s for s in exporter.get_finished_spans() if s.name == f"chat {DEAD_NAME}"]
    assert dict(probe.attributes or {})["lucky.circuit.state"] == "half-open"
    assert dict(probe.attributes or {})["lucky.attempt.outcome"] == "failed"


def test_an_experiment_may_not_change_the_thresholds_of_a_shared_circuit():
    from lucky_litellm.config import validate_user_config

    experiment = {"providers": [DEAD], "health": {"circuit": {"cooldown": 10}}}
    with pytest.raises(ConfigError, match=r"experiments\.x\.health\.circuit\.cooldown.*shared by every"):
        validate_user_config({"experiments": {"x": experiment}})
    allowed = {"providers": [DEAD], "health": {"circuit": {"enabled": False, "whenAllOpen": "fail"}}}
    validate_user_config({"experiments": {"x": allowed}})


def test_every_shared_key_an_experiment_sets_is_reported_at_once(tmp_path):
    from lucky_litellm.config import load_user_config

    path = tmp_path / "user.yaml"
    path.write_text(
        "experiments:\n  x:\n    providers: [" + DEAD + "]\n    health:\n"
        "      hedging: {minSamples: 3}\n"
        "      circuit:\n        consecutiveFailures: 2\n        cooldown: 10\n        bogus: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_user_config(path)
    lines = {issue.path: issue.line for issue in info.value.issues}
    prefix = "experiments.x.health."
    assert lines == {
        prefix + "hedging.minSamples": 5,
        prefix + "circuit.consecutiveFailures": 7,
        prefix + "circuit.cooldown": 8,
        prefix + "circuit.bogus": 9,
    }
    [bogus] = [issue for issue in info.value.issues if issue.path.endswith("bogus")]
    assert bogus.message.endswith("allowed: enabled, whenAllOpen")
