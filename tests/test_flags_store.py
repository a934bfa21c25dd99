"""Flag stores: the same behaviour in memory and in Redis, and what Redis adds across processes."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from lucky_litellm import BudgetExceededError, Models
from lucky_litellm.flags_store import (
    FlagState,
    FlagStore,
    FlagStoreUnavailableError,
    MemoryFlagStore,
    RedisFlagStore,
    store_from_url,
)
from lucky_litellm.testing.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One real server for the module (skips without the binary, fails under CI=true)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, prefix: str) -> Iterator[FlagStore]:
    if request.param == "memory":
        yield MemoryFlagStore()
        return
    server = request.getfixturevalue("redis_server")
    redis_store = RedisFlagStore(server.url, prefix=prefix)
    yield redis_store
    redis_store.close()


# -- the shared API ---------------------------------------------------------------------------------


def test_flag_changes_are_read_back_with_a_new_version(store):
    before = store.flags().version
    store.set_percent(12.5)
    store.add_test_user("researcher-1")
    flags = store.set_enabled(False)
    assert (flags.enabled, flags.percent, flags.test_users) == (False, 12.5, frozenset({"researcher-1"}))
    assert flags.version == before + 3
    assert store.remove_test_user("researcher-1").test_users == frozenset()


def test_invalid_percent_is_refused_and_nothing_changes(store):
    with pytest.raises(ValueError, match="rollout percent"):
        store.set_percent(140)
    assert store.flags().percent == 100


def test_reservations_stop_at_the_limit_and_name_spend_and_limit(store):
    assert store.reserve_spend("u", 0.6, 1.0) == pytest.approx(0.6)
    with pytest.raises(BudgetExceededError) as info:
        store.reserve_spend("u", 0.5, 1.0)
    assert (info.value.spent_usd, info.value.limit_usd) == (pytest.approx(0.6), 1.0)
    assert store.settle_spend("u", 0.6, 0.25) == pytest.approx(0.25)
    assert store.spent("u") == pytest.approx(0.25)


def test_tiny_costs_add_up_without_float_drift(store):
    for _ in range(1000):
        store.add_spend("u", 0.000001)
    assert store.spent("u") == 0.001


def test_concurrent_reservations_in_one_process_stop_exactly_at_the_limit(store):
    granted: list[float] = []

    def spend() -> None:
        with contextlib.suppress(BudgetExceededError):
            granted.append(store.reserve_spend("u", 0.03, 1.00))

    threads = [threading.Thread(target=spend) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 33
    assert store.spent("u") == pytest.approx(0.99)


def test_reset_spend_forgets_a_user(store):
    store.add_spend("u", 1.0)
    store.add_spend("v", 1.0)
    store.reset_spend("u")
    assert (store.spent("u"), store.spent("v")) == (0, 1.0)


def test_a_flag_state_with_an_invalid_percent_is_refused_where_it_is_built():
    with pytest.raises(ValueError, match="rollout percent"):
        FlagState(percent=150)


def test_a_memory_url_or_none_gives_a_memory_store():
    assert isinstance(store_from_url(None), MemoryFlagStore)
    assert isinstance(store_from_url("memory://"), MemoryFlagStore)


def test_an_unknown_url_scheme_is_refused_without_its_password():
    with pytest.raises(FlagStoreUnavailableError) as info:
        store_from_url("mysql://admin:hunter2@db/0")
    assert "hunter2" not in str(info.value)


# -- Redis across processes -----------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from lucky_litellm.flags_store import RedisFlagStore
    store = RedisFlagStore(sys.argv[1], prefix=sys.argv[2])
    print("ready", store.flags().enabled, flush=True)
    deadline = time.monotonic() + 10
    while store.flags().enabled and time.monotonic() < deadline:
        time.sleep(0.01)
    print("seen", time.monotonic(), flush=True)
    """
)


def test_a_flip_in_one_process_is_seen_by_another_within_a_second(redis_server, prefix):
    store = RedisFlagStore(redis_server.url, prefix=prefix)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_server.url, prefix], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["ready", "True"]
        flipped_at = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux: comparable
        store.set_enabled(False)
        seen, seen_at = child.stdout.readline().split()
        assert seen == "seen"
        assert float(seen_at) - flipped_at < 1.0
    finally:
        child.kill()
        child.wait()


