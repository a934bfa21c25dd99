"""Adaptive hedging (issue #16): `hedgeAfter: auto` hedges at the model's observed latency quantile,
within a floor and a ceiling, and a token budget caps the extra requests hedges cost.

Every call goes through real litellm to the fake upstream over HTTP. Latency windows are filled
either by real calls (when the point is which latencies are recorded) or directly (when the point
is what the delay does with them), so no test waits for many slow calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lucky_litellm import ConfigError, Models, routing_of
from lucky_litellm.config import load_models_config
from lucky_litellm.testing import Behavior, FakeUpstream

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A, B = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"


def hedging(**settings: Any) -> dict[str, Any]:
    """A models-config `health:` section with these `health.hedging` settings."""
    return {"health": {"hedging": settings}}


def race(hedge_after: object, **extra: object) -> dict[str, Any]:
    return {
        "experiments": {"x": {"strategy": "race", "providers": [A, B], "hedgeAfter": hedge_after, **extra}}
    }


def fill(models: Models, model: str, latencies_ms: list[float]) -> None:
    """What `model` has answered in so far, as if observed (the window of the registry)."""
    window = models.hedging.window(model, models.config.health.hedging.window)
    for latency in latencies_ms:
        window.record(latency)


async def hedged_once(models: Models) -> tuple[Any, Any, Any]:
    """One race whose first model is slow (1 s) and second fast: the hedge decides the latency.
    An attempt's `started_ms` counts from the request's start, as the hedge timer does."""
    response = await models.complete("user:u:x", MESSAGES)
    routing = routing_of(response)
    slow, hedge = routing.attempts
    return routing, slow, hedge


@pytest.fixture
def slow_a(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.script("gpt-4.1-mini", Behavior(content="slow", latency_ms=1000))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="hedge", latency_ms=5))
    return fake_upstream


async def warm(models: Models) -> None:
    """The first call of a process pays litellm's client set-up; B is never the one measured."""
    await models.complete(B, MESSAGES)


# -- the delay: the observed quantile, clamped ----------------------------------------------------


async def test_auto_hedges_at_the_p95_of_the_latencies_the_model_answered_in(make_models, fake_upstream):
    latencies = [20.0 + 4 * i for i in range(20)] + [1000.0]  # 20 answers, then one slow call
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a", latency_fn=lambda i: latencies[min(i, 20)]))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="hedge", latency_ms=5))
    models = make_models(**hedging(floor=1, minSamples=20, window=20, initial=5000))
    models.load_user_config("u", race("auto"))
    await warm(models)
    observed = []
    for _ in range(20):  # below minSamples the initial 5 s applies: none of these is hedged
        routing = routing_of(await models.complete("user:u:x", MESSAGES))
        assert (routing.winner, routing.hedges) == (A, 0)
        observed.append(routing.attempts[0].latency_ms)

    routing, slow, hedge = await hedged_once(models)

    p95 = sorted(observed)[18]  # nearest rank: the 19th of 20
    assert routing.hedge_delay_ms == pytest.approx(p95)
    assert (slow.outcome, hedge.model, hedge.outcome, routing.hedges) == ("cancelled", B, "won", 1)
    assert p95 <= hedge.started_ms < p95 + 500  # ms after the request started
    assert fake_upstream.call_count("gpt-4.1-nano") == 2  # the warm-up and the one hedge


@pytest.mark.parametrize(("word", "rank"), [("p90", 90), ("p99", 99)])
async def test_p90_and_p99_hedge_at_their_quantile(make_models, slow_a, word, rank):
    models = make_models(**hedging(floor=1))
    models.load_user_config("u", race(word))
    fill(models, A, [float(ms) for ms in range(1, 101)])  # 1..100 ms: the q-quantile is q*100 ms
    await warm(models)
    routing, _slow, hedge = await hedged_once(models)
    assert routing.hedge_delay_ms == rank
    assert hedge.started_ms >= rank


def test_the_window_slides_old_latencies_leave_it():
    from lucky_litellm.health import LatencyWindow

    window = LatencyWindow(20)
    for _ in range(20):
        window.record(1000.0)
    assert window.quantile(0.95) == 1000
    for _ in range(20):
        window.record(10.0)
    assert (len(window), window.quantile(0.95)) == (20, 10)


