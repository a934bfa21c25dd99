"""The sync bridge: `complete_sync` runs coroutines on one long-lived background event loop.

litellm's HTTP clients are bound to the loop that created them, so a fresh `asyncio.run` per call
would keep rebuilding them (and their connections); one loop in a daemon thread keeps them warm.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

_sync_loop: asyncio.AbstractEventLoop | None = None
_sync_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _sync_loop
    with _sync_lock:
        if _sync_loop is None or _sync_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="lucky-litellm-sync", daemon=True).start()
            _sync_loop = loop
        return _sync_loop


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
    return asyncio.run_coroutine_threadsafe(coro, _background_loop()).result()
