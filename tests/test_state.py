"""Shared state: the same behaviour in memory and in Redis, and what Redis adds across processes,
restarts and outages (a real `redis-server`, started on a free port)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from lucky_litellm import BudgetExceededError, Models
from lucky_litellm.errors import BudgetUnavailableError, ConfigError, StateUnavailableError
from lucky_litellm.routing import routing_of
from lucky_litellm.state import FlagState, MemoryFlagStore, State, state_from_url
from lucky_litellm.testing import Behavior
from lucky_litellm.testing.redis_server import LatencyProxy, RedisServer

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def budgeted_models(upstream: Any, url: str, *, limit: float = 10.0, **extra: Any) -> Models:
    """A registry against the fake upstream whose user `u` has a costLimit, state in `url`."""
    users = {
        "u": {
            "experiments": {"x": {"strategy": "first", "providers": ["openai/gpt-4.1-mini"]}},
            "defaults": {"costLimit": limit},
        }
    }
    config = upstream_config(upstream, users=users, rollout={"stateUrl": url}, **extra)
    return Models(config, environ=dict(PLANTED_KEYS))


# -- the shared API ---------------------------------------------------------------------------------


def test_flag_changes_are_read_back_with_a_new_version(state):
    before = state.flags.current().version
    state.flags.set_percent(12.5)
    state.flags.add_test_user("researcher-1")
    flags = state.flags.set_enabled(False)
    assert (flags.enabled, flags.percent, flags.test_users) == (False, 12.5, frozenset({"researcher-1"}))
    assert flags.version == before + 3
    assert state.flags.remove_test_user("researcher-1").test_users == frozenset()
    assert state.flags.current() == state.flags.read()


def test_invalid_percent_is_refused_and_nothing_changes(state):
    with pytest.raises(ValueError, match="rollout percent"):
        state.flags.set_percent(140)
    assert state.flags.current().percent == 100


async def test_reservations_stop_at_the_limit_and_name_spend_and_limit(state):
    assert await state.spend.reserve("u", 0.6, 1.0) == pytest.approx(0.6)
    with pytest.raises(BudgetExceededError) as info:
        await state.spend.reserve("u", 0.5, 1.0)
    assert (info.value.spent_usd, info.value.limit_usd) == (pytest.approx(0.6), 1.0)
    assert state.spend.settle("u", 0.6, 0.25) == pytest.approx(0.25)
    assert await state.spend.spent("u") == pytest.approx(0.25)
    assert state.spent("u") == pytest.approx(0.25)


async def test_a_user_at_the_limit_is_refused_even_a_free_request(state):
    await state.spend.reserve("u", 1.0, 1.0)
    with pytest.raises(BudgetExceededError):
        await state.spend.reserve("u", 0.0, 1.0)


async def test_tiny_costs_add_up_without_float_drift(state):
    for _ in range(1000):
        state.spend.add("u", 0.000001)
    assert await state.spend.spent("u") == 0.001


async def test_concurrent_reservations_stop_exactly_at_the_limit(state):
    results = await asyncio.gather(
        *(state.spend.reserve("u", 0.03, 1.00) for _ in range(40)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 33
    assert all(isinstance(r, BudgetExceededError) for r in results if isinstance(r, BaseException))
    assert await state.spend.spent("u") == pytest.approx(0.99)


def test_reset_forgets_a_user(state):
    state.spend.add("u", 1.0)
    state.spend.add("v", 1.0)
    state.spend.reset("u")
    assert (state.spent("u"), state.spent("v")) == (0, 1.0)


def test_a_flag_state_with_an_invalid_percent_is_refused_where_it_is_built():
    with pytest.raises(ValueError, match="rollout percent"):
        FlagState(percent=150)


def test_a_memory_url_or_none_gives_a_state_of_this_process_only():
    for url in (None, "memory://"):
        local = state_from_url(url)
        assert isinstance(local.flags, MemoryFlagStore) and not local.shared
        assert "this process only" in local.location


def test_an_unknown_url_scheme_is_refused_without_its_password():
    with pytest.raises(StateUnavailableError) as info:
        state_from_url("mysql://admin:hunter2@db/0")
    assert "hunter2" not in str(info.value)


def test_the_state_outage_policy_defaults_to_local_share_and_refuses_unknown_values():
    from lucky_litellm.config import validate_models_config

    assert validate_models_config({}).state.on_outage == "local-share"
    assert validate_models_config({"state": {"onOutage": "fail-closed"}}).state.on_outage == "fail-closed"
    with pytest.raises(ConfigError, match=r"state\.onOutage"):
        validate_models_config({"state": {"onOutage": "optimistic"}})


# -- Redis across processes -----------------------------------------------------------------------

FLAG_WATCHER = textwrap.dedent(
    """
    import sys, time
    from lucky_litellm.state import state_from_url
    state = state_from_url(sys.argv[1], prefix=sys.argv[2])
    print("ready", state.flags.current().enabled, flush=True)
    deadline = time.monotonic() + 10
    while state.flags.current().enabled and time.monotonic() < deadline:
        time.sleep(0.005)
    print("seen", time.monotonic(), flush=True)
    """
)


def test_a_flip_in_one_process_is_seen_by_another_within_a_second(redis_server, prefix):
    state = state_from_url(redis_server.url, prefix=prefix)
    state.flags.set_percent(50)  # the shared state exists before the watcher starts
    child = subprocess.Popen(
        [sys.executable, "-c", FLAG_WATCHER, redis_server.url, prefix], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["ready", "True"]
        flipped_at = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux: comparable
        state.flags.set_enabled(False)
        seen, seen_at = child.stdout.readline().split()
        assert seen == "seen"
        assert float(seen_at) - flipped_at < 1.0
    finally:
        child.kill()
        child.wait()
        state.close()


def test_flag_reads_on_the_request_path_are_cached(redis_server, prefix):
    state = state_from_url(redis_server.url, prefix=prefix)
    started = time.perf_counter()
    for _ in range(10_000):
        state.flags.current()
    assert (time.perf_counter() - started) / 10_000 < 0.001  # sub-millisecond: no I/O
    state.close()


def test_a_process_that_never_read_the_shared_state_never_writes_its_defaults(redis_server, prefix):
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    fresh = state_from_url(redis_server.url, prefix=prefix, initial=FlagState(percent=10))
    assert fresh.flags.read().percent == 10  # its configured flags, used locally ...
    assert not raw.exists(f"{prefix}flags")  # ... and never written into Redis
    assert fresh.flags.set_percent(20).version == 1  # an operator's write creates the shared state
    assert raw.hget(f"{prefix}flags", "percent") == "20.0"
    raw.close()
    fresh.close()


def test_the_initial_flags_never_overwrite_flags_already_in_redis(redis_server, prefix):
    state_from_url(redis_server.url, prefix=prefix).flags.set_percent(7)
    late = state_from_url(redis_server.url, prefix=prefix, initial=FlagState(percent=100))
    assert late.flags.current().percent == 7
    late.close()


def _forked_worker(state: State, out: Any) -> None:
    state.flags.current()  # the worker's first request: its syncer starts again
    _until(lambda: state.connection is not None and state.connection.replicas == 2)
    out.put(state.connection.replica_id)
    _until(lambda: state.flags.current().enabled is False)
    out.put("seen")


def test_a_forked_worker_is_a_replica_of_its_own_that_follows_the_flags(redis_server, prefix):
    import multiprocessing

    state = state_from_url(redis_server.url, prefix=prefix)
    state.flags.set_percent(50)
    state.flags.current()  # serving: heartbeats
    context = multiprocessing.get_context("fork")  # a pre-forking server: state made before the fork
    out = context.Queue()
    worker = context.Process(target=_forked_worker, args=(state, out))
    worker.start()
    try:
        assert out.get(timeout=10) != state.connection.replica_id  # counted apart in the heartbeats
        state.flags.set_enabled(False)
        assert out.get(timeout=5) == "seen"  # its syncer runs: flags reach it
    finally:
        worker.join(5)
        worker.kill()
        state.close()


SPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from lucky_litellm.errors import BudgetExceededError
    from lucky_litellm.state import state_from_url
    state = state_from_url(sys.argv[1], prefix=sys.argv[2])
    async def main():
        print("ready", flush=True)
        sys.stdin.readline()  # both processes start spending together
        results = await asyncio.gather(
            *(state.spend.reserve("shared-user", 0.03, 1.00) for _ in range(25)), return_exceptions=True
        )
        assert all(isinstance(r, (float, BudgetExceededError)) for r in results), results
        print(sum(isinstance(r, float) for r in results), flush=True)
    asyncio.run(main())
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
    assert state_from_url(redis_server.url, prefix=prefix).spent("shared-user") == pytest.approx(0.99)


async def test_two_registries_share_a_users_spend(redis_server, prefix):
    first = Models(state=state_from_url(redis_server.url, prefix=prefix), environ={})
    second = Models(state=state_from_url(redis_server.url, prefix=prefix), environ={})
    await first.state.spend.reserve("u", 0.75, 1.0)
    assert await second.state.spend.spent("u") == pytest.approx(0.75)
    with pytest.raises(BudgetExceededError):
        await second.state.spend.reserve("u", 0.5, 1.0)


# -- the rows: the event loop, restarts, durability, outages --------------------------------


class SyncRedisCalls:
    """The threads that used the synchronous Redis client while the block ran: every command,
    pipeline and script of it takes a connection from its pool first. Only the syncer (and the
    CLI) may be among them: a synchronous call on the event loop's thread holds every request
    for a whole Redis round trip, however long Redis takes (or, paused, until a socket timeout).
    Unlike timing the loop's steps, this tells a wait for Redis from a loaded machine's stall."""

    def __init__(self, state: State) -> None:
        assert state.connection is not None
        self._pool = state.connection.sync_client.connection_pool
        self.threads: set[str] = set()

    def __enter__(self) -> SyncRedisCalls:
        take = self._pool.get_connection

        def get_connection(*args: Any, **kwargs: Any) -> Any:
            self.threads.add(threading.current_thread().name)
            return take(*args, **kwargs)

        self._pool.get_connection = get_connection  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self._pool.get_connection


async def staggered_requests(models: Models, n: int = 20, gap_s: float = 0.01) -> list[Any]:
    """`n` concurrent budgeted requests, started `gap_s` apart, so they overlap the syncer's
    ticks (every 0.1 s) and each other at every stage: reserving, calling, settling."""
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.ensure_future(models.complete("user:u:x", MESSAGES, max_tokens=20)))
        await asyncio.sleep(gap_s)
    return await asyncio.gather(*tasks)


async def test_budgeted_requests_never_block_the_loop_on_a_slow_redis(fake_upstream):
    fake_upstream.default = Behavior(latency_ms=100)
    with RedisServer() as server, LatencyProxy(server.port, delay_s=0.025) as slow:  # 25 ms each way
        models = budgeted_models(fake_upstream, slow.url)
        await models.complete("user:u:x", MESSAGES, max_tokens=20)  # warm: litellm, connections
        with SyncRedisCalls(models.state) as sync_calls:
            results = await staggered_requests(models)
        assert not models.state.connection.down
        models.state.close()
    assert len(results) == 20
    assert "lucky-state-sync" in sync_calls.threads  # the syncer's own calls are seen...
    # ...and none on the event loop's thread: it was 2 round trips per request, blocking the loop
    assert threading.current_thread().name not in sync_calls.threads


async def test_budgeted_requests_never_block_the_loop_on_a_paused_redis(fake_upstream):
    fake_upstream.default = Behavior(latency_ms=100)
    with RedisServer() as server:
        models = budgeted_models(fake_upstream, server.url)
        await models.complete("user:u:x", MESSAGES, max_tokens=20)  # this process knows u's spend
        connection = models.state.connection
        _until(lambda: connection.replicas == 1)
        server.pause()  # SIGSTOP: connections are accepted, nothing answers
        try:
            with SyncRedisCalls(models.state) as sync_calls:
                results = await staggered_requests(models)
        finally:
            server.resume()
        models.state.close()
    assert len(results) == 20  # local-share: this replica's share of the remaining budget
    assert "lucky-state-sync" in sync_calls.threads
    assert threading.current_thread().name not in sync_calls.threads  # was 0.36 s at a time


def test_the_kill_switch_survives_a_redis_restart_and_a_replica_started_meanwhile(prefix):
    with RedisServer(persistent=False) as server:
        running = state_from_url(server.url, prefix=prefix)
        running.flags.current()  # a replica serving requests
        operator = state_from_url(server.url, prefix=prefix)
        operator.flags.set_enabled(False)
        operator.close()
        _until(lambda: running.flags.current().enabled is False)
        server.stop()
        fresh = state_from_url(server.url, prefix=prefix, initial=FlagState(enabled=True))
        server.start()  # empty: no persistence
        fresh.flags.read()  # the fresh replica reaches it (and must not seed enabled: true)
        _until(lambda: fresh.flags.current().enabled is False, timeout=2.0)
        raw = redis.Redis.from_url(server.url, decode_responses=True)
        assert raw.hget(f"{prefix}flags", "enabled") == "0"
        raw.close()
        for state in (running, fresh):
            state.close()


def test_a_reseeded_state_gives_way_to_a_newer_known_state(prefix):
    with RedisServer(persistent=False) as server:
        older = state_from_url(server.url, prefix=prefix)
        older.flags.set_percent(10)  # version 1
        newer = state_from_url(server.url, prefix=prefix)
        newer.flags.set_enabled(False)  # version 2: `older` has not read it yet
        older.connection.close()  # stop its syncer: it keeps version 1 in memory
        newer.connection.close()
        server.restart()
        older_again = state_from_url(server.url, prefix=prefix)  # re-seeding with what `older` knew:
        older_again.flags._snapshot, older_again.flags._known = older.flags.current(), True
        older_again.flags.read()
        newer_again = state_from_url(server.url, prefix=prefix)
        newer_again.flags._snapshot, newer_again.flags._known = newer.flags.current(), True
        assert newer_again.flags.read().enabled is False  # the newest known state wins
        assert older_again.flags.read().version == 2
        for state in (older_again, newer_again):
            state.close()


async def test_no_recorded_spend_is_lost_across_a_redis_restart(fake_upstream):
    fake_upstream.default = Behavior(latency_ms=100)
    with RedisServer() as server:  # append-only file, as the README documents
        models = budgeted_models(fake_upstream, server.url)
        first = await asyncio.gather(
            *(models.complete("user:u:x", MESSAGES, max_tokens=20) for _ in range(10))
        )
        in_flight = [
            asyncio.ensure_future(models.complete("user:u:x", MESSAGES, max_tokens=20)) for _ in range(10)
        ]
        await asyncio.sleep(0.05)  # reserved, not yet settled
        server.restart()
        second = await asyncio.gather(*in_flight)
        costs = sum(routing_of(r).cost_usd for r in [*first, *second])
        raw = redis.Redis.from_url(server.url, decode_responses=True)
        _until(lambda: int(raw.get("lucky:spend:u") or 0) == round(costs * 1e9))
        raw.close()
        models.state.close()
    assert costs > 0


OUTAGE_SPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from lucky_litellm.errors import BudgetExceededError, BudgetUnavailableError
    from lucky_litellm.state import state_from_url
    url, prefix, policy = sys.argv[1:]
    state = state_from_url(url, prefix=prefix, on_outage=policy)
    async def main():
        await state.spend.reserve("u", 0.1, 1.0)
        print("reserved", flush=True)
        sys.stdin.readline()  # both have reserved: read the total and wait for the fleet's size
        await state.spend.spent("u")
        while state.connection.replicas != 2:
            await asyncio.sleep(0.02)
        print("ready", flush=True)
        sys.stdin.readline()  # Redis is down now
        granted = 0
        for _ in range(40):
            try:
                await state.spend.reserve("u", 0.05, 1.0)
                granted += 1
            except (BudgetExceededError, BudgetUnavailableError):
                pass
        print(granted, flush=True)
        sys.stdin.readline()  # Redis is back: the outage's spend lands before it counts as back
        while state.connection.down:
            await asyncio.sleep(0.02)
        print("pushed", flush=True)
    asyncio.run(main())
    """
)