def test_a_fresh_redis_is_seeded_with_the_initial_flags(redis_server, prefix):
    initial = FlagState(percent=10, test_users=frozenset({"r1"}))
    RedisFlagStore(redis_server.url, prefix=prefix, initial=initial)
    flags = RedisFlagStore(redis_server.url, prefix=prefix).flags()
    assert (flags.percent, flags.test_users) == (10, frozenset({"r1"}))


def test_the_initial_flags_never_overwrite_flags_already_in_redis(redis_server, prefix):
    RedisFlagStore(redis_server.url, prefix=prefix).set_percent(7)
    late = RedisFlagStore(redis_server.url, prefix=prefix, initial=FlagState(percent=100))
    assert late.flags().percent == 7


SPENDER = textwrap.dedent(
    """
    import sys, threading
    from lucky_litellm.errors import BudgetExceededError
    from lucky_litellm.flags_store import RedisFlagStore
    store = RedisFlagStore(sys.argv[1], prefix=sys.argv[2])
    start = threading.Barrier(25)
    ok = []
    def spend():
        start.wait()
        try:
            store.reserve_spend("shared-user", 0.03, 1.00)
            ok.append(1)
        except BudgetExceededError:
            pass
    threads = [threading.Thread(target=spend) for _ in range(25)]
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start spending together
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(ok), flush=True)
    """
)


