"""Guarded rollout, operated: calls recorded on both paths, decisions taken once across processes
and applied to the flags, feedback stored with its call, and the CLI (real redis-server, real
HTTP to the fake upstream, real subprocesses)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

import lucky_litellm as ll
from lucky_litellm import Models, routing_of
from lucky_litellm.errors import ConfigError, StateUnavailableError
from lucky_litellm.guard.control import guard_history, guard_status, start_guard, stop_guard
from lucky_litellm.guard.store import FeedbackError, GuardError, GuardState
from lucky_litellm.rollout import Rollout
from lucky_litellm.state import State, state_from_url
from lucky_litellm.testing import Behavior, FakeUpstream

from .conftest import MESSAGES, PLANTED_KEYS, upstream_config

LEGACY_MODEL = "gpt-4.1-mini"
"""What the upstream sees on the legacy path: the concrete model the code names."""
REGISTRY_MODEL = "openai/gpt-oss-120b"
"""What it sees on the registry path: tier medium of the active provider (groq)."""
SPEC = "openai/gpt-4.1-mini"

QUICK = {"stages": [25, 50, 100], "minCalls": 30, "minSeconds": 0, "metrics": {"error_rate": "+50pp"}}
"""A policy that decides after a few dozen calls per path (the statistic needs 30)."""
NEVER = {"stages": [50, 100], "minCalls": 100_000, "metrics": {"error_rate": "+50pp"}}
"""A policy that records but never advances in a test's lifetime."""


def build(upstream: FakeUpstream, state: State) -> Rollout:
    """The migration of the tests: code names openai/gpt-4.1-mini (legacy), the registry runs
    tier medium of the active provider, groq (another upstream model, so paths can differ)."""
    config = upstream_config(upstream, provider="groq")
    return Rollout(Models(config, environ=dict(PLANTED_KEYS), state=state))


def users_on(rollout: Rollout, path: str, count: int, tag: str = "") -> list[str]:
    found = [u for u in (f"user-{tag}{i}" for i in range(count * 20)) if rollout.decide(u).path == path]
    assert len(found) >= count
    return found[:count]


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def counters(state: State) -> tuple[Any, Any]:
    """(legacy, registry) summaries of the current stage, after pushing this process's calls."""
    state.guard.flush()
    guard = state.guard.read()
    return state.guard.summaries(guard.run_id, guard.stage_index)


# -- recording ------------------------------------------------------------------------------------


async def test_without_a_guard_nothing_is_recorded_and_the_request_path_checks_one_attribute(
    state, fake_upstream
):
    rollout = build(fake_upstream, state)
    assert state.guard.recording is None
    response = await rollout.complete(SPEC, MESSAGES, user_id="someone")
    assert routing_of(response).request_id is None  # nothing added to the call either
    assert state.guard.history() == []


async def test_calls_on_both_paths_are_recorded_with_outcome_latency_and_cost(state, fake_upstream):
    rollout = build(fake_upstream, state)
    start_guard(NEVER, models=rollout.models)
    legacy_users, registry_users = users_on(rollout, "legacy", 4), users_on(rollout, "registry", 3)

    async def call(user: str) -> None:
        with contextlib.suppress(Exception):  # the legacy path's scripted failures
            await rollout.complete(SPEC, MESSAGES, user_id=user, max_retries=0)

    fake_upstream.script(LEGACY_MODEL, Behavior(latency_ms=40))
    await asyncio.gather(*(call(u) for u in legacy_users[:2] + registry_users))
    fake_upstream.script(LEGACY_MODEL, Behavior(status=400))
    await asyncio.gather(*(call(u) for u in legacy_users[2:]))

    legacy, registry = counters(state)
    assert (legacy.calls, legacy.errors) == (4, 2)
    assert (registry.calls, registry.errors) == (3, 0)
    assert fake_upstream.call_count(REGISTRY_MODEL) == 3
    assert legacy.latency_quantile(0.5) >= 0.04  # the successful legacy calls took 40 ms
    assert registry.cost_sum > 0 and legacy.cost_sum > 0


