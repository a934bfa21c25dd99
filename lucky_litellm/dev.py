"""`lucky-litellm dev`: a local stand-in for the providers, so one's own first call needs no key.

It starts the fake OpenAI-compatible upstream (`lucky_litellm.testing.FakeUpstream`) on
127.0.0.1 and points the `local` provider at it through two environment variables:

    LUCKY_PROVIDER=local                          tiers resolve to the local provider's models
    LUCKY_LOCAL_API_BASE=http://127.0.0.1:PORT/v1  where the `local` provider sends its calls

Every `local/<model>` spec then answers (with a text naming the model), through real
`litellm.acompletion` calls over HTTP. Either the upstream stays in the foreground and the
variables are printed for another shell, or a given command runs with them set and the upstream
stops when it exits. The same `dev_environment` feeds the README test, so what the README
promises is what `dev` provides.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType

__all__ = ["dev_environment", "dev_upstream", "run_with", "serve_forever", "stop_signal"]

OFFLINE_COST_MAP = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
"""litellm reads its price map from the network at import unless told to use the bundled copy."""


def dev_environment(base_url: str) -> dict[str, str]:
    """The variables that send `local/...` specs and every tier to the upstream at `base_url`."""
    return {"LUCKY_PROVIDER": "local", "LUCKY_LOCAL_API_BASE": base_url}


@contextmanager
def dev_upstream(
    *, port: int = 0, latency_ms: float = 0.0, slow: Mapping[str, float] | None = None
) -> Iterator[str]:
    """Run the fake upstream while the block runs; yields its base URL (`.../v1`)."""
    from .testing import Behavior, FakeUpstream

    upstream = FakeUpstream(port=port, default=Behavior(latency_ms=latency_ms))
    for model, ms in (slow or {}).items():
        upstream.script(model, Behavior(latency_ms=ms))
    with upstream:
        yield upstream.base_url


def run_with(command: Sequence[str], base_url: str) -> int:
    """Run `command` with the dev variables set; returns its exit status (127: not found)."""
    environ = {**os.environ, **OFFLINE_COST_MAP, **dev_environment(base_url)}
    try:
        return subprocess.call(list(command), env=environ)
    except FileNotFoundError:
        return 127
    except KeyboardInterrupt:
        return 130


@contextmanager
def stop_signal() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM (Ctrl-C) sets while the block runs. The handlers are in
    place before the block's first line: whoever reads the printed variables may stop the
    upstream at once, and a signal that arrives before `serve_forever` waits is not lost."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_forever(stop: threading.Event) -> None:
    """Block until `stop` is set (see `stop_signal`), then return so the upstream is stopped
    cleanly."""
    while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