@pytest.mark.parametrize("policy", ["local-share", "fail-closed"])
def test_two_replicas_stay_within_the_limit_while_redis_is_down(prefix, policy):
    with RedisServer() as server:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", OUTAGE_SPENDER, server.url, prefix, policy],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]

        def step(send: str | None, expect: str | None = None) -> list[str]:
            lines = []
            for child in children:
                assert child.stdin is not None and child.stdout is not None
                if send is not None:
                    child.stdin.write(send)
                    child.stdin.flush()
            for child in children:
                assert child.stdout is not None
                line = child.stdout.readline().strip()
                assert expect is None or line == expect, line
                lines.append(line)
            return lines

        try:
            step(None, "reserved")
            step("sync\n", "ready")
            server.stop()
            granted = [int(n) for n in step("go\n")]
            server.start()
            step("back\n", "pushed")
        finally:
            for child in children:
                child.kill()
                child.wait()
        raw = redis.Redis.from_url(server.url, decode_responses=True)
        total = int(raw.get(f"{prefix}spend:u") or 0) / 1e9
        raw.close()
    assert total == pytest.approx(0.2 + 0.05 * sum(granted))  # nothing counted during the outage lost
    assert total <= 1.0 + 1e-9  # was 1.56-1.80: each replica enforced the whole limit alone
    if policy == "local-share":
        assert granted == [8, 8]  # each its half of the $0.80 that remained
    else:
        assert granted == [0, 0]