async def test_a_failed_registry_path_is_an_error_but_a_callers_refusal_is_not(state, fake_upstream):
    from lucky_litellm import ModelSpecError

    rollout = build(fake_upstream, state)
    start_guard(NEVER, models=rollout.models)
    fake_upstream.script(REGISTRY_MODEL, Behavior(status=503))
    user = users_on(rollout, "registry", 1)[0]
    with pytest.raises(Exception):  # noqa: B017 - whichever error the strategy ends with
        await rollout.complete(SPEC, MESSAGES, user_id=user)
    with pytest.raises(ModelSpecError):
        await rollout.complete("not a spec", MESSAGES, user_id=user)
    _, registry = counters(state)
    assert (registry.calls, registry.errors) == (1, 1)


async def test_a_batch_that_landed_but_whose_reply_was_lost_is_counted_once(
    redis_server, prefix, fake_upstream
):
    """A loaded machine: Redis applied a push, the reply came after the socket timeout, so the
    recorder kept the batch and sent it again. It used to be counted twice."""
    state = state_from_url(redis_server.url, prefix=prefix)
    rollout = build(fake_upstream, state)
    start_guard(NEVER, models=rollout.models)
    push, lost = state.guard.push, []

    def push_losing_the_first_reply(run_id: str, batch: Any) -> None:
        push(run_id, batch)
        if not lost:  # whichever thread pushes first: the syncer's tick, or the flush below
            lost.append(batch.id)
            raise state.connection.unavailable()

    state.guard.push = push_losing_the_first_reply  # type: ignore[method-assign]
    await rollout.complete(SPEC, MESSAGES, user_id=users_on(rollout, "registry", 1)[0])
    with contextlib.suppress(StateUnavailableError):
        state.guard.flush()
    legacy, registry = counters(state)  # pushes the kept batch again
    assert len(lost) == 1
    assert (legacy.calls, registry.calls) == (0, 1)
    state.close()


async def test_get_model_calls_are_recorded_too(state, fake_upstream):
    rollout = build(fake_upstream, state)
    start_guard(NEVER, models=rollout.models)
    user = users_on(rollout, "registry", 1)[0]
    await rollout.get_model(SPEC, user_id=user)(MESSAGES)
    assert counters(state)[1].calls == 1


# -- feedback -------------------------------------------------------------------------------------


async def test_feedback_is_stored_with_its_calls_path_and_stage(state, fake_upstream):
    rollout = build(fake_upstream, state)
    start_guard(NEVER, models=rollout.models)
    legacy_user, registry_user = users_on(rollout, "legacy", 1)[0], users_on(rollout, "registry", 1)[0]
    legacy_call = await rollout.complete(SPEC, MESSAGES, user_id=legacy_user)
    registry_call = await rollout.complete(SPEC, MESSAGES, user_id=registry_user, request_id="req-7")
    assert routing_of(registry_call).request_id == "req-7"
    generated = routing_of(legacy_call).request_id
    assert generated  # a call under a guard always gets one, so feedback can name it

    assert await ll.feedback(generated, "thumbs_up", 0, models=rollout.models) is True
    assert ll.feedback_sync("req-7", "thumbs_up", 1, models=rollout.models) is True
    assert ll.feedback_sync("req-7", "thumbs_up", 1, models=rollout.models) is True

    legacy, registry = counters(state)
    assert (legacy.feedback["thumbs_up"].n, legacy.feedback["thumbs_up"].total) == (1, 0)
    assert (registry.feedback["thumbs_up"].n, registry.feedback["thumbs_up"].total) == (2, 2)
    assert ll.feedback_sync("never-made", "thumbs_up", 1, models=rollout.models) is False


