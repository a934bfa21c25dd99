"""Cost alerts: each threshold of a user's costLimit fires once, as a log line, a span event and callbacks."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lucky_litellm import Models
from lucky_litellm.alerts import CostAlert, CostAlerts
from lucky_litellm.telemetry import Telemetry
from lucky_litellm.testing import Behavior, FakeUpstream


def test_each_threshold_fires_once_as_spend_grows() -> None:
    alerts = CostAlerts([0.5, 0.8, 1.0])
    fired = [
        [a.threshold for a in alerts.observe("u1", spent, 10.0)] for spent in (4.0, 5.5, 6.0, 9.0, 12.0, 20.0)
    ]
    assert fired == [[], [0.5], [], [0.8], [1.0], []]


def test_crossing_several_thresholds_at_once_fires_each_in_order() -> None:
    alerts = CostAlerts([1.0, 0.5, 0.8])
    assert alerts.observe("u1", 9.5, 10.0) == [
        CostAlert("u1", 0.5, 9.5, 10.0),
        CostAlert("u1", 0.8, 9.5, 10.0),
    ]


def test_users_are_tracked_separately() -> None:
    alerts = CostAlerts([0.5])
    assert [a.user_id for a in alerts.observe("u1", 6.0, 10.0)] == ["u1"]
    assert [a.user_id for a in alerts.observe("u2", 6.0, 10.0)] == ["u2"]


def test_no_limit_means_no_alert() -> None:
    alerts = CostAlerts()
    assert alerts.observe("u1", 1e9, None) == []
    assert alerts.observe("u1", 1e9, 0.0) == []


def test_lower_spend_seen_later_does_not_rearm() -> None:
    """Totals of concurrent requests may be observed out of order; the alert must still fire once."""
    alerts = CostAlerts([0.5])
    assert len(alerts.observe("u1", 0.6, 1.0)) == 1
    assert alerts.observe("u1", 0.4, 1.0) == []
    assert alerts.observe("u1", 0.7, 1.0) == []


def test_a_new_limit_or_a_reset_rearms_the_thresholds() -> None:
    alerts = CostAlerts([0.5])
    alerts.observe("u1", 6.0, 10.0)
    assert [a.limit_usd for a in alerts.observe("u1", 11.0, 20.0)] == [20.0]
    alerts.reset("u1")
    assert len(alerts.observe("u1", 11.0, 20.0)) == 1


def test_alert_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lucky_litellm.alerts")
    CostAlerts([0.8]).observe("researcher-1", 8.5, 10.0)
    [record] = [r for r in caplog.records if r.name == "lucky_litellm.alerts"]
    assert record.levelno == logging.WARNING
    assert "researcher-1" in record.getMessage()
    assert "85%" in record.getMessage()
    assert "80%" in record.getMessage()


def test_alert_is_an_event_on_the_request_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("lucky.complete")
    CostAlerts([0.5, 1.0]).observe("u1", 0.75, 1.0, span)
    span.end()
    [finished] = exporter.get_finished_spans()
    [event] = finished.events
    assert event.name == "lucky.cost_alert"
    assert dict(event.attributes or {}) == {
        "lucky.alert.threshold": 0.5,
        "lucky.alert.spent_usd": 0.75,
        "lucky.alert.limit_usd": 1.0,
    }


def test_callbacks_receive_the_alert() -> None:
    alerts = CostAlerts([0.5])
    received: list[CostAlert] = []
    alerts.add_callback(received.append)
    alerts.observe("u1", 0.5, 1.0)
    assert received == [CostAlert("u1", 0.5, 0.5, 1.0)]
    assert received[0].used == 0.5


async def test_async_callbacks_run_on_the_running_loop() -> None:
    alerts = CostAlerts([0.5])
    delivered = asyncio.Event()
    received: list[CostAlert] = []

    async def on_alert(alert: CostAlert) -> None:
        received.append(alert)
        delivered.set()

    alerts.add_callback(on_alert)
    alerts.observe("u1", 0.9, 1.0)
    await asyncio.wait_for(delivered.wait(), 5)
    assert [a.threshold for a in received] == [0.5]


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    alerts = CostAlerts([0.5])
    received: list[CostAlert] = []

    def broken(alert: CostAlert) -> None:
        raise RuntimeError("pager is down")

    alerts.add_callback(broken)
    alerts.add_callback(received.append)
    with caplog.at_level(logging.ERROR, logger="lucky_litellm.alerts"):
        assert len(alerts.observe("u1", 0.6, 1.0)) == 1
    assert len(received) == 1
    assert any("pager is down" in (r.exc_text or "") for r in caplog.records)


def test_concurrent_observers_fire_each_threshold_exactly_once() -> None:
    alerts = CostAlerts([0.25, 0.5, 0.75, 1.0])
    received: list[CostAlert] = []
    lock = threading.Lock()

    def on_alert(alert: CostAlert) -> None:
        with lock:
            received.append(alert)

    alerts.add_callback(on_alert)
    start = threading.Barrier(16)

    def worker(offset: int) -> None:
        start.wait()
        for step in range(200):
            alerts.observe("u1", (step * 16 + offset) / 3000, 1.0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.threshold for a in received) == [0.25, 0.5, 0.75, 1.0]


def test_thresholds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CostAlerts([0.0, 0.5])


# -- through Models: real calls to the fake upstream -------------------------------------------------


async def test_spend_crossing_thresholds_alerts_via_log_span_and_on_cost_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    received: list[CostAlert] = []
    caplog.set_level(logging.WARNING, logger="lucky_litellm.alerts")
    with FakeUpstream() as upstream:
        # 10,000 prompt + 1,000 answer tokens of gpt-4.1-mini cost $0.0056: 56 % of a $0.01 limit
        upstream.script("gpt-4.1-mini", Behavior(content="ok", prompt_tokens=10_000, completion_tokens=1_000))
        models = Models(
            {"providers": {"openai": {"apiBase": upstream.base_url, "apiKeyEnv": "OPENAI_API_KEY"}}},
            environ={"OPENAI_API_KEY": "sk-test-planted-secret-123456"},
            telemetry=Telemetry(tracer_provider=provider),
        )
        models.load_user_config(
            "u1",
            {
                "experiments": {"x": {"strategy": "first", "providers": ["openai/gpt-4.1-mini"]}},
                "defaults": {"costLimit": 0.01},
            },
        )
        models.on_cost_alert(received.append)
        messages = [{"role": "user", "content": "hi"}]
        await models.complete("user:u1:x", messages, max_tokens=10)
        assert [a.threshold for a in received] == [0.5]
        await models.complete("user:u1:x", messages, max_tokens=10)

    assert [a.threshold for a in received] == [0.5, 0.8, 1.0]
    assert all(a.user_id == "u1" and a.limit_usd == 0.01 for a in received)
    assert received[0].spent_usd == pytest.approx(0.0056)
    assert received[-1].spent_usd == pytest.approx(0.0112)
    first, second = [s for s in exporter.get_finished_spans() if s.name == "lucky.complete"]
    assert [e.attributes["lucky.alert.threshold"] for e in first.events if e.name == "lucky.cost_alert"] == [
        0.5
    ]
    assert [e.attributes["lucky.alert.threshold"] for e in second.events if e.name == "lucky.cost_alert"] == [
        0.8,
        1.0,
    ]
    assert len([r for r in caplog.records if r.name == "lucky_litellm.alerts"]) == 3