async def test_fail_closed_refuses_budgeted_calls_while_redis_is_down(fake_upstream):
    with RedisServer() as server:
        models = budgeted_models(fake_upstream, server.url, state={"onOutage": "fail-closed"})
        await models.complete("user:u:x", MESSAGES, max_tokens=20)
        server.stop()
        with pytest.raises(BudgetUnavailableError, match="fail-closed"):
            await models.complete("user:u:x", MESSAGES, max_tokens=20)
        assert await models.complete("tier:fast", MESSAGES)  # unbudgeted calls go on
        models.state.close()


# -- outages, the details -------------------------------------------------------------------------


def test_flags_survive_a_redis_restart_and_the_outage_is_logged_once(prefix, caplog):
    caplog.set_level(logging.INFO, logger="lucky_litellm.state")
    with RedisServer(persistent=False) as server:
        state = state_from_url(server.url, prefix=prefix)
        state.flags.set_percent(25)
        server.stop()
        with pytest.raises(StateUnavailableError):
            state.flags.set_percent(50)  # an operator must know a change did not land
        _until(lambda: state.connection is not None and state.connection.down)
        assert state.flags.current().percent == 25  # the last known flags
        server.start()
        _until(lambda: not state.connection.down)
        assert state.flags.read().percent == 25  # re-seeded from what this process knew
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        assert any("reconnected" in r.getMessage() for r in caplog.records)
        state.close()