def test_feedback_for_an_unknown_call_says_why_at_debug(caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="lucky_litellm.guard"):
        assert ll.feedback_sync("made-elsewhere", "thumbs_up", 1, models=Models({}, environ={})) is False
    [record] = [r for r in caplog.records if r.name == "lucky_litellm.guard"]
    assert "made-elsewhere" in record.getMessage() and "pass models=" in record.getMessage()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("", "thumbs_up", 1), "request_id"),
        (("r", "has space", 1), "name"),
        (("r", "thumbs_up", float("nan")), "value"),
        (("r", "thumbs_up", True), "value"),
        (("r", "thumbs_up", "1"), "value"),
    ],
)
def test_bad_feedback_is_a_typed_error_naming_the_argument(arguments, named):
    with pytest.raises(FeedbackError, match=named):
        ll.feedback_sync(*arguments, models=Models({}, environ={}))


def test_feedback_for_a_call_not_yet_pushed_follows_it_into_the_store(redis_server, prefix):
    from lucky_litellm.guard.summary import CallObservation

    state = state_from_url(redis_server.url, prefix=prefix)
    try:
        start_guard(NEVER, models=Models({}, environ={}, state=state))
        recorder = state.guard.recording
        assert recorder is not None
        recorder.record(CallObservation("registry", True, 0.2, 0.001), "queued-1")
        assert state.guard.add_feedback("queued-1", "score", 4.0) is True  # before any push
        _, registry = counters(state)
        assert registry.calls == 1 and registry.feedback["score"].total == 4.0
    finally:
        state.close()


# -- decisions ------------------------------------------------------------------------------------


async def test_a_worse_registry_path_is_rolled_back_with_the_kill_switch(state, fake_upstream):
    rollout = build(fake_upstream, state)
    start_guard({**QUICK, "stages": [50, 100]}, models=rollout.models)
    fake_upstream.script(REGISTRY_MODEL, Behavior(status=400))  # fails at once, no retries
    legacy_users, registry_users = users_on(rollout, "legacy", 40), users_on(rollout, "registry", 40)

    async def call(user: str) -> None:
        with contextlib.suppress(Exception):  # the registry path's failures
            await rollout.complete(SPEC, MESSAGES, user_id=user, max_retries=0)

    await asyncio.gather(*(call(u) for u in legacy_users + registry_users))
    state.guard.flush()
    state.guard.evaluate()  # what the syncer (or, in memory, the next call) does every second

    flags = state.flags.read()
    assert flags.enabled is False  # the kill switch: everyone on legacy, test users too
    guard = state.guard.read()
    assert guard.status == "rolled_back"
    [event] = [e for e in state.guard.history() if e["action"] == "rollback"]
    error_rate = next(f for f in event["decision"]["figures"] if f["metric"] == "error_rate")
    assert error_rate["verdict"] == "worse" and error_rate["registry"] == 1.0
    until(lambda: state.guard.recording is None)  # the guard is over: calls are not recorded any more


async def test_a_path_no_worse_advances_stage_by_stage_to_100_percent(state, fake_upstream):
    rollout = build(fake_upstream, state)
    start_guard(QUICK, models=rollout.models)
    batch = 0
    while state.guard.read().active:
        batch += 1
        assert batch < 40, "the guard did not finish"
        users = [f"u{batch}-{i}" for i in range(60)]
        await asyncio.gather(*(rollout.complete(SPEC, MESSAGES, user_id=u) for u in users))
        state.guard.flush()
        state.guard.evaluate()
    events = [e["action"] for e in state.guard.history()]
    assert events == ["start", "advance", "finish"]
    assert state.guard.read().status == "completed"
    assert (state.flags.read().percent, state.flags.read().enabled) == (100, True)


