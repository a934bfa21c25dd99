"""A real `redis-server` on a free 127.0.0.1 port, for tests of the shared state store.

    with RedisServer() as server:
        state = state_from_url(server.url)
        server.stop(); ...; server.start()     # same port again, same data: clients reconnect
        server.pause(); ...; server.resume()   # SIGSTOP / SIGCONT: accepts, never answers
        with LatencyProxy(server.port, delay_s=0.025) as slow:   # the same Redis, 25 ms away
            state_from_url(slow.url)

Persistence is the configuration the README documents for budgets: an append-only file, fsynced
on every write (``appendonly yes``, ``appendfsync always``), so a restart loses nothing recorded.
`RedisServer(persistent=False)` runs without it, as a Redis that comes back empty. The data
directory is a temporary folder, removed by `close()`.
Without a `redis-server` binary, a test using it is skipped, except under ``CI=true`` where it
fails: CI installs the binary (``.ci/install-redis.sh``), so a missing one is a broken setup.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType

__all__ = ["LatencyProxy", "RedisServer", "redis_server_binary", "require_redis_server"]

PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")
"""What keeps spend across a restart (README, "Shared state"): every write in the append-only file."""

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

    def __init__(self, port: int | None = None, *, persistent: bool = True) -> None:
        self._binary = require_redis_server()
        self.port = port or _free_port()
        self.persistent = persistent
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
            *(PERSISTENCE if self.persistent else ("--save", "", "--appendonly", "no")),
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
        """SIGTERM: a clean shutdown (with persistence, everything is in the append-only file)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers (a hung Redis)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

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


class LatencyProxy:
    """A TCP relay to a local port that delays every chunk by `delay_s` each way: a Redis that
    is `2 * delay_s` of round trip away. Runs in its own process, so the process under test
    (its event loop, its GIL) cannot slow the relay down or be slowed by it."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LatencyProxy:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.target_port), str(self.delay_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        self.port = int(line)
        return self

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(5)
            if process.stdout is not None:
                process.stdout.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _relay_forever(target_port: int, delay_s: float) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    await asyncio.sleep(delay_s)
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":  # the LatencyProxy process: python -m ... TARGET_PORT DELAY_S
    asyncio.run(_relay_forever(int(sys.argv[1]), float(sys.argv[2])))
