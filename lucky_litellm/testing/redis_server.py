"""A real `redis-server` on a free 127.0.0.1 port, for tests of the shared flag store.

    with RedisServer() as server:
        store = RedisFlagStore(server.url)
        server.stop(); ...; server.start()     # same port again: clients reconnect

Persistence is off and the data directory is a temporary folder, so nothing outlives the server.
Without a `redis-server` binary, a test using it is skipped, except under ``CI=true`` where it
fails: CI installs the binary (``.ci/install-redis.sh``), so a missing one is a broken setup.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType

__all__ = ["RedisServer", "redis_server_binary", "require_redis_server"]

_MISSING = "redis-server is not installed (run .ci/install-redis.sh)"


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def require_redis_server() -> str:
    """The binary's path; otherwise skip the running test (fail it under CI=true), or raise
    `FileNotFoundError` outside pytest."""
    binary = redis_server_binary()
    if binary is not None:
        return binary
    if "pytest" in sys.modules:
        import pytest

        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(_MISSING)
        pytest.skip(_MISSING)
    raise FileNotFoundError(_MISSING)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Starts on `start()` (or `with`), stops on `stop()`; `restart()` keeps the port."""

    def __init__(self, port: int | None = None) -> None:
        self._binary = require_redis_server()
        self.port = port or _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="lucky-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def _logfile(self) -> str:
        return os.path.join(self._dir.name, "redis.log")

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start (again) on the same port; returns once the server answers PING."""
        if self.running:
            return self
        command = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--protected-mode",
            "yes",
            "--logfile",
            self._logfile,
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code, self._process = self._process.returncode, None
                raise RuntimeError(f"redis-server on port {self.port} exited with {code}: {self._log_tail()}")
            if self._answers_ping():
                return self
            time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _log_tail(self) -> str:
        try:
            with open(self._logfile, encoding="utf-8", errors="replace") as log:
                return " | ".join(log.read().strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