async def test_a_burst_of_slow_answers_holds_the_delay_up_for_a_quarter_of_the_window(make_models, slow_a):
    """A client stall delays every request in flight at once: 16 slow answers in a 200-answer
    window are the whole top 5 %. They hold the delay up until 50 newer answers (the window's most
    recent quarter) say otherwise, not until they age out of the whole window."""
    models = make_models(**hedging(floor=1))
    models.load_user_config("u", race("auto"))
    await warm(models)
    fill(models, A, [50.0] * 200 + [900.0] * 16)
    stalled, _slow, _hedge = await hedged_once(models)
    fill(models, A, [50.0] * 50)
    after, _slow, _hedge = await hedged_once(models)
    assert (stalled.hedge_delay_ms, after.hedge_delay_ms) == (900, 50)


async def test_a_lasting_rise_moves_the_delay_as_soon_as_it_is_the_top_5_percent(make_models, slow_a):
    models = make_models(**hedging(floor=1))
    models.load_user_config("u", race("auto"))
    await warm(models)
    fill(models, A, [50.0] * 200 + [300.0] * 11)  # 11 of the last 200: more than the top 5 %
    routing, _slow, _hedge = await hedged_once(models)
    assert routing.hedge_delay_ms == 300


def test_auto_means_the_configured_quantile(make_models):
    models = make_models(**hedging(quantile="p99"))
    models.load_user_config("u", race("auto"))
    policy = models.resolve("user:u:x").hedging
    assert policy is not None and policy.quantile == 0.99


async def test_the_floor_holds_for_a_model_faster_than_it(make_models, slow_a):
    models = make_models(**hedging(floor=120))
    models.load_user_config("u", race("auto"))
    fill(models, A, [5.0] * 50)
    await warm(models)
    routing, _slow, hedge = await hedged_once(models)
    assert routing.hedge_delay_ms == 120
    assert 120 <= hedge.started_ms < 1000  # hedged before A answered


async def test_the_ceiling_holds_for_a_model_slower_than_it(make_models, slow_a):
    models = make_models(**hedging(ceiling=150))
    models.load_user_config("u", race("auto"))
    fill(models, A, [5000.0] * 50)
    await warm(models)
    routing, _slow, hedge = await hedged_once(models)
    assert routing.hedge_delay_ms == 150
    assert 150 <= hedge.started_ms < 1000


async def test_until_min_samples_are_known_the_initial_delay_applies(make_models, slow_a):
    models = make_models(**hedging(initial=100, minSamples=10))
    models.load_user_config("u", race("auto"))
    fill(models, A, [5000.0] * 9)  # one short of minSamples: not trusted yet
    await warm(models)
    routing, _slow, hedge = await hedged_once(models)
    assert routing.hedge_delay_ms == 100
    assert hedge.started_ms >= 100


async def test_only_answers_are_recorded_not_the_cancelled_loser(make_models, slow_a):
    models = make_models(**hedging(initial=50))
    models.load_user_config("u", race("auto"))
    await warm(models)
    await hedged_once(models)
    assert A not in models.hedging.windows  # cancelled after 50 ms: its latency is unknown
    assert len(models.hedging.windows[B]) == 1


async def test_a_race_without_hedging_records_no_latency(make_models, fake_upstream):
    """Losers cancelled because another model answered first say nothing about their latency."""
    models = make_models()
    models.load_user_config("u", {"experiments": {"x": {"strategy": "race", "providers": [A, B]}}})
    await models.complete("user:u:x", MESSAGES)
    assert models.hedging.windows == {}


async def test_the_delay_follows_the_model_in_flight_not_the_first_one(make_models, fake_upstream):
    """Three models: the second hedge waits for the second model's own quantile."""
    fake_upstream.script("gpt-4.1-mini", Behavior(latency_ms=1000))
    fake_upstream.script("gpt-4.1-nano", Behavior(latency_ms=1000))
    fake_upstream.script("gpt-4o-mini", Behavior(content="third", latency_ms=5))
    models = make_models(**hedging(floor=1))
    models.load_user_config("u", race("auto", providers=[A, B, "openai/gpt-4o-mini"]))
    fill(models, A, [60.0] * 20)
    fill(models, B, [150.0] * 20)
    await warm(models)
    routing = routing_of(await models.complete("user:u:x", MESSAGES))
    _first, second, third = routing.attempts
    assert (third.outcome, routing.hedges) == ("won", 2)
    assert second.started_ms >= 60
    assert third.started_ms >= 60 + 150


