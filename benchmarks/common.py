"""Shared helpers: load loops, interleaved rounds, percentiles, a fake upstream in its own process.

The machine is small (2 cores) and shared, so nothing here trusts an absolute time: every
comparison runs its variants in alternating order (ABBA...) inside one process and reports the
median of the rounds, and ratios are what the targets are judged on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
KEY = "sk-bench-not-a-real-key"

Call = Callable[[], Awaitable[Any]]


async def throughput(call: Call, requests: int, concurrency: int) -> float:
    """Requests per second of `call` with `concurrency` callers in flight."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def latencies(call: Call, requests: int) -> list[float]:
    """Per-call latency in seconds, one call at a time."""
    out = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def interleaved(variants: dict[str, Call], measure: Callable[[Call], Awaitable[Any]], rounds: int) -> dict[str, list[Any]]:
    """Run `measure` on every variant for `rounds` rounds, reversing the order every other round."""
    names = list(variants)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            results[name].append(await measure(variants[name]))
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def upstream_process(*extra: str, module: str = "lucky_litellm.testing") -> Iterator[str]:
    """The fake upstream as a separate process, so serving does not steal the client's CPU/GIL."""
    command = [sys.executable, "-m", module, *extra]
    if module == "lucky_litellm.testing":
        command += ["--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        yield line.split(" ", 1)[1]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def quiet_litellm() -> None:
    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
