"""Flag stores: the same behaviour in memory and in Redis, and what Redis adds across processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from lucky_litellm import BudgetExceededError, Models
from lucky_litellm.flags_store import (
    FlagState,
    FlagStore,
    FlagStoreUnavailableError,
    MemoryFlagStore,
    RedisFlagStore,
    store_from_url,
)
from lucky_litellm.testing.redis_server import RedisServer, redis_server_binary

needs_redis = pytest.mark.skipif(
    redis_server_binary() is None and os.environ.get("CI") != "true",
    reason="redis-server is not installed (run .ci/install-redis.sh)",
)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
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


def test_reset_spend_forgets_a_user(store):
    store.add_spend("u", 1.0)
    store.add_spend("v", 1.0)
    store.reset_spend("u")
    assert (store.spent("u"), store.spent("v")) == (0, 1.0)


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


@needs_redis
def test_a_flip_in_one_process_is_seen_by_another_within_a_second(redis_server, prefix):
    store = RedisFlagStore(redis_server.url, prefix=prefix)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_server.url, prefix], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["ready", "True"]
        flipped_at = time.monotonic()
        store.set_enabled(False)
        seen, seen_at = child.stdout.readline().split()
        assert seen == "seen"
        assert float(seen_at) - flipped_at < 1.0
    finally:
        child.kill()
        child.wait()


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
    ok = []
    def spend():
        try:
            store.reserve_spend("shared-user", 0.03, 1.00)
            ok.append(1)
        except BudgetExceededError:
            pass
    threads = [threading.Thread(target=spend) for _ in range(25)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(ok))
    """
)


@needs_redis
def test_two_processes_with_25_concurrent_requests_each_cannot_overspend(redis_server, prefix):
    children = [
        subprocess.Popen([sys.executable, "-c", SPENDER, redis_server.url, prefix], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    granted = sum(int(child.communicate(timeout=60)[0]) for child in children)
    assert granted == 33  # 33 × $0.03 = $0.99 ≤ $1.00 < 34 × $0.03
    assert RedisFlagStore(redis_server.url, prefix=prefix).spent("shared-user") == pytest.approx(0.99)


@needs_redis
def test_two_registries_share_a_users_spend(redis_server, prefix):
    first = Models(store=RedisFlagStore(redis_server.url, prefix=prefix), environ={})
    second = Models(store=RedisFlagStore(redis_server.url, prefix=prefix), environ={})
    first.store.reserve_spend("u", 0.75, 1.0)
    with pytest.raises(BudgetExceededError):
        second.store.reserve_spend("u", 0.5, 1.0)


@needs_redis
def test_calls_survive_a_redis_restart(prefix, caplog):
    caplog.set_level(logging.INFO, logger="lucky_litellm.flags")
    with RedisServer() as server:
        store = RedisFlagStore(server.url, prefix=prefix)
        store.set_percent(25)
        store.add_spend("u", 0.5)
        server.stop()

        for _ in range(3):  # the last known flags, one warning per outage
            assert store.flags().percent == 25
            time.sleep(0.35)  # let the cached snapshot expire, so each round really asks Redis
        assert store.reserve_spend("u", 0.25, 1.0) == pytest.approx(0.75)  # local ledger on the last total
        with pytest.raises(BudgetExceededError):
            store.reserve_spend("u", 0.5, 1.0)
        with pytest.raises(FlagStoreUnavailableError):
            store.set_percent(50)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()

        server.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                store.set_percent(50)
                break
            except FlagStoreUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert store.flags().percent == 50
        assert store.spent("u") == pytest.approx(0.25)  # the new server starts empty, plus the outage's spend
        assert any("reconnected" in r.getMessage() for r in caplog.records)
        store.close()


@needs_redis
def test_the_redis_url_password_never_reaches_logs_or_repr(prefix, caplog):
    store = RedisFlagStore("redis://user:s3cret-pass@127.0.0.1:1/0", prefix=prefix)
    assert store.flags() == FlagState()
    assert "s3cret-pass" not in repr(store)
    assert all("s3cret-pass" not in r.getMessage() for r in caplog.records)


@needs_redis
def test_the_rollout_cli_changes_the_shared_store(redis_server):
    env = {**os.environ, "LUCKY_STATE_URL": redis_server.url, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "lucky_litellm.cli", "rollout"]
    for args in (["percent", "30"], ["add-user", "researcher-9"], ["disable"]):
        subprocess.run([*command, *args], env=env, check=True, capture_output=True, timeout=60)
    flags = RedisFlagStore(redis_server.url).flags()
    assert (flags.percent, flags.test_users, flags.enabled) == (30, frozenset({"researcher-9"}), False)
    status = subprocess.run([*command, "status"], env=env, check=True, capture_output=True, text=True, timeout=60)
    assert "researcher-9" in status.stdout and "RedisFlagStore" in status.stdout