async def test_outage_spend_lands_before_redis_counts_as_back(prefix):
    """The outage's spend reaches Redis before any reservation is checked there again, or a user
    could spend the budget twice ($0.9 locally, then $0.5 more in Redis, of $1)."""
    with RedisServer() as server:
        state = state_from_url(server.url, prefix=prefix)
        await state.spend.reserve("u", 0.0, 1.0)  # knows u
        _until(lambda: state.connection.replicas == 1)
        server.stop()
        await state.spend.reserve("u", 0.9, 1.0)  # alone in the fleet: the whole remainder
        server.start()
        await asyncio.to_thread(_until, lambda: not state.connection.down)
        with pytest.raises(BudgetExceededError):
            await state.spend.reserve("u", 0.5, 1.0)
        assert await state.spend.spent("u") == pytest.approx(0.9)
        state.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: the worst kind of dead Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def test_a_silent_redis_costs_one_timeout_per_outage_not_per_request(silent_port, prefix):
    state = state_from_url(f"redis://127.0.0.1:{silent_port}/0", prefix=prefix)
    assert state.flags.current() == FlagState()
    durations = []
    for _ in range(20):
        started = time.monotonic()
        state.spend.add("u", 0.001)
        with pytest.raises(BudgetUnavailableError):  # never read u's spend: no share to take
            await state.spend.reserve("u", 0.001, 1.0)
        durations.append(time.monotonic() - started)
    assert max(durations) < 0.5
    assert sum(d > 0.1 for d in durations) <= 1
    assert await state.spend.spent("u") == pytest.approx(0.02)
    state.close()


