"""A process's first call: loading litellm (seconds) must not eat the call's deadline."""

from __future__ import annotations

import os
import subprocess
import sys

from lucky_litellm.testing import FakeUpstream

SCRIPT = """
import asyncio, sys
import lucky_litellm as ll

assert "litellm" not in sys.modules
models = ll.Models({"provider": "local"}, environ={"LUCKY_LOCAL_API_BASE": sys.argv[1]})
experiment = {"providers": ["local/llama3.2"], "timeout": float(sys.argv[2])}
models.load_user_config("me", {"experiments": {"x": experiment}})
response = asyncio.run(models.complete("user:me:x", [{"role": "user", "content": "hi"}]))
print(ll.routing_of(response).winner)
"""


IMPORT_TIME = "import time; t = time.perf_counter(); import litellm; print(time.perf_counter() - t)"


def test_first_call_of_a_process_gets_its_whole_deadline(fake_upstream: FakeUpstream) -> None:
    """It used to fail with "deadline reached before the call started": litellm's import ran
    inside the first request's deadline (5 s and more on a busy machine)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # the deadline is half of what loading litellm takes in a new process on this machine now (at
    # least the 3 s it was): loading would spend it, the call itself never does, loaded or not
    loading = subprocess.run(
        [sys.executable, "-c", IMPORT_TIME], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    timeout_ms = max(3000.0, float(loading.stdout) * 1000 / 2)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, fake_upstream.base_url, str(timeout_ms)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "local/llama3.2"


def test_the_warm_up_thread_is_a_daemon_joined_at_exit_within_a_bound(monkeypatch) -> None:
    """As a daemon left running, a CLI that failed fast exited mid-import, and litellm's client
    finalizers then deadlocked the interpreter's shutdown on the import lock (1 run in 6); as a
    non-daemon, exiting waited for it without a timeout. Now exiting joins it, within a bound."""
    import threading

    from lucky_litellm import engine

    started: list[threading.Thread] = []
    hooks: list[object] = []
    real_start = threading.Thread.start

    def record(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(engine, "_warm", None)
    monkeypatch.setattr(engine, "_load", lambda: None)
    monkeypatch.setattr(threading.Thread, "start", record)
    monkeypatch.setattr(engine, "register_exit_hook", hooks.append)
    engine.start_warm_up().result(timeout=5)
    [warm_up] = [thread for thread in started if thread.name == "lucky-litellm-warm-up"]
    assert warm_up.daemon
    [hook] = hooks
    assert getattr(hook, "func", None) is engine._join_at_exit


HUNG_WARM_UP = """
import threading, time
from lucky_litellm import engine
engine.WARM_UP_EXIT_TIMEOUT_S = 0.5
engine._load = threading.Event().wait  # an import that never ends
engine.start_warm_up()
print(time.time(), flush=True)
"""


def test_exit_waits_for_a_stuck_warm_up_only_up_to_its_bound() -> None:
    process = subprocess.Popen([sys.executable, "-c", HUNG_WARM_UP], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        process.stdout.readline()
        assert process.wait(timeout=60) == 0  # a non-daemon warm-up thread kept it forever
    finally:
        process.kill()