async def test_a_decision_is_a_log_line_and_a_span_event_with_its_figures(fake_upstream, caplog):
    from .test_telemetry import _traced

    traced = _traced()
    config = upstream_config(fake_upstream, provider="groq")
    rollout = Rollout(Models(config, environ=dict(PLANTED_KEYS), telemetry=traced.telemetry))
    start_guard({**QUICK, "stages": [50, 100]}, models=rollout.models)
    fake_upstream.script(REGISTRY_MODEL, Behavior(status=400))
    users = users_on(rollout, "legacy", 35) + users_on(rollout, "registry", 35)
    with caplog.at_level("INFO", logger="lucky_litellm.guard"):
        for user in users:
            with contextlib.suppress(Exception):
                await rollout.complete(SPEC, MESSAGES, user_id=user, max_retries=0)
        rollout.models.state.guard.evaluate()
    assert "guarded rollout: rollback at stage 1 (50 %) -> kill switch [error_rate worse]" in caplog.text
    span = traced.span("lucky.guard.decision")
    [event] = span.events
    assert event.name == "lucky.guard.rollback"
    figures = json.loads(str((event.attributes or {})["lucky.guard.figures"]))
    assert figures[0]["metric"] == "error_rate" and figures[0]["verdict"] == "worse"


def test_each_decision_is_applied_by_exactly_one_of_many_racing_evaluators(redis_server, prefix):
    states = [state_from_url(redis_server.url, prefix=prefix) for _ in range(4)]
    try:
        guard = states[0].guard
        guard.start(guard_policy({**QUICK, "stages": [25, 50]}))
        run = guard.read().run_id
        from lucky_litellm.guard.summary import CallObservation, PathSummary

        for path in ("legacy", "registry"):
            increments = PathSummary.increments(CallObservation(path, True, 0.01, 0.001))
            for _ in range(40):
                guard.add_counters(run, 0, path, increments)
        barrier = threading.Barrier(len(states))
        applied: list[Any] = []

        def evaluate(state: State) -> None:
            barrier.wait()
            applied.append(state.guard.evaluate())

        threads = [threading.Thread(target=evaluate, args=(s,)) for s in states]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([event for event in applied if event is not None]) == 1
        assert [e["action"] for e in guard.history()] == ["start", "advance"]
        assert states[1].flags.read().percent == 50
    finally:
        for state in states:
            state.close()


def guard_policy(raw: dict[str, Any]) -> Any:
    from lucky_litellm.guard.control import as_policy

    return as_policy(raw)


REPLICA = textwrap.dedent(
    """
    import asyncio, sys, time
    from lucky_litellm import Models
    from lucky_litellm.rollout import Rollout
    from lucky_litellm.state import state_from_url

    url, prefix, base, name = sys.argv[1:5]
    state = state_from_url(url, prefix=prefix)
    state.guard.evaluate_every_s = 0.01  # race the other replica as often as possible
    config = {"provider": "groq", "providers": {"openai": {"apiBase": base}, "groq": {"apiBase": base},
              "anthropic": {"enabled": False}, "openrouter": {"enabled": False}}}
    keys = {"OPENAI_API_KEY": "sk-test", "GROQ_API_KEY": "gsk-test"}
    rollout = Rollout(Models(config, environ=keys, state=state))

    async def main():
        await rollout.models.warm_up()  # litellm loaded before the race starts
        print("ready", flush=True)
        sys.stdin.readline()  # the guard is started
        deadline = time.monotonic() + 60
        batch = 0
        while time.monotonic() < deadline:
            batch += 1
            users = [f"{name}-{batch}-{i}" for i in range(20)]
            messages = [{"role": "user", "content": "hi"}]
            calls = (rollout.complete("openai/gpt-4.1-mini", messages, user_id=u) for u in users)
            await asyncio.gather(*calls)
            if batch % 3 == 0 and not (await asyncio.to_thread(state.guard.read)).active:
                break
        time.sleep(0.3)  # a last tick: a decision in flight lands
        print("done", batch, flush=True)

    asyncio.run(main())
    state.close()
    """
)