def test_garbage_in_the_flags_hash_keeps_the_last_flags(redis_server, prefix, caplog):
    state = state_from_url(redis_server.url, prefix=prefix)
    state.flags.set_percent(25)
    raw = redis.Redis.from_url(redis_server.url)
    raw.hset(f"{prefix}flags", "percent", "banana")
    with pytest.raises(StateUnavailableError, match="unreadable"):
        state.flags.read()
    time.sleep(0.5)  # a few syncer rounds
    assert state.flags.current().percent == 25
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    raw.close()
    state.close()


@pytest.mark.parametrize(
    "url", ["redis://user:s3cret-pass@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=s3cret-pass"]
)
def test_the_redis_url_password_never_reaches_logs_or_repr(url, prefix, caplog):
    state = state_from_url(url, prefix=prefix)
    assert state.flags.current() == FlagState()
    with pytest.raises(StateUnavailableError) as info:
        state.flags.set_enabled(False)
    shown = [repr(state.flags), repr(state.spend), state.location, str(info.value)]
    shown += [r.getMessage() for r in caplog.records]
    assert caplog.records and all("s3cret-pass" not in text for text in shown)
    state.close()


# -- the CLI --------------------------------------------------------------------------------------


def test_the_rollout_cli_changes_the_shared_store(redis_server, runner, monkeypatch):
    from lucky_litellm import set_default_models
    from lucky_litellm.cli import main

    monkeypatch.setenv("LUCKY_STATE_URL", redis_server.url)
    for args in (["percent", "30"], ["add-user", "researcher-9"], ["disable"]):
        result = runner.invoke(main, ["rollout", *args])
        assert result.exit_code == 0, result.output
        set_default_models(None)  # each command a fresh process, as from a shell
    flags = state_from_url(redis_server.url).flags.current()
    assert (flags.percent, flags.test_users, flags.enabled) == (30, frozenset({"researcher-9"}), False)
    status = runner.invoke(main, ["rollout", "status"])
    assert "researcher-9" in status.output and redis_server.url in status.output