# -- the budget -------------------------------------------------------------------------------------


async def many(models: Models, requests: int, concurrency: int = 10) -> list[Any]:
    left = list(range(requests))
    routings: list[Any] = []

    async def caller() -> None:
        while left:
            left.pop()
            routings.append(routing_of(await models.complete("user:u:x", MESSAGES)))

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return routings


def sent_hedges(upstream: FakeUpstream) -> int:
    """Hedges that reached the upstream (B's calls, less the warm-up). Hedges are counted on the
    routing records, where the strategy counts what it started: a hedge cancelled while litellm
    still prepared it (the first model answered meanwhile, as on a loaded machine) never reaches
    the upstream, but none may reach it that the routing does not count."""
    return upstream.call_count("gpt-4.1-nano") - 1


@pytest.fixture
def all_slow(fake_upstream: FakeUpstream) -> FakeUpstream:
    """Every model takes 100 ms for every call: hedging cannot help, only add load."""
    fake_upstream.script("gpt-4.1-mini", Behavior(latency_ms=100))
    fake_upstream.script("gpt-4.1-nano", Behavior(latency_ms=100))
    return fake_upstream


async def test_the_budget_caps_the_extra_requests_of_a_globally_slow_upstream(make_models, all_slow):
    models = make_models(**hedging(floor=1, ceiling=10))  # every request is past its hedge delay
    models.load_user_config("u", race("auto"))
    await warm(models)
    routings = await many(models, 80)
    hedges = sum(r.hedges for r in routings)
    # default budget: 10 % of the requests, plus the half of maxTokens (20) the full bucket lends
    assert 10 <= hedges <= 0.10 * 80 + 10 + 1
    assert sum(r.hedges_refused for r in routings) == 80 - hedges
    assert all(r.winner is not None for r in routings)
    assert sent_hedges(all_slow) <= hedges


async def test_a_refused_hedge_is_asked_again_and_sent_once_the_budget_has_refilled(
    make_models, fake_upstream
):
    """A slow call whose hedge the budget refused (a burst of late requests had spent it) is not
    left to its fate: the request asks again after each further delay, and hedges as soon as new
    requests have put tokens back, instead of waiting out the slow call."""
    first_calls = {0: 1000.0, 1: 1000.0, 2: 5000.0}  # requests 0 and 1 spend the budget; 2 is stuck
    fake_upstream.script("gpt-4.1-mini", Behavior(content="a", latency_fn=lambda i: first_calls.get(i, 0.0)))
    fake_upstream.script("gpt-4.1-nano", Behavior(content="hedge", latency_ms=5))
    models = make_models(**hedging(budget={"tokenRatio": 0.5, "maxTokens": 2}))  # hedges while > 1 token
    models.load_user_config("u", race(20))
    await warm(models)
    for _ in range(2):  # tokens: 2 -> 1.0 -> 0.5 (each request adds 0.5, each hedge takes 1)
        assert routing_of(await models.complete("user:u:x", MESSAGES)).hedges == 1

    stuck = asyncio.create_task(models.complete("user:u:x", MESSAGES))  # 1.0 token: refused at 20 ms
    await asyncio.to_thread(fake_upstream.wait_for_calls, 3, "gpt-4.1-mini")
    await asyncio.sleep(0.1)  # past its first ask (only orders the next request after it)
    refill = routing_of(await models.complete("user:u:x", MESSAGES))  # answers at once: +0.5 token
    routing = routing_of(await stuck)

    assert (refill.winner, refill.hedges) == (A, 0)
    assert (routing.winner, routing.hedges, routing.hedges_refused) == (B, 1, 0)
    assert sent_hedges(fake_upstream) <= 3


async def test_a_hedge_refused_until_the_end_is_counted_once(make_models, all_slow):
    """Asked again after every delay, a hedge that never got a token is one refused hedge."""
    models = make_models(**hedging(budget={"tokenRatio": 0.1, "maxTokens": 2}))
    models.load_user_config("u", race(10))  # 100 ms calls: about 9 asks each
    await warm(models)
    routings = [routing_of(await models.complete("user:u:x", MESSAGES)) for _ in range(4)]
    # tokens 2 -> 1.0 -> 0.1 (hedged while above 1), then 0.2, 0.3: refused at every ask
    assert [(r.hedges, r.hedges_refused) for r in routings] == [(1, 0), (1, 0), (0, 1), (0, 1)]


