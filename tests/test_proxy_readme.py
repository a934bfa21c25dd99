"""The README's proxy recipe, run as written from what a clone ships.

The shell block marked ``<!-- proxy-recipe -->`` runs under bash in a copy of the repository's
tracked files (a fresh clone, nothing untracked), with the virtualenv first on PATH and none of
the caller's LUCKY_/LITELLM_ variables or provider keys; the only change is the two ports (free
ones instead of 8001 and 4000). Then the Python block marked ``<!-- proxy-client -->`` talks to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lucky_litellm.proxy.launcher import free_port

pytestmark = pytest.mark.proxy

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120


def marked_block(marker: str) -> str:
    """The fenced block right after ``<!-- marker -->`` in the README."""
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!--\s*{marker}\s*-->\s*\n```\w*\n(.*?)\n```", text, re.DOTALL)
    assert found, f"README.md has no block marked <!-- {marker} -->"
    return found.group(1)


def fresh_clone(target: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def clean_environment(clone: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LUCKY_", "LITELLM_")) and not key.endswith("_API_KEY")
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(clone)  # this checkout's code, as an editable install of the clone would be
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], int]]:
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    env = clean_environment(clone)
    upstream_port, proxy_port = free_port(), free_port()
    script = marked_block("proxy-recipe").replace("8001", str(upstream_port)).replace("4000", str(proxy_port))
    log = clone / "recipe.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=clone,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(process, proxy_port, log)
        yield clone, env, proxy_port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the recipe exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        url = f"http://127.0.0.1:{port}/health/liveliness"
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.25)
    raise AssertionError(f"the proxy of the recipe did not come up:\n{log.read_text()[-4000:]}")


def test_the_readme_proxy_recipe_works_as_written(recipe: tuple[Path, dict[str, str], int]) -> None:
    clone, env, port = recipe
    client = marked_block("proxy-client").replace("4000", str(port))
    done = subprocess.run(
        [sys.executable, "-c", client], cwd=clone, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    model, text = done.stdout.splitlines()
    assert model == "local/qwen2.5:7b"  # LUCKY_PROVIDER=local beat the file's `provider: openai`
    assert text.startswith("answer from ")  # the fake upstream, reached at LUCKY_LOCAL_API_BASE


@pytest.mark.parametrize(
    "command",
    [["-m", "benchmarks.bench_proxy", "--list"], ["benchmarks/bench_proxy.py", "--list"]],
    ids=["module", "script"],
)
def test_the_proxy_benchmark_runs_in_both_documented_forms(command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": ""}  # as typed in a clone's root, nothing on the path
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "race_engine" in done.stdout