@pytest.fixture
def runner(monkeypatch):
    from lucky_litellm import set_default_models

    monkeypatch.delenv("LUCKY_STATE_URL", raising=False)
    monkeypatch.delenv("LUCKY_MODELS_CONFIG", raising=False)
    set_default_models(None)
    yield CliRunner()
    set_default_models(None)


def test_a_rollout_change_without_a_shared_store_says_so_and_fails(runner):
    from lucky_litellm.cli import main

    result = runner.invoke(main, ["rollout", "disable"])
    assert result.exit_code == 1
    assert "affect nothing outside this CLI process" in result.output
    assert "Nothing was changed" in result.output
    local = runner.invoke(main, ["rollout", "disable", "--local"])
    assert local.exit_code == 0, local.output
    assert "enabled: False" in local.output and "this CLI process only" in local.output


def test_rollout_status_says_where_it_reads_from(runner):
    from lucky_litellm.cli import main

    result = runner.invoke(main, ["rollout", "status"])
    assert result.exit_code == 0
    assert "memory (this process only" in result.output


def test_rollout_status_fails_when_the_shared_store_is_unreachable(runner, monkeypatch):
    """Regression: it printed built-in defaults (`enabled: True, percent: 100`) and exited 0."""
    from lucky_litellm.cli import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LUCKY_STATE_URL", f"redis://127.0.0.1:{port}/0")
    result = runner.invoke(main, ["rollout", "status"])
    assert result.exit_code == 1
    assert "reachable: False" in result.output and "unreachable" in result.output
