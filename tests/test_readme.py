"""The READMEs are executed: every snippet marked runnable runs as written, offline.

Convention: an HTML comment on the line before a fenced block marks it runnable.

    <!-- runnable -->               the block runs (python, bash/sh, console, yaml)
    <!-- runnable file=NAME -->     the block is saved as NAME for the document's other blocks
    <!-- runnable env=clean -->     the block runs without `lucky-litellm dev`'s variables

* `python` runs as a script (top-level `await` allowed, as in `python -m asyncio`);
* `bash`/`sh` runs under `bash -euo pipefail`;
* `console` holds `$ command` lines, each followed by the output it prints, compared exactly;
* `yaml` must pass `lucky-litellm validate` (a user config, a models.yaml or a proxy config).

Each block runs in a fresh temporary directory holding what a clone ships (`configs/`,
`examples/`, `.venv` linked), with the `.venv` first on PATH (as after `source .venv/bin/activate`),
no provider key, and the environment `lucky-litellm dev` exports, pointing at a fake upstream:
what the README promises offline is exactly what it gets.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lucky_litellm.dev import OFFLINE_COST_MAP, dev_environment
from lucky_litellm.testing import Behavior, FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "configs/README.md")
SHIPPED = ("configs", "examples")
MARKER = re.compile(r"^<!--\s*runnable\b(?P<options>[^>]*)-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
BLOCK_TIMEOUT_S = 300
"""A hang guard, not a speed check: a block that loads litellm a few times took over 90 s at
load 10+ on 2 cores (its CPU time stretched 10-15 times)."""


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    lang: str
    text: str
    save_as: str | None
    clean_env: bool = False

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}:{self.lang}"


def blocks_of(document: str) -> list[Block]:
    """Every fenced block of `document` preceded by a runnable marker, in order."""
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith("```"))
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous.strip())
        if marker:
            options = dict(re.findall(r"(\w+)=(\S+)", marker.group("options")))
            text = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"  # blocks inside list items
            clean = options.get("env") == "clean"
            found.append(Block(document, index + 1, fence.group("lang"), text, options.get("file"), clean))
        index = end + 1
    return found


ALL_BLOCKS = [block for document in DOCUMENTS for block in blocks_of(document)]
RUNNABLE = [block for block in ALL_BLOCKS if block.save_as is None]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(default=Behavior(latency_ms=5)) as up:
        up.script("llama3.2", Behavior(latency_ms=80))  # so a race has a visible winner and loser
        yield up


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory shaped like a fresh clone after `make install`."""
    for name in SHIPPED:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def environment(base_url: str, clean: bool = False) -> dict[str, str]:
    kept = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LUCKY_", "OTEL_")) and not key.endswith("_API_KEY")
    }
    venv_bin = str(Path(sys.executable).parent)
    return {
        **kept,
        **OFFLINE_COST_MAP,
        **({} if clean else dev_environment(base_url)),
        "PATH": f"{venv_bin}{os.pathsep}{kept.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        "COLUMNS": "100",
    }


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S, check=False
    )


def test_the_readmes_have_runnable_blocks() -> None:
    assert {block.document for block in RUNNABLE} == set(DOCUMENTS)
    assert {block.lang for block in RUNNABLE} >= {"python", "bash", "console", "yaml"}


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_snippet_runs_as_written(
    block: Block, clone: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(upstream.base_url, block.clean_env)
    for saved in ALL_BLOCKS:
        if saved.document == block.document and saved.save_as:
            (clone / saved.save_as).write_text(saved.text)
    snippet = clone / f"snippet.{block.lang}"
    snippet.write_text(block.text)
    where = f"{block.document}, block at line {block.line}"
    if block.lang == "python":
        run_python_here(snippet, clone, env, monkeypatch)
    elif block.lang in ("bash", "sh", "shell"):
        result = run(["bash", "-euo", "pipefail", str(snippet)], clone, env)
        assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    elif block.lang == "yaml":
        from lucky_litellm.validation import check_file

        check_file(snippet)
    elif block.lang == "console":
        for command, expected in console_steps(block.text):
            result = run(["bash", "-c", command], clone, env)
            printed = "\n".join(line.rstrip() for line in (result.stdout + result.stderr).splitlines())
            assert printed.strip() == expected.strip(), f"{where}: `{command}` printed:\n{printed}"
    else:
        pytest.fail(f"{where}: no way to run a {block.lang!r} block")


def run_python_here(path: Path, cwd: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a Python snippet in this process (litellm is imported once, not once per snippet: a
    fresh interpreter per block would cost seconds each), in the clone's directory and
    environment, with a fresh namespace and a fresh default registry."""
    from lucky_litellm import set_default_models

    monkeypatch.chdir(cwd)
    for key in set(os.environ) - set(env):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = compile(path.read_text(), str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": str(path)}
    set_default_models(None)
    try:
        if code.co_flags & inspect.CO_COROUTINE:  # the snippet awaits at top level
            asyncio.run(types.FunctionType(code, namespace)())
        else:
            exec(code, namespace)
    finally:
        set_default_models(None)


def console_steps(text: str) -> list[tuple[str, str]]:
    """`$ command` lines and the output that follows each."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line.rstrip())
    return [(command, "\n".join(output)) for command, output in steps]


SHIPPED_PATH = re.compile(r"(?<![\w/.-])((?:configs|examples|benchmarks|tests|lucky_litellm)/[\w./-]*\w)")
WRITTEN_BY_RUNS = {"benchmarks/results.partial.json"}  # output of partial bench runs, gitignored


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_file_the_readme_names_is_shipped(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    base = ROOT / Path(document).parent
    named = {match.group(1) for match in SHIPPED_PATH.finditer(text)} - WRITTEN_BY_RUNS
    missing = [path for path in sorted(named) if not (ROOT / path).exists() and not (base / path).exists()]
    assert not missing, f"{document} names files that are not shipped: {missing}"
