"""`Stats`: per-model and per-user figures behind `Models.stats()`, in bounded memory."""

from __future__ import annotations

import random
import threading

import pytest

from lucky_litellm import AllModelsFailedError, Models
from lucky_litellm.routing import Attempt, Routing
from lucky_litellm.stats import LatencySketch, Stats
from lucky_litellm.testing import Behavior, FakeUpstream


def _routing(*attempts: Attempt, winner: str | None = None) -> Routing:
    routing = Routing(spec="x", strategy="race", models=[a.model for a in attempts], winner=winner)
    routing.attempts.extend(attempts)
    routing.cost_usd = sum(a.cost_usd for a in attempts)
    return routing


def test_percentiles_within_one_percent_of_exact() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5, 1) for _ in range(20_000)]
    sketch = LatencySketch()
    for value in values:
        sketch.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[round(q * (len(ordered) - 1))]
        estimate = sketch.quantile(q)
        assert estimate is not None
        assert abs(estimate - exact) / exact <= 0.011, (q, estimate, exact)


def test_sketch_bucket_count_is_bounded_for_any_values() -> None:
    sketch = LatencySketch()
    for exponent in range(-12, 14):
        for mantissa in range(1, 1000, 7):
            sketch.add(mantissa * 10.0**exponent)
    sketch.add(0.0)
    sketch.add(float("1e300"))
    assert len(sketch.buckets) <= LatencySketch.MAX_BUCKETS
    assert LatencySketch.MAX_BUCKETS < 1300


def test_counts_calls_errors_wins_tokens_and_cost_per_model() -> None:
    stats = Stats()
    won = Attempt("openai/a", outcome="won", latency_ms=100, cost_usd=0.002, input_tokens=10, output_tokens=5)
    failed = Attempt("openai/b", outcome="failed", latency_ms=30, error_type="RateLimitError")
    stats.record(_routing(won, failed, winner="openai/a"), "u1", 1.0)
    stats.record(_routing(Attempt("openai/a", outcome="won", latency_ms=300, cost_usd=0.001)), "u1", 1.0)

    models = stats.snapshot()["models"]
    assert models["openai/a"]["calls"] == 2
    assert models["openai/a"]["wins"] == 2
    assert models["openai/a"]["errors"] == 0
    assert models["openai/a"]["input_tokens"] == 10
    assert models["openai/a"]["output_tokens"] == 5
    assert models["openai/a"]["cost_usd"] == pytest.approx(0.003)
    assert models["openai/a"]["p50_ms"] == pytest.approx(100, rel=0.01)
    assert models["openai/a"]["p99_ms"] == pytest.approx(300, rel=0.01)
    assert models["openai/b"] == {**models["openai/b"], "calls": 1, "errors": 1, "error_rate": 1.0}


def test_cancelled_attempts_are_counted_but_not_timed() -> None:
    stats = Stats()
    stats.record(_routing(Attempt("openai/a", outcome="cancelled", latency_ms=5)), None, None)
    model = stats.snapshot()["models"]["openai/a"]
    assert (model["calls"], model["cancelled"], model["p50_ms"]) == (1, 1, None)


def test_skipped_attempts_are_not_calls() -> None:
    stats = Stats()
    stats.record(_routing(Attempt("openai/a", outcome="skipped", error="over maxCost")), None, None)
    assert stats.snapshot()["models"] == {}


def test_user_spend_against_cost_limit_uses_the_store_total() -> None:
    stats = Stats()
    stats.record(_routing(Attempt("openai/a", outcome="won", cost_usd=0.25), winner="openai/a"), "u1", 2.0)
    stats.record(_routing(Attempt("openai/a", outcome="failed")), "u1", 2.0)
    user = stats.snapshot(spent={"u1": 1.5}.__getitem__)["users"]["u1"]
    assert user == {
        "calls": 2,
        "errors": 1,
        "cost_usd": 0.25,
        "spent_usd": 1.5,
        "cost_limit": 2.0,
        "budget_used": 0.75,
    }


def test_disabled_stats_record_nothing() -> None:
    stats = Stats(enabled=False)
    stats.record(_routing(Attempt("openai/a", outcome="won", cost_usd=1.0), winner="openai/a"), "u1", 2.0)
    snapshot = stats.snapshot()
    assert snapshot["enabled"] is False
    assert (snapshot["models"], snapshot["users"]) == ({}, {})


