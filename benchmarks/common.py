"""Shared helpers: load loops, interleaved rounds, robust ratios, fake upstreams in their own process.

The machine is small (2 cores) and shared, so nothing here trusts an absolute time. Every
comparison runs its variants inside one process in alternating order (ABC CBA ABC ...), and a
ratio is taken within each round, between measurements made seconds apart, before the median
over rounds is reported: a neighbour's burst of load then slows one round of every variant
rather than one variant. Process CPU time is recorded next to wall time as a cross-check that
does not count time stolen by other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
KEY = "sk-bench-not-a-real-key"

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Load:
    """One measured batch of calls: wall-clock throughput and process CPU time per call."""

    requests_per_s: float
    cpu_us_per_request: float


async def throughput(call: Call, requests: int, concurrency: int) -> Load:
    """Run `requests` calls with `concurrency` callers in flight; background work the calls left
    behind (litellm's logging tasks) is waited for inside the timed window, so it is billed to
    the variant that caused it rather than to whichever runs next."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    before = len(asyncio.all_tasks())
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await drain(before)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Load(requests / wall, cpu / requests * 1e6)


async def drain(tasks_before: int, limit_s: float = 2.0) -> None:
    """Wait (bounded) until the tasks spawned by the calls, e.g. litellm's success callbacks, ran."""
    deadline = time.perf_counter() + limit_s
    while len(asyncio.all_tasks()) > tasks_before and time.perf_counter() < deadline:
        await asyncio.sleep(0.001)


async def latencies(call: Call, requests: int) -> list[float]:
    """Per-call latency in seconds, one call at a time."""
    out = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def interleaved(
    variants: Mapping[str, Call], measure: Callable[[Call], Awaitable[Any]], rounds: int
) -> dict[str, list[Any]]:
    """Run `measure` on every variant for `rounds` rounds, reversing the order every other round."""
    names = list(variants)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            results[name].append(await measure(variants[name]))
    return results


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over rounds of the ratio within each round (see the module docstring)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; `fraction` 0.99 is p99."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Progress:
    """Lines on stderr as a long benchmark moves from phase to phase, each with the seconds since
    it started: the runner prints when each benchmark starts and ends, this what it is doing in
    between (and where its time goes)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"    {self.name}: {message} ({elapsed:.1f} s)", file=sys.stderr, flush=True)


def parser(module: str, doc: str | None, *, quick: bool = True) -> argparse.ArgumentParser:
    """The command line of `python -m <module>`: `--help` from the module docstring, `--quick`;
    a benchmark adds its own options. `--help` exits before anything starts, and an unknown option
    is refused (exit 2) rather than ignored while the whole benchmark runs."""
    description = (doc or "").strip().split("\n\n")[0]
    made = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if quick:
        made.add_argument("--quick", action="store_true", help="smaller samples, for a smoke test")
    return made


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that every `with`/`finally` that owns a child process
    (fake upstream, proxy, worker) stops it: the default SIGTERM action would exit at once and leave
    those children (in their own sessions) running as orphans."""


@contextlib.contextmanager
def stop_children_on_signals() -> Iterator[None]:
    """While inside: SIGTERM raises `Terminated` (SIGINT already raises KeyboardInterrupt), once;
    a second SIGTERM during the cleanup is ignored so that the cleanup finishes."""

    def terminated(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _read_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"fake upstream did not start: {line!r}")
    return line.split(" ", 1)[1]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def upstream_process(*extra: str) -> Iterator[str]:
    """`python -m lucky_litellm.testing` (plain answers) as a separate process; yields its base URL.

    Separate, so that serving does not steal the client's CPU and GIL on this 2-core machine."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lucky_litellm.testing", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield _read_ready(process)
    finally:
        _stop(process)


class ScriptedUpstream:
    """`benchmarks.upstream` in its own process: per-model latency patterns and failures, and the
    upstream's own call counts (what really reached the "provider", cancelled hedges included)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self.base_url = _read_ready(process)

    def counts(self) -> dict[str, int]:
        """Calls received so far, per scripted model."""
        return self._ask("counts")

    def reset(self) -> dict[str, int]:
        """Restart every model's call index (and so its latency pattern); returns the counts."""
        return self._ask("reset")

    def scale(self, factor: float) -> dict[str, int]:
        """Multiply every latency by `factor` from now on (until `reset`); returns the counts."""
        return self._ask(f"scale {factor:g}")

    def _ask(self, command: str) -> dict[str, int]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        counts: dict[str, int] = json.loads(self._process.stdout.readline())
        return counts


@contextlib.contextmanager
def scripted_upstream(models: Mapping[str, Mapping[str, Any]]) -> Iterator[ScriptedUpstream]:
    """Start `benchmarks.upstream` with a per-model script (see that module); stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.upstream", json.dumps(models)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield ScriptedUpstream(process)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        _stop(process)


def quiet_litellm() -> None:
    """No debug banners or per-call prints from litellm in the benchmark output."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False


def run_json_subprocess(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run `python -m module args...` in a fresh interpreter; its last stdout line is JSON."""
    return run_json_subprocesses([[module, *args]], timeout=timeout)[0]


def run_json_subprocesses(commands: list[list[str]], timeout: float = 600) -> list[dict[str, Any]]:
    """Run each `[module, *args]` as `python -m module args...`, all at once (one per core on this
    2-core machine), each in a fresh interpreter whose last stdout line is JSON; their results in
    order. A child that fails raises `RuntimeError` with the end of its stderr, once all are done."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        for command in commands
    ]
    outputs: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + timeout
        for process in processes:
            outputs.append(process.communicate(timeout=max(0.0, deadline - time.monotonic())))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for command, process, (out, err) in zip(commands, processes, outputs, strict=True):
        lines = out.strip().splitlines()
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {err.strip()[-500:]}")
        results.append(json.loads(lines[-1]))
    return results