async def test_a_configured_budget_sets_the_ratio_and_the_burst(make_models, all_slow):
    models = make_models(**hedging(floor=1, ceiling=10, budget={"tokenRatio": 0.25, "maxTokens": 4}))
    models.load_user_config("u", race("auto"))
    await warm(models)
    routings = await many(models, 40)
    hedges = sum(r.hedges for r in routings)
    assert 2 <= hedges <= 0.25 * 40 + 2 + 1
    assert sent_hedges(all_slow) <= hedges


async def test_budget_null_turns_the_cap_off(make_models, all_slow):
    models = make_models(**hedging(floor=1, ceiling=10, budget=None))
    models.load_user_config("u", race("auto"))
    await warm(models)
    routings = await many(models, 20)
    assert [r.hedges for r in routings] == [1] * 20
    assert not any(r.hedges_refused for r in routings)
    assert sent_hedges(all_slow) <= 20


async def test_a_fixed_hedge_after_is_not_budgeted_unless_a_budget_is_written(make_models, all_slow):
    """`hedgeAfter: 10` behaves as it always did: every slow request is hedged."""
    models = make_models()
    models.load_user_config("u", race(10))
    assert models.resolve("user:u:x").hedging is None  # the plain race, unchanged
    await warm(models)
    routings = await many(models, 20)
    assert all(r.hedges == 1 and r.hedge_delay_ms == 10 for r in routings)
    assert sent_hedges(all_slow) <= 20


async def test_a_fixed_hedge_after_obeys_a_budget_written_in_the_config(make_models, all_slow):
    models = make_models(**hedging(budget={"tokenRatio": 0.1, "maxTokens": 4}))
    models.load_user_config("u", race(10))
    await warm(models)
    routings = await many(models, 40)
    assert sum(r.hedges for r in routings) <= 0.1 * 40 + 2 + 1
    assert sent_hedges(all_slow) <= sum(r.hedges for r in routings)


async def test_an_experiment_overrides_only_the_keys_it_writes(make_models, all_slow):
    models = make_models(**hedging(floor=1, ceiling=10, budget=None))
    models.load_user_config("u", race("auto", health={"hedging": {"budget": {"maxTokens": 2}}}))
    policy = models.resolve("user:u:x").hedging
    assert policy is not None and policy.budget is not None
    assert (policy.floor_s, policy.ceiling_s, policy.budget.max_tokens) == (0.001, 0.01, 2)
    await warm(models)
    routings = await many(models, 20)
    assert sum(r.hedges for r in routings) <= 0.1 * 20 + 1 + 1
    assert sent_hedges(all_slow) <= sum(r.hedges for r in routings)


# -- tiers, describe, telemetry ---------------------------------------------------------------------


def test_a_tier_can_hedge_at_auto_and_resolve_says_how(make_models):
    models = make_models(tiers={"medium": {"models": [A, B], "strategy": "race", "hedgeAfter": "p99"}})
    plan = models.resolve("tier:medium")
    assert plan.hedge_after_s is None and plan.hedging is not None
    assert plan.describe()["hedging"] == (
        "p99 of the model's last 200 latencies, within 50-10000 ms (1000 ms until 20 are known); "
        "budget 10% extra requests (token bucket, maxTokens 20)"
    )


async def test_hedges_are_on_the_request_span_and_counted_in_a_metric(fake_upstream, slow_a):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lucky_litellm.telemetry import Telemetry

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    models = Models(
        upstream_config(fake_upstream, **hedging(initial=80, budget={"maxTokens": 2, "tokenRatio": 0.01})),
        environ=dict(PLANTED_KEYS),
        telemetry=telemetry,
    )
    models.load_user_config("u", race("auto"))
    await warm(models)
    for _ in range(3):  # 2 tokens -> 1.01 -> 0.02: hedged, hedged, then refused (waits 1 s for A)
        await models.complete("user:u:x", MESSAGES)

    spans = [s for s in exporter.get_finished_spans() if s.name == "lucky.complete"][1:]
    fired = [(s.attributes["lucky.hedge.fired"], s.attributes["lucky.hedge.refused"]) for s in spans]
    assert fired == [(1, 0), (1, 0), (0, 1)]
    assert spans[0].attributes["lucky.hedge.delay_ms"] == 80
    data = reader.get_metrics_data()
    points = [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "lucky.hedges"
        for point in metric.data.data_points
    ]
    counts = {point.attributes["lucky.hedge.result"]: point.value for point in points}
    assert counts == {"fired": 2, "refused": 1}
    assert {point.attributes["lucky.model"] for point in points} == {A}


