"""The sync bridge: `complete_sync` runs coroutines on one long-lived background event loop.

litellm's HTTP clients are bound to the loop that created them, so a fresh `asyncio.run` per call
would keep rebuilding them (and their connections); one loop in a daemon thread keeps them warm.

At interpreter exit the loop is wound down the way `asyncio.run` ends, within `EXIT_TIMEOUT_S`,
before the interpreter finalizes: its tasks (litellm's logging tasks, a race's cancelled loser)
are cancelled and awaited, the loop stops and its thread is joined. Left running, the daemon
thread would be killed wherever it stood when finalization began, possibly inside a lazy import
or holding a lock, and a finalizer that needs that lock (litellm's HTTP clients import and log
when collected) would then wait forever for a thread that no longer exists: the process printed
its answer and never exited. Whatever litellm still had queued is flushed by its own exit hook,
on a fresh loop, as it does after `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["EXIT_TIMEOUT_S", "run_sync"]

T = TypeVar("T")

EXIT_TIMEOUT_S = 10.0
"""How long winding the bridge's loop down may hold up interpreter exit (milliseconds normally; a
machine under heavy load may take seconds to run the cancelled tasks' last steps)."""

_sync_loop: asyncio.AbstractEventLoop | None = None
_sync_thread: threading.Thread | None = None
_sync_lock = threading.Lock()
_exiting = False
_exit_hook_installed = False


def register_exit_hook(hook: Callable[[], object]) -> None:
    """Run `hook` when the interpreter starts exiting, before non-daemon threads are joined and
    before `atexit` handlers (litellm's among them) and `concurrent.futures`' executor shutdown
    run: threading's own exit hooks (`threading._register_atexit`, what `concurrent.futures`
    uses). Falls back to `atexit` where that is missing or already closed."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # "can't register atexit after shutdown"
            register(hook)
            return
    atexit.register(hook)


def _background_loop() -> asyncio.AbstractEventLoop:
    global _sync_loop, _sync_thread, _exit_hook_installed
    with _sync_lock:
        if _sync_loop is None or _sync_loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="lucky-litellm-sync", daemon=True)
            thread.start()
            _sync_loop, _sync_thread = loop, thread
            if not _exit_hook_installed:
                register_exit_hook(stop_background_loop)
                _exit_hook_installed = True
        return _sync_loop


async def _cancel_tasks(timeout: float) -> None:
    """What `asyncio.run` does once its main coroutine returned: cancel what is left, give it
    `timeout` to unwind, and finalize async generators."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    with contextlib.suppress(Exception):
        await asyncio.get_running_loop().shutdown_asyncgens()


def stop_background_loop(timeout: float = EXIT_TIMEOUT_S) -> bool:
    """Wind the bridge's loop down and join its thread, within `timeout` whatever its tasks do;
    True if the thread is gone. Called at interpreter exit; later `run_sync` calls (from an
    `atexit` handler) run on a loop of their own in the calling thread."""
    global _exiting
    with _sync_lock:
        _exiting = True
        loop, thread = _sync_loop, _sync_thread
    if loop is None or thread is None or loop.is_closed():
        return True
    deadline = time.monotonic() + timeout
    if thread.is_alive():
        try:
            winding = asyncio.run_coroutine_threadsafe(_cancel_tasks(timeout * 0.5), loop)
            winding.result(timeout=timeout * 0.6)
        except Exception:  # timed out, or the loop is no longer running: stop it regardless
            pass
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(loop.stop)
        thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        return False  # a task blocks the loop: leave it, a daemon cannot keep the process
    with contextlib.suppress(Exception):
        loop.close()
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the bridge's loop and wait for it; refused from inside a running loop (it
    would block that loop: use `await` there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("complete_sync was called from a running event loop; use `await complete(...)`")
    if _exiting:  # the interpreter is exiting: no new background thread now
        return asyncio.run(coro)
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()