def test_two_processes_with_25_concurrent_requests_each_cannot_overspend(redis_server, prefix):
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SPENDER, redis_server.url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        granted = [int(child.communicate("go\n", timeout=60)[0]) for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert sum(granted) == 33  # 33 × $0.03 = $0.99 ≤ $1.00 < 34 × $0.03
    assert RedisFlagStore(redis_server.url, prefix=prefix).spent("shared-user") == pytest.approx(0.99)


def test_two_registries_share_a_users_spend(redis_server, prefix):
    first = Models(store=RedisFlagStore(redis_server.url, prefix=prefix), environ={})
    second = Models(store=RedisFlagStore(redis_server.url, prefix=prefix), environ={})
    first.store.reserve_spend("u", 0.75, 1.0)
    assert second.store.spent("u") == pytest.approx(0.75)
    with pytest.raises(BudgetExceededError):
        second.store.reserve_spend("u", 0.5, 1.0)


# -- Redis outages ----------------------------------------------------------------------------------


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _writable(store: RedisFlagStore, percent: float) -> bool:
    try:
        store.set_percent(percent)
    except FlagStoreUnavailableError:
        return False
    return True


def test_calls_survive_a_redis_restart(prefix, caplog):
    caplog.set_level(logging.INFO, logger="lucky_litellm.flags")
    with RedisServer() as server:
        store = RedisFlagStore(server.url, prefix=prefix, refresh_s=0)  # every flags() asks Redis
        store.set_percent(25)
        store.add_spend("u", 0.5)
        server.stop()

        assert [store.flags().percent for _ in range(3)] == [25, 25, 25]  # the last known flags
        assert store.reserve_spend("u", 0.25, 1.0) == pytest.approx(0.75)  # local ledger on the last total
        with pytest.raises(BudgetExceededError):
            store.reserve_spend("u", 0.5, 1.0)
        with pytest.raises(FlagStoreUnavailableError):
            store.set_percent(50)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()

        server.start()
        _until(lambda: _writable(store, 50))
        assert store.flags().percent == 50
        assert store.spent("u") == pytest.approx(0.25)  # the new server starts empty, plus the outage's spend
        assert any("reconnected" in r.getMessage() for r in caplog.records)
        store.close()


def test_outage_spend_counts_in_the_first_reservation_after_redis_is_back(prefix):
    """Regression: the outage's spend used to reach Redis only after the first operation that
    found Redis back, so that first reservation could pass the limit ($0.9 + $0.5 of $1)."""
    with RedisServer() as server:
        store = RedisFlagStore(server.url, prefix=prefix, refresh_s=0)
        server.stop()
        store.reserve_spend("u", 0.9, 1.0)  # counted in the local ledger
        server.start()
        raw = redis.Redis.from_url(server.url, decode_responses=True)

        def refused_after_the_push() -> bool:
            with pytest.raises(BudgetExceededError):
                store.reserve_spend("u", 0.5, 1.0)
            return raw.get(f"{prefix}spend:u") is not None

        _until(refused_after_the_push)
        assert store.spent("u") == pytest.approx(0.9)
        raw.close()
        store.close()


def test_a_redis_that_comes_back_empty_keeps_the_kill_switch(prefix):
    """Without persistence a restarted Redis is empty: it must not fall back to `initial`."""
    with RedisServer() as server:
        store = RedisFlagStore(server.url, prefix=prefix, refresh_s=0)
        store.set_enabled(False)
        server.restart()
        raw = redis.Redis.from_url(server.url, decode_responses=True)

        def reseeded() -> bool:
            store.flags()  # reconnects, finds the flags gone, writes back the last known ones
            return raw.hget(f"{prefix}flags", "enabled") == "0"

        _until(reseeded)
        newcomer = RedisFlagStore(server.url, prefix=prefix, initial=FlagState(enabled=True))
        assert newcomer.flags().enabled is False
        raw.close()
        store.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: the worst kind of dead Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_a_silent_redis_never_holds_a_call_longer_than_the_socket_timeout(silent_port, prefix, caplog):
    caplog.set_level(logging.WARNING, logger="lucky_litellm.flags")
    store = RedisFlagStore(f"redis://127.0.0.1:{silent_port}/0", prefix=prefix, refresh_s=0)
    durations = []
    finish = time.monotonic() + 1.2
    while time.monotonic() < finish:
        started = time.monotonic()
        assert store.flags() == FlagState()
        store.reserve_spend("u", 0.001, 1.0)
        durations.append(time.monotonic() - started)
        time.sleep(0.01)
    assert max(durations) < 0.6
    assert 1 <= sum(d > 0.15 for d in durations) <= 3  # retried, but at most once per 0.5 s
    assert store.spent("u") == pytest.approx(0.001 * len(durations))
    assert len(caplog.records) == 1


def test_garbage_in_the_flags_hash_keeps_the_last_flags(redis_server, prefix, caplog):
    store = RedisFlagStore(redis_server.url, prefix=prefix, refresh_s=0)
    store.set_percent(25)
    raw = redis.Redis.from_url(redis_server.url)
    raw.hset(f"{prefix}flags", "percent", "banana")
    assert [store.flags().percent, store.flags().percent] == [25, 25]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    raw.close()


@pytest.mark.parametrize(
    "url", ["redis://user:s3cret-pass@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=s3cret-pass"]
)
def test_the_redis_url_password_never_reaches_logs_or_repr(url, prefix, caplog):
    store = RedisFlagStore(url, prefix=prefix)
    assert store.flags() == FlagState()
    with pytest.raises(FlagStoreUnavailableError) as info:
        store.set_enabled(False)
    shown = [repr(store), str(info.value), *(r.getMessage() for r in caplog.records)]
    assert caplog.records and all("s3cret-pass" not in text for text in shown)


def test_the_rollout_cli_changes_the_shared_store(redis_server):
    env = {**os.environ, "LUCKY_STATE_URL": redis_server.url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "lucky_litellm.cli", "rollout"]
    for args in (["percent", "30"], ["add-user", "researcher-9"], ["disable"]):
        subprocess.run([*command, *args], env=env, check=True, capture_output=True, timeout=60)
    flags = RedisFlagStore(redis_server.url).flags()
    assert (flags.percent, flags.test_users, flags.enabled) == (30, frozenset({"researcher-9"}), False)
    status = subprocess.run(
        [*command, "status"], env=env, check=True, capture_output=True, text=True, timeout=60
    )
    assert "researcher-9" in status.stdout and "RedisFlagStore" in status.stdout


def test_the_state_outage_policy_defaults_to_local_share_and_refuses_unknown_values():
    from lucky_litellm.config import validate_models_config
    from lucky_litellm.errors import ConfigError

    assert validate_models_config({}).state.on_outage == "local-share"
    assert validate_models_config({"state": {"onOutage": "fail-closed"}}).state.on_outage == "fail-closed"
    with pytest.raises(ConfigError, match="state.onOutage"):
        validate_models_config({"state": {"onOutage": "optimistic"}})
