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
    monkeypatch.setattr(run, "BUDGETS", {"fine": 5, "broken": 5, "other": 5})
    monkeypatch.setattr(run, "NO_LITELLM", frozenset(run.BENCHES))  # no 3 s setup import here
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


def test_each_benchmark_reports_its_time_next_to_its_budget_as_it_goes(
    benches: dict[str, list[bool]], capsys: pytest.CaptureFixture[str]
) -> None:
    run.main(["--only", "fine,other"])
    progress = capsys.readouterr().err
    assert "[1/2] fine started at 0 s (budget 5 s)" in progress
    assert "[1/2] fine done in 0.0 s (budget 5 s) within, cpu " in progress
    assert "[2/2] other done in" in progress


def test_a_benchmark_over_its_budget_is_flagged(
    benches: dict[str, list[bool]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run, "BUDGETS", {"fine": 0})
    monkeypatch.setattr(run.time, "perf_counter", iter(range(0, 1000, 10)).__next__)  # 10 s a tick
    run.main(["--only", "fine"])
    assert "fine done in 10 s (budget 0 s) OVER" in capsys.readouterr().err


def test_a_full_run_says_whether_it_met_five_minutes(
    benches: dict[str, list[bool]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run, "BENCHES", {"fine": run.BENCHES["fine"]})
    assert run.main([]) == 0
    out = capsys.readouterr().out
    assert "whole run: 0 min 0 s" in out
    assert "target < 5 min 0 s: PASS" in out
    assert "load average" in out
    written = json.loads(run.RESULTS.read_text())
    assert set(written["load_average"]) == {"start", "end"}
    assert written["fine"]["seconds"] >= 0


@pytest.mark.parametrize(
    "failure",
    [SystemExit(2), KeyError("p99_ms"), None],
    ids=["exits", "raises", "returns-nothing"],
)
def test_a_benchmark_that_exits_or_returns_garbage_is_reported_without_hiding_the_others(
    benches: dict[str, list[bool]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: BaseException | None,
) -> None:
    def bad(quick: bool) -> Any:
        if failure is not None:
            raise failure
        return None

    monkeypatch.setitem(run.BENCHES, "broken", bad)
    assert run.main(["--only", "broken,fine"]) == 1
    assert benches["fine"] == [False]
    out = capsys.readouterr().out
    assert "broken: benchmark failed" in out
    assert "FAILED: broken" in out
    assert json.loads(run.PARTIAL.read_text())["fine"]["value"] == 1


def test_a_result_the_table_cannot_read_fails_that_benchmark_only(
    benches: dict[str, list[bool]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A benchmark that stopped returning a key the table reads used to lose the whole table."""
    monkeypatch.setattr(run, "BENCHES", {"state": lambda quick: {"mock": {}}, "fine": run.BENCHES["fine"]})
    monkeypatch.setattr(run, "NO_LITELLM", frozenset(run.BENCHES))
    assert run.main(["--only", "state,fine"]) == 1
    out = capsys.readouterr().out
    assert "state: benchmark failed" in out
    assert "result unreadable, KeyError" in out
    assert "[markup]" not in out


def test_a_busy_machine_is_called_out_before_the_figures(
    benches: dict[str, list[bool]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The budgets are for a quiet machine: a run under others' load says so at the start."""
    monkeypatch.setattr(run.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    run.main(["--only", "fine"])
    captured = capsys.readouterr()
    assert captured.err.startswith("busy machine: load average 9.0 on 2 cpus")
    assert "load average 9.0 at start, 9.0 at end, 2 cpus" in captured.out
