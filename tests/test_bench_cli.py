"""Every `python -m benchmarks.<module>` has a real command line: `--help` prints usage and starts
nothing, an unknown option is refused, and a benchmark killed with SIGTERM stops its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    path.stem for path in (ROOT / "benchmarks").glob("*.py") if path.stem not in {"__init__", "common"}
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _start(module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_every_benchmark_module_is_found() -> None:
    assert {"bench_proxy", "bench_health", "bench_state", "profile_breakdown", "run"} <= set(MODULES)


def test_help_prints_usage_and_runs_nothing() -> None:
    """`--help` used to be ignored: the whole benchmark ran (and bench_proxy started proxies)."""
    processes = {module: _start(module, "--help") for module in MODULES}  # side by side: quick
    for module, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (module, err[-2000:])
        assert out.startswith(f"usage: python -m benchmarks.{module}"), (module, out[:200])


def test_an_unknown_option_is_refused() -> None:
    processes = {module: _start(module, "--no-such-option") for module in MODULES}
    for module, process in processes.items():
        _, err = process.communicate(timeout=60)
        assert process.returncode == 2, (module, err[-2000:])
        assert f"python -m benchmarks.{module}: error:" in err, module


def _children() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _children()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_sigterm_stops_bench_proxy_and_its_upstream_and_proxies() -> None:
    """bench_proxy killed by a timeout used to leave its fake upstream and two litellm proxies running."""
    bench = _start("bench_proxy", "--quick")
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        # the upstream and both proxies started (the proxies are still importing litellm)
        while len(seen) < 3 and time.monotonic() < deadline and bench.poll() is None:
            seen |= _descendants(bench.pid)
            time.sleep(0.1)
        assert len(seen) >= 3, f"bench_proxy did not start its children: {seen} (exit status {bench.poll()})"
        bench.send_signal(signal.SIGTERM)
        # a hang guard: each proxy gets stop_timeout_s to go after SIGTERM, then SIGKILL
        bench.communicate(timeout=120)
        assert bench.returncode == 128 + signal.SIGTERM
        survivors = {pid for pid in seen if _alive(pid)}
        assert not survivors, f"orphans left running: {survivors}"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid in seen:  # never leave them behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("argv", [["--list"], ["--list", "--quick"]])
def test_bench_proxy_list_runs_nothing(argv: list[str]) -> None:
    out, _ = _start("bench_proxy", *argv).communicate(timeout=60)
    assert "tier_deployment" in out