def test_memory_stays_bounded_over_100k_requests_with_many_models_and_users() -> None:
    stats = Stats(max_models=50, max_users=200)
    rng = random.Random(1)
    for i in range(100_000):
        model = f"p{i % 13}/model-{rng.randrange(5_000)}"
        attempt = Attempt(model, outcome="won", latency_ms=rng.uniform(0.01, 1e6), cost_usd=1e-6)
        stats.record(_routing(attempt, winner=model), f"user-{rng.randrange(50_000)}", 1.0)

    assert len(stats._models) == 50
    assert len(stats._users) == 200
    assert all(len(m.latency.buckets) <= LatencySketch.MAX_BUCKETS for m in stats._models.values())
    snapshot = stats.snapshot()
    assert snapshot["evicted"]["models"] > 0
    assert snapshot["evicted"]["users"] > 0


def test_recently_used_entries_survive_eviction() -> None:
    stats = Stats(max_models=2, max_users=2)
    for model in ("a/1", "b/2", "a/1", "c/3"):  # a/1 was used after b/2, so b/2 goes
        stats.record(_routing(Attempt(model, outcome="won")), model, None)
    snapshot = stats.snapshot()
    assert set(snapshot["models"]) == {"a/1", "c/3"}
    assert set(snapshot["users"]) == {"a/1", "c/3"}


def test_concurrent_records_lose_no_counts() -> None:
    stats = Stats()

    def worker() -> None:
        for _ in range(2_000):
            stats.record(
                _routing(Attempt("openai/a", outcome="won", latency_ms=1.0, cost_usd=0.5)), "u", None
            )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()
    assert snapshot["models"]["openai/a"]["calls"] == 16_000
    assert snapshot["users"]["u"]["calls"] == 16_000
    assert snapshot["users"]["u"]["cost_usd"] == pytest.approx(8_000.0)


# -- Models.stats(): real calls to the fake upstream --------------------------------------------------


def _models(upstream: FakeUpstream, **config: object) -> Models:
    models = Models(
        {"providers": {"openai": {"apiBase": upstream.base_url, "apiKeyEnv": "OPENAI_API_KEY"}}, **config},
        environ={"OPENAI_API_KEY": "sk-test-planted-secret-123456"},
    )
    models.load_user_config(
        "u1",
        {
            "experiments": {
                "safe": {"strategy": "fallback", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]}
            },
            "defaults": {"costLimit": 2.0},
        },
    )
    return models


async def test_models_stats_after_real_calls() -> None:
    with FakeUpstream() as upstream:
        upstream.script("gpt-4.1-mini", Behavior(status=400))
        upstream.script(
            "gpt-4.1-nano", Behavior(content="ok", latency_ms=40, prompt_tokens=100, completion_tokens=20)
        )
        models = _models(upstream)
        for _ in range(3):
            await models.complete("user:u1:safe", [{"role": "user", "content": "hi"}])
        snapshot = models.stats()

    mini, nano = snapshot["models"]["openai/gpt-4.1-mini"], snapshot["models"]["openai/gpt-4.1-nano"]
    assert (mini["calls"], mini["errors"], mini["wins"]) == (3, 3, 0)
    assert (nano["calls"], nano["errors"], nano["wins"]) == (3, 0, 3)
    assert 40 <= nano["p50_ms"] <= nano["p95_ms"] <= nano["p99_ms"] < 2_000
    assert (nano["input_tokens"], nano["output_tokens"]) == (300, 60)
    assert nano["cost_usd"] == pytest.approx(3 * (100 * 0.1e-6 + 20 * 0.4e-6))
    user = snapshot["users"]["u1"]
    assert (user["calls"], user["errors"], user["cost_limit"]) == (3, 0, 2.0)
    assert user["spent_usd"] == pytest.approx(nano["cost_usd"])
    assert user["budget_used"] == pytest.approx(nano["cost_usd"] / 2.0)


async def test_performance_tracking_off_keeps_models_stats_empty() -> None:
    with FakeUpstream() as upstream:
        models = _models(upstream, performanceTracking=False)
        await models.complete("openai/gpt-4.1-mini", [{"role": "user", "content": "hi"}])
        upstream.script("gpt-4.1-mini", Behavior(status=400))
        with pytest.raises(AllModelsFailedError):
            await models.complete("openai/gpt-4.1-mini", [{"role": "user", "content": "hi"}])
        snapshot = models.stats()
    assert snapshot["enabled"] is False
    assert snapshot["models"] == {}
    assert snapshot["users"] == {}
