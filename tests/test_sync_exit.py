"""A process using `complete_sync` exits, and promptly: the bridge's loop is wound down at exit.

Regression: a script that printed `complete_sync`'s answer then hung at exit forever (one thread
left, waiting on a lock): the bridge's daemon thread, still running litellm's logging tasks,
was killed where it stood when the interpreter began finalizing, and a finalizer then waited
for a lock it held.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from lucky_litellm import sync
from lucky_litellm.sync import EXIT_TIMEOUT_S, run_sync, stop_background_loop
from lucky_litellm.testing import FakeUpstream

LUCKY = """
import atexit, sys, threading, time

def report():  # registered first, so it runs after every other exit hook
    alive = [t.name for t in threading.enumerate() if t.name.startswith("lucky-litellm")]
    print("lucky threads at exit:", alive, flush=True)

atexit.register(report)
import lucky_litellm as ll

models = ll.Models({"provider": "local"}, environ={"LUCKY_LOCAL_API_BASE": sys.argv[1]})
for _ in range(3):
    resp = models.complete_sync("local/llama3.2", [{"role": "user", "content": "hi"}])
print(resp.choices[0].message.content, flush=True)
print(time.time(), flush=True)
"""

PLAIN = """
import asyncio, sys, time
import litellm

async def main():
    for _ in range(3):
        resp = await litellm.acompletion(
            "openai/llama3.2", [{"role": "user", "content": "hi"}], api_base=sys.argv[1], api_key="x"
        )
    return resp

resp = asyncio.run(main())
print(resp.choices[0].message.content, flush=True)
print(time.time(), flush=True)
"""


def _exit_latency(script: str, base_url: str) -> tuple[float, str]:
    """Seconds from the script's last line to its exit, as its parent sees it; and its output."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-c", script, base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        answer = process.stdout.readline()
        last_line = float(process.stdout.readline())
        rest, errors = process.communicate(timeout=120)  # the hang this guards against was forever
        exited = time.time()
    finally:
        process.kill()
    assert process.returncode == 0, errors[-2000:]
    return exited - last_line, answer + rest


def test_a_complete_sync_script_exits_about_as_promptly_as_the_same_calls_without_lucky(
    fake_upstream: FakeUpstream,
) -> None:
    plain, _ = _exit_latency(PLAIN, fake_upstream.base_url)  # the interpreter's own teardown, now
    lucky, output = _exit_latency(LUCKY, fake_upstream.base_url)
    assert output.startswith("answer from llama3.2")
    # the bridge's thread is gone before atexit handlers (litellm's) and finalization run
    assert "lucky threads at exit: []" in output, output
    # winding the loop down holds the exit up by at most EXIT_TIMEOUT_S; slack for the load to
    # differ between the two runs
    assert lucky - plain < EXIT_TIMEOUT_S + max(5.0, plain), (lucky, plain)


@pytest.fixture
def own_bridge(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    """A bridge loop of this test's own (the process's shared one is left alone)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="lucky-litellm-sync-test", daemon=True)
    thread.start()
    monkeypatch.setattr(sync, "_sync_loop", loop)
    monkeypatch.setattr(sync, "_sync_thread", thread)
    monkeypatch.setattr(sync, "_exiting", False)
    yield loop, thread
    if not loop.is_closed() and not thread.is_alive():
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()

        async def unwound() -> None:
            await asyncio.gather(*left, return_exceptions=True)

        loop.run_until_complete(unwound())
        loop.close()


def test_winding_down_cancels_what_is_left_on_the_loop_and_joins_its_thread(own_bridge) -> None:
    loop, thread = own_bridge
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = asyncio.run_coroutine_threadsafe(_start(forever), loop)
    started.result(timeout=30)
    assert stop_background_loop(timeout=30) is True
    assert cancelled.is_set()
    assert not thread.is_alive()
    assert loop.is_closed()


async def _start(factory) -> None:  # type: ignore[no-untyped-def]
    asyncio.get_running_loop().create_task(factory())
    await asyncio.sleep(0)


def test_winding_down_a_blocked_loop_gives_up_within_its_timeout(own_bridge) -> None:
    loop, thread = own_bridge
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait)  # a callback blocking the loop's thread
    try:
        started = time.monotonic()
        assert stop_background_loop(timeout=0.5) is False
        assert time.monotonic() - started < 0.5 + 5.0  # slack for a loaded machine, not a hang
        assert thread.is_alive() and not loop.is_closed()
    finally:
        release.set()
        thread.join(30)


AFTER_EXIT = """
import asyncio, atexit, threading
from lucky_litellm.sync import run_sync

async def where():
    return threading.current_thread().name

run_sync(where())
atexit.register(lambda: print("at exit ran on", run_sync(where()), flush=True))
"""


def test_a_call_from_an_atexit_handler_runs_without_a_new_background_thread() -> None:
    result = subprocess.run([sys.executable, "-c", AFTER_EXIT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "at exit ran on MainThread"


def test_run_sync_still_refuses_a_running_loop() -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            run_sync(asyncio.sleep(0))

    asyncio.run(inside())
