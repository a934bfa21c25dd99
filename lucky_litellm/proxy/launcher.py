"""Start a real ``litellm --config ...`` proxy as a subprocess, for tests, benchmarks and demos.

    with ProxyProcess("configs/proxy.yaml", env={"LITELLM_MASTER_KEY": "sk-test", ...}) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-test")

The proxy runs in its own process group, so stopping it also stops any workers it forked; it is
stopped with SIGTERM, then SIGKILL after a grace period, also when startup fails. Readiness is
polled on ``/health/liveliness`` against a deadline; output goes to a log file whose tail is
quoted when the proxy does not come up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from ..errors import UsageError

__all__ = ["OFFLINE_ENV", "ProxyProcess", "free_port"]

OFFLINE_ENV: Mapping[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # never download the price map
    "LITELLM_LOG": "ERROR",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "DISABLE_ADMIN_UI": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
"""Environment of an `offline` proxy: quiet, no price-map download; DATABASE_URL and provider keys
are removed as well, so nothing can reach a real database or a paid API by accident."""

_REMOVED_ENV = ("DATABASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY")
_LOG_TAIL = 4000


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _litellm_command() -> list[str]:
    script = Path(sys.executable).with_name("litellm")
    if script.exists():
        return [str(script)]
    found = shutil.which("litellm")
    if found:
        return [found]
    return [sys.executable, "-m", "litellm.proxy.proxy_cli"]


class ProxyProcess:
    """One LiteLLM proxy subprocess bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
        extra_args: tuple[str, ...] = (),
        offline: bool = True,
    ) -> None:
        self.config = Path(config)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.extra_args = extra_args
        merged = dict(os.environ)
        if offline:
            for name in _REMOVED_ENV:
                merged.pop(name, None)
            merged.update(OFFLINE_ENV)
        merged.update(env or {})
        if not merged.get("LITELLM_MASTER_KEY"):
            raise UsageError("LITELLM_MASTER_KEY must be set: the proxy refuses to start without it")
        self.env = merged
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="litellm-proxy-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(self._log.name)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``) for `openai.OpenAI(base_url=...)`."""
        return f"{self.url}/v1"

    def start(self) -> ProxyProcess:
        if self.process is not None:
            raise RuntimeError("proxy already started")
        command = [
            *_litellm_command(),
            "--config",
            str(self.config),
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise TimeoutError(f"proxy not ready after {self.startup_timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        """The end of the proxy's output (stdout and stderr), while it has not been stopped."""
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after `stop_timeout_s`; safe to call twice."""
        process = self.process
        if process is not None and process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait(self.stop_timeout_s)
        if not self._log.closed:
            self._log.close()
            self.log_path.unlink(missing_ok=True)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # its own session: only the proxy and its workers

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