def test_two_replicas_sharing_redis_take_every_decision_once(redis_server, prefix, fake_upstream):
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, redis_server.url, prefix, fake_upstream.base_url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    admin = state_from_url(redis_server.url, prefix=prefix)
    try:
        for replica in replicas:
            assert replica.stdout is not None and replica.stdout.readline().strip() == "ready"
        ready = time.monotonic()
        admin.guard.start(guard_policy({**QUICK, "stages": [50, 60, 100]}))
        start_version = admin.flags.read().version
        for replica in replicas:
            assert replica.stdin is not None
            replica.stdin.write("go\n")
            replica.stdin.flush()
        outputs = [replica.communicate(timeout=90)[0] for replica in replicas]
        assert all(out.startswith("done") for out in outputs), outputs
        print(f"decisions taken in {time.monotonic() - ready:.1f} s: {outputs}")

        history = admin.guard.history()
        decisions = [e for e in history if e["action"] != "start"]
        assert [(e["action"], e["stage_index"]) for e in decisions] == [
            ("advance", 0),
            ("finish", 1),
        ]
        assert len({e["version"] for e in history}) == len(history)
        flags = admin.flags.read()
        assert flags.percent == 100
        assert flags.version == start_version + len(decisions)  # the percentage moved once per decision
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.kill()
                replica.wait()
        admin.close()


# -- commands and errors --------------------------------------------------------------------------


def test_a_second_start_is_refused_while_a_guard_runs_and_stop_needs_one(state):
    models = Models({}, environ={}, state=state)
    start_guard(NEVER, models=models)
    with pytest.raises(GuardError, match="already running"):
        start_guard(NEVER, models=models)
    stopped = stop_guard(models=models)
    assert isinstance(stopped, GuardState) and stopped.status == "stopped"
    with pytest.raises(GuardError, match="no guard is running"):
        stop_guard(models=models)
    assert [e["action"] for e in guard_history(models=models)] == ["start", "stop"]


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"stages": [5, 1]}, "stages"),
        ({"metrics": {"error_rate": "lots"}}, "metrics.error_rate"),
        ({"minCalls": 0}, "minCalls"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_a_bad_policy_is_a_config_error_naming_the_field_and_starts_nothing(state, policy, field):
    models = Models({}, environ={}, state=state)
    with pytest.raises(ConfigError, match=field):
        start_guard(policy, models=models)
    assert state.guard.read().status == "idle"


def test_status_of_a_running_guard_has_figures_for_its_current_stage(state):
    models = Models({}, environ={}, state=state)
    start_guard(NEVER, models=models)
    report = guard_status(models=models)
    assert [s.state for s in report.stages] == ["current", "pending"]
    assert [f["metric"] for f in report.stages[0].figures] == ["error_rate"]
    json.dumps(report.as_dict())  # the CLI's --json


# -- the CLI ---------------------------------------------------------------------------------------


def cli(runner: CliRunner, *args: str, code: int = 0) -> str:
    from lucky_litellm import set_default_models
    from lucky_litellm.cli import main

    set_default_models(None)  # each command is a fresh CLI process
    try:
        result = runner.invoke(main, ["rollout", *args])
    finally:
        set_default_models(None)
    assert result.exit_code == code, result.output
    return result.output


def test_cli_start_status_stop_history_and_html(redis_server, tmp_path, fake_upstream):
    url = redis_server.url  # the CLI's default prefix: no other test of this module uses it
    policy = tmp_path / "policy.yaml"
    policy.write_text("stages: [10, 50, 100]\nminCalls: 50\nmetrics: {error_rate: +2pp}\n")
    out = cli(
        CliRunner(), "--state-url", url, "guard", "start", "--policy", str(policy), "--threshold", "cost=5%"
    )
    assert "stage 1 at 10 %" in out
    runner = CliRunner(env={"LUCKY_STATE_URL": url})
    shared = state_from_url(url)
    try:
        assert shared.flags.read().percent == 10
        rollout = build(fake_upstream, shared)
        asyncio.run(_calls(rollout, 40))
        shared.guard.flush()

        status = cli(runner, "guard", "status", "--html", str(tmp_path / "report.html"))
        assert "stage 1: 10 %" in status and "error_rate" in status and "cost" in status
        assert "┆" in status  # the threshold drawn next to each interval
        page = (tmp_path / "report.html").read_text()
        assert page.count("<svg") == 1 and "error_rate" in page and "cost" in page
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "<script" not in page and "src=" not in page  # self-contained

        cli(runner, "guard", "start", code=1)  # one guard at a time
        assert "stopped at stage 1" in cli(runner, "guard", "stop")
        history = cli(runner, "history")
        assert "start" in history and "stop" in history
        events = [json.loads(line) for line in cli(runner, "history", "--json").splitlines()]
        assert [e["action"] for e in events] == ["start", "stop"]
    finally:
        shared.close()


async def _calls(rollout: Rollout, count: int) -> None:
    await asyncio.gather(*(rollout.complete(SPEC, MESSAGES, user_id=f"cli-{i}") for i in range(count)))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--stages", "1,abc"], "--stages"),
        (["--threshold", "error_rate"], "--threshold"),
        (["--threshold", "error_rate=lots"], "metrics.error_rate"),
        (["--min-calls", "0"], "minCalls"),
    ],
)
def test_cli_bad_policy_input_names_the_field_and_starts_nothing(redis_server, args, named):
    runner = CliRunner(env={"LUCKY_STATE_URL": redis_server.url})
    out = cli(runner, "guard", "start", *args, code=1)
    assert named in out and "Traceback" not in out


