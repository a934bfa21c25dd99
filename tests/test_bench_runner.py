"""`make bench` (benchmarks/run.py): selecting, surviving a failing benchmark, keeping results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run


@pytest.fixture
def benches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, list[bool]]:
    """Two tiny benchmarks, one broken; results files in tmp_path."""
    calls: dict[str, list[bool]] = {"fine": [], "broken": []}

    def fine(quick: bool) -> dict[str, Any]:
        calls["fine"].append(quick)
        return {"value": 1}

    def broken(quick: bool) -> dict[str, Any]:
        calls["broken"].append(quick)
        raise RuntimeError("upstream went away")

    monkeypatch.setattr(run, "BENCHES", {"fine": fine, "broken": broken, "other": fine})
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(run, "PARTIAL", tmp_path / "results.partial.json")
    (tmp_path / "results.json").write_text('{"committed": true}\n')
    return calls


@pytest.mark.parametrize("argv", [["--only", "fine"], ["--only=fine"]])
def test_only_selects_in_both_spellings(benches: dict[str, list[bool]], argv: list[str]) -> None:
    """`--only hedging` (space form) used to be ignored and run everything."""
    assert run.main(argv) == 0
    assert benches == {"fine": [False], "broken": []}


def test_a_failing_benchmark_is_reported_and_the_others_still_run(
    benches: dict[str, list[bool]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main(["--only", "broken,fine"]) == 1
    assert benches["fine"] == [False]
    written = json.loads(run.PARTIAL.read_text())
    assert written["broken"]["error"] == "RuntimeError: upstream went away"
    assert "broken: benchmark failed" in capsys.readouterr().out


def test_partial_and_quick_runs_leave_the_committed_results_alone(benches: dict[str, list[bool]]) -> None:
    run.main(["--only", "fine"])
    run.main(["--quick"])
    assert json.loads(run.RESULTS.read_text()) == {"committed": True}
    assert json.loads(run.PARTIAL.read_text())["machine"]["quick"] is True


def test_unknown_names_are_refused_before_anything_runs(benches: dict[str, list[bool]]) -> None:
    with pytest.raises(SystemExit) as exited:
        run.main(["--only", "fine,hedgin"])
    assert exited.value.code == 2
    assert benches == {"fine": [], "broken": []}