# -- configuration errors, with file and line -------------------------------------------------------


def write(tmp_path: Path, upstream: FakeUpstream, body: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(f"providers:\n  openai: {{apiBase: {upstream.base_url}}}\n{body}")
    return path


@pytest.mark.parametrize(
    ("body", "path", "line", "message"),
    [
        (
            "health:\n  hedging:\n    floor: 500\n    ceiling: 100\n",
            "health.hedging.ceiling",
            6,
            "ceiling (100 ms) is below floor (500 ms)",
        ),
        (
            "health:\n  hedging:\n    quantile: p50\n",
            "health.hedging.quantile",
            5,
            "must be one of p90, p95, p99",
        ),
        ("health:\n  hedging:\n    flor: 10\n", "health.hedging.flor", 5, "unknown key 'flor' (did you mean"),
        (
            "health:\n  hedging:\n    budget: {tokenRatio: 2}\n",
            "health.hedging.budget.tokenRatio",
            5,
            "must be at most 1",
        ),
        (
            "health:\n  hedging:\n    window: 5\n",
            "health.hedging.window",
            5,
            "window (5) must hold at least minSamples (20) latencies",
        ),
        (
            "tiers:\n  medium:\n    models: [openai/gpt-4.1-mini, openai/gpt-4.1-nano]\n"
            "    strategy: race\n    hedgeAfter: p50\n",
            "tiers.medium.hedgeAfter",
            7,
            "must be one of auto, p90, p95, p99",
        ),
    ],
)
def test_bad_health_settings_name_the_file_and_line(tmp_path, fake_upstream, body, path, line, message):
    file = write(tmp_path, fake_upstream, body)
    with pytest.raises(ConfigError) as error:
        Models(load_models_config(file), environ=dict(PLANTED_KEYS))
    [issue] = error.value.issues
    assert (issue.file, issue.line, issue.path) == (str(file), line, path)
    assert message in issue.message


@pytest.mark.parametrize(
    ("experiment", "path", "line", "message"),
    [
        (
            "hedgeAfter: p50",
            "experiments.x.hedgeAfter",
            5,
            "must be one of auto, p90, p95, p99 (did you mean",
        ),
        ("hedgeAfter: -5", "experiments.x.hedgeAfter", 5, "must not be negative"),
        (
            "hedgeAfter: auto",
            "experiments.x.hedgeAfter",
            5,
            "hedgeAfter only applies to strategy race (this one uses fallback)",
        ),
        (
            "health: {hedging: {window: 500}}",
            "experiments.x.health.hedging.window",
            5,
            "window is shared by every experiment: set it in models.yaml under health.hedging",
        ),
    ],
)
def test_bad_experiment_hedging_names_the_file_and_line(
    tmp_path, models, experiment: str, path: str, line: int, message: str
):
    file = tmp_path / "user.yaml"
    strategy = "fallback" if "fallback" in message else "race"
    file.write_text(
        f"experiments:\n  x:\n    strategy: {strategy}\n    providers: [{A}, {B}]\n    {experiment}\n"
    )
    with pytest.raises(ConfigError) as error:
        models.load_user_config("u", file)
    [issue] = error.value.issues
    assert (issue.file, issue.line, issue.path) == (str(file), line, path)
    assert message in issue.message


def test_hedge_after_auto_loads_from_yaml(tmp_path, make_models: Callable[..., Models]):
    file = tmp_path / "user.yaml"
    file.write_text(
        f"experiments:\n  x:\n    strategy: race\n    providers: [{A}, {B}]\n    hedgeAfter: auto\n"
    )
    models = make_models()
    models.load_user_config("u", file)
    plan = models.resolve("user:u:x")
    assert plan.hedging is not None and plan.hedging.quantile == 0.95 and plan.hedging.fixed_s is None
