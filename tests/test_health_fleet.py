"""Circuits shared through a real `redis-server`: every process skips a model another opened, and
half-open lets one probe through across the fleet. The second process is a real subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from lucky_litellm import Models, routing_of
from lucky_litellm.state import state_from_url
from lucky_litellm.testing import Behavior, FakeUpstream
from lucky_litellm.testing.redis_server import RedisServer

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

DEAD, OK = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"
DEAD_NAME = "gpt-4.1-mini"


def fleet_config(up: FakeUpstream, cooldown_ms: float = 300) -> dict[str, Any]:
    users = {
        "u": {
            "experiments": {
                "fb": {"strategy": "fallback", "providers": [DEAD, OK], "timeout": 30_000},
                "one": {"strategy": "first", "providers": [DEAD], "timeout": 30_000},
            }
        }
    }
    circuit = {"consecutiveFailures": 3, "cooldown": cooldown_ms, "errorRate": None}
    return upstream_config(up, users=users, defaults={"retries": 0}, health={"circuit": circuit})


@pytest.fixture
def replica(
    redis_server: RedisServer, prefix: str, fake_upstream: FakeUpstream
) -> Iterator[Callable[..., Models]]:
    """Build a registry that is its own replica (own Redis connection), all sharing `prefix`."""
    built: list[Models] = []

    def build(cooldown_ms: float = 300) -> Models:
        state = state_from_url(redis_server.url, prefix=prefix)
        models = Models(fleet_config(fake_upstream, cooldown_ms), state=state, environ=dict(PLANTED_KEYS))
        built.append(models)
        return models

    yield build
    for models in built:
        models.state.close()


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


async def _open_circuit(models: Models) -> None:
    for _ in range(3):
        await models.complete("user:u:fb", MESSAGES)
    assert models.circuits is not None and models.circuits.state_of(DEAD) == "open"


WATCHER = textwrap.dedent(
    """
    import json, sys, time
    from lucky_litellm.config import validate_models_config
    from lucky_litellm.health import Circuits
    from lucky_litellm.state import state_from_url
    from lucky_litellm.state.health import RedisHealthStore
    url, prefix, config, model = sys.argv[1:5]
    # what `Models` builds from the config, without litellm: this process only watches
    state = state_from_url(url, prefix=prefix)
    settings = validate_models_config(json.loads(config)).health.circuit
    circuits = Circuits(settings, RedisHealthStore(state.connection))
    assert circuits.state_of(model) == "closed"
    time.sleep(0.3)  # a few syncer ticks: reading the fleet's circuits works
    print("ready", circuits.state_of(model), flush=True)
    deadline = time.monotonic() + 60
    while circuits.state_of(model) != "open" and time.monotonic() < deadline:
        time.sleep(0.005)
    print("seen", time.monotonic(), circuits.state_of(model), flush=True)
    """
)


async def test_a_circuit_opened_in_one_process_is_seen_by_another_within_a_second(
    redis_server, prefix, fake_upstream, replica
):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    models = replica()
    await models.warm_up()  # litellm loaded: the circuit opens as soon as the calls are made
    args = [redis_server.url, prefix, json.dumps(fleet_config(fake_upstream, 30000)), DEAD]
    child = subprocess.Popen([sys.executable, "-c", WATCHER, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["ready", "closed"]
        await _open_circuit(models)
        opened_at = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux: comparable
        seen, seen_at, state = child.stdout.readline().split()
        assert (seen, state) == ("seen", "open")
        assert float(seen_at) - opened_at < 1.0
    finally:
        child.kill()
        child.wait()


async def test_a_second_replica_skips_the_model_without_calling_it(fake_upstream, replica):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    first, second = replica(30000), replica(30000)
    await _open_circuit(first)
    assert second.circuits is not None
    second.circuits.state_of(DEAD)  # a serving process reads the fleet's circuits
    await asyncio.to_thread(_until, lambda: second.circuits is not None and second.circuits.unhealthy)
    calls = fake_upstream.call_count(DEAD_NAME)

    response = await second.complete("user:u:fb", MESSAGES)
    assert [(a.model, a.outcome) for a in routing_of(response).attempts] == [(DEAD, "skipped"), (OK, "won")]
    assert fake_upstream.call_count(DEAD_NAME) == calls
    [health] = [h for h in second.health() if h.model == DEAD]
    assert (health.state, health.consecutive_failures) == ("open", 3)
    assert "3 failures in a row" in health.reason


async def test_half_open_lets_one_probe_through_across_the_fleet(fake_upstream, replica):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    replicas = [replica(200), replica(200), replica(200)]
    await _open_circuit(replicas[0])
    for models in replicas:
        assert models.circuits is not None
        models.circuits.state_of(DEAD)
    await asyncio.to_thread(
        _until, lambda: all(m.circuits is not None and m.circuits.unhealthy for m in replicas)
    )
    await asyncio.to_thread(
        _until,
        lambda: all(m.circuits is not None and m.circuits.state_of(DEAD) == "half-open" for m in replicas),
    )
    # a slow probe that fails: every request of the gather asks for the circuit while it is in
    # flight (or within the cooldown after it), even when a loaded machine starts them slowly
    fake_upstream.script(DEAD_NAME, Behavior(status=503, latency_ms=3000))
    calls = fake_upstream.call_count(DEAD_NAME)

    responses = await asyncio.gather(*(m.complete("user:u:fb", MESSAGES) for m in replicas for _ in range(8)))
    assert fake_upstream.call_count(DEAD_NAME) - calls == 1
    assert all(routing_of(r).winner == OK for r in responses)
    first_outcomes = [routing_of(r).attempts[0].outcome for r in responses]
    assert first_outcomes.count("failed") == 1 and first_outcomes.count("skipped") == 23


async def test_a_successful_probe_closes_the_circuit_for_every_replica(fake_upstream, replica):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    first, second = replica(150), replica(150)
    await _open_circuit(first)
    assert second.circuits is not None
    second.circuits.state_of(DEAD)
    await asyncio.to_thread(_until, lambda: second.circuits is not None and second.circuits.unhealthy)
    fake_upstream.script(DEAD_NAME, Behavior(content="back"))
    await asyncio.sleep(0.2)

    response = await first.complete("user:u:fb", MESSAGES)
    assert routing_of(response).winner == DEAD
    await asyncio.to_thread(_until, lambda: second.circuits is not None and not second.circuits.unhealthy)
    assert second.circuits.state_of(DEAD) == "closed"


async def test_lucky_litellm_health_shows_each_models_circuit(redis_server, prefix, fake_upstream, replica):
    from lucky_litellm.cli import main

    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    models = replica(30000)
    await _open_circuit(models)
    runner = CliRunner()

    def shown() -> list[dict[str, Any]]:
        result = runner.invoke(
            main, ["health", "--state-url", redis_server.url, "--prefix", prefix, "--json"]
        )
        assert result.exit_code == 0, result.output
        return list(json.loads(result.output))

    def pushed() -> bool:  # every call of this process reached Redis
        rows = {row["model"]: row for row in shown()}
        return OK in rows and rows[OK]["calls"] == 3 and rows[DEAD]["state"] == "open"

    await asyncio.to_thread(_until, pushed)
    rows = {row["model"]: row for row in shown()}
    assert rows[DEAD]["state"] == "open" and rows[DEAD]["in_a_row"] == 3
    assert 25 < float(rows[DEAD]["cooldown_s"]) <= 30
    assert rows[OK]["state"] == "closed" and rows[OK]["calls"] == 3

    table = runner.invoke(main, ["health", "--state-url", redis_server.url, "--prefix", prefix])
    assert table.exit_code == 0 and DEAD in table.output and "open" in table.output


def test_lucky_litellm_health_without_a_shared_store_says_so(monkeypatch):
    from lucky_litellm.cli import main

    monkeypatch.delenv("LUCKY_STATE_URL", raising=False)
    result = CliRunner().invoke(main, ["health"])
    assert result.exit_code == 1
    assert "no shared state store" in result.output


async def test_circuits_keep_working_in_each_process_while_redis_is_down(fake_upstream, prefix):
    fake_upstream.script(DEAD_NAME, Behavior(status=503))
    with RedisServer() as server:
        state = state_from_url(server.url, prefix=prefix)
        models = Models(fleet_config(fake_upstream, 200), state=state, environ=dict(PLANTED_KEYS))
        try:
            await models.complete("user:u:fb", MESSAGES)  # Redis known, then it goes away
            server.stop()
            for _ in range(2):
                await models.complete("user:u:fb", MESSAGES)
            assert models.circuits is not None and models.circuits.state_of(DEAD) == "open"
            response = await models.complete("user:u:fb", MESSAGES)
            assert routing_of(response).attempts[0].outcome == "skipped"

            await asyncio.sleep(0.25)  # half-open: the probe slot is this process's alone now
            fake_upstream.script(DEAD_NAME, Behavior(content="back"))
            response = await models.complete("user:u:fb", MESSAGES)
            assert routing_of(response).winner == DEAD
            assert models.circuits.state_of(DEAD) == "closed"

            server.restart()  # what was counted meanwhile reaches the fleet
            store = models.circuits.store
            assert store is not None

            def landed() -> bool:
                try:
                    circuits = {c.model: c for c in store.read(models.circuits.policy)}
                except Exception:
                    return False
                return DEAD in circuits and circuits[DEAD].calls >= 3

            await asyncio.to_thread(_until, landed, 10.0)
        finally:
            state.close()