def test_cli_refuses_to_start_a_guard_no_serving_process_would_see(tmp_path):
    runner = CliRunner(env={"LUCKY_STATE_URL": ""})
    assert "no shared state store" in cli(runner, "guard", "start", code=1)


def test_cli_policy_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    out = cli(CliRunner(), "guard", "start", "--policy", str(bad), code=1)
    assert "bad.yaml" in out


def test_status_at_100_columns_keeps_every_header_whole_and_the_chart_uncut(state):
    import io

    from rich.console import Console

    from lucky_litellm.guard.report import render_terminal

    models = Models({}, environ={}, state=state)
    metrics = {"error_rate": "+50pp", "p95_latency": "+20%", "cost": "+10%", "feedback.thumbs_up": "-0.1"}
    start_guard({**NEVER, "metrics": metrics}, models=models)
    out = io.StringIO()
    render_terminal(guard_status(models=models), Console(width=100, file=out, color_system=None))
    text = out.getvalue()
    [header] = [line for line in text.splitlines() if "METRIC" in line]
    for column in (
        "METRIC",
        "LEGACY",
        "REGISTRY",
        "DIFF",
        "INTERVAL",
        "THRESHOLD",
        "VERDICT",
        "REGISTRY − LEGACY",
    ):
        assert column in header, text
    assert "…" not in text, text
    import re

    [row] = [line for line in text.splitlines() if line.lstrip().startswith("error_rate")]
    assert re.search(r"[·│┆]{17,}", row), text  # the chart (no figures yet: dots) drawn whole


def test_cli_policy_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("stages:\n  - 5\n  - 50\n  - 150\nmetrics:\n  p95_latency: +20\n  errr: +1pp\n")
    out = cli(CliRunner(), "guard", "start", "--policy", str(bad), code=1)
    assert f"{bad}:4" in out and "stages.2" in out and "must be at most 100" in out
    assert f"{bad}:6" in out and "p95_latency needs a unit" in out
    assert f"{bad}:7" in out and "unknown metric 'errr'" in out


def test_cli_policy_file_may_be_a_models_yaml_and_keeps_its_lines(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("rollout:\n  guard:\n    minCalls: 0\n")
    out = cli(CliRunner(), "guard", "start", "--policy", str(bad), code=1)
    assert f"{bad}:3" in out and "minCalls" in out
