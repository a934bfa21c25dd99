"""`make bench`: every benchmark in one run, a table of ratios against their targets, and
`benchmarks/results.json`.

    python -m benchmarks.run            # full run (a few minutes on 2 cores)
    python -m benchmarks.run --quick    # smaller samples, for a smoke test
    python -m benchmarks.run --only hedging,import     # or --only=hedging,import
    python -m benchmarks.run --only=overhead --freeze   # also the overhead matrix after gc.freeze()

Progress goes to stderr as each benchmark starts and ends, with its wall time next to its budget
(`BUDGETS`, for a quiet 2-core machine); each benchmark's figures are printed next to their targets
as it ends, all of them again at the end, then the wall-time table and whether the whole run met its
5 minutes (with the load average, which says how quiet the machine was).

Only a full run writes `benchmarks/results.json` (the committed figures); a quick or partial run
writes `benchmarks/results.partial.json`. A benchmark that fails (raises, exits, or returns figures
the table cannot read) is reported as a failed row and the others still run; the exit status is then
1. An over-budget time or a missed target is shown, not an error.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks import (
    bench_adaptive_hedging,
    bench_config,
    bench_guard,
    bench_health,
    bench_hedging,
    bench_import,
    bench_memory,
    bench_middleware,
    bench_overhead,
    bench_proxy,
    bench_state,
    bench_tracing,
    profile_breakdown,
)
from benchmarks.common import Terminated, stop_children_on_signals

if TYPE_CHECKING:
    from rich.console import Console

RESULTS = Path(__file__).with_name("results.json")
PARTIAL = Path(__file__).with_name("results.partial.json")

FREEZE = False
"""`--freeze`: the overhead benchmark also reports its matrix after `gc.freeze()` (reference)."""

BENCHES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "overhead": lambda quick: bench_overhead.run(quick, freeze=FREEZE),
    "hedging": bench_hedging.run,
    "adaptive_hedging": bench_adaptive_hedging.run,
    "health": bench_health.run,
    "import": bench_import.run,
    "memory": bench_memory.run,
    "tracing": bench_tracing.run,
    "proxy": bench_proxy.run,
    "state": bench_state.run,
    "config": bench_config.run,
    "middleware": bench_middleware.run,
    "guard": bench_guard.run,
}


BUDGETS: dict[str, float] = {
    "overhead": 60,
    "proxy": 60,
    "hedging": 17,
    "adaptive_hedging": 24,
    "health": 30,
    "memory": 28,
    "state": 16,
    "tracing": 11,
    # the small ones share 24 s
    "import": 5,
    "config": 2,
    "middleware": 11,
    "guard": 6,
}
"""Wall seconds each benchmark may take on a quiet 2-core machine. They add up to 270 s, which
leaves the setup (importing litellm once, ~4 s) and some slack inside the whole run's 5 minutes,
so a benchmark that outgrows its share shows up here before the total does."""

TOTAL_BUDGET_S = 300.0
"""`make bench` as a whole, on 2 cores."""

NO_LITELLM = frozenset({"import", "config", "health"})
"""Benchmarks that never import litellm in this process (no setup import for them alone)."""

WIDE = 160
"""Table width when the output is a file: long measures stay on one line."""

Row = tuple[str, str, str, bool | None]
"""(measure, value, target, met) for the table; met None = reported only."""


def _rows(results: dict[str, Any]) -> list[Row]:
    """(measure, value, target, met) for the table; met None = reported only."""
    rows: list[Row] = []
    overhead = results.get("overhead")
    if overhead:
        rows.extend(bench_overhead.rows(overhead))
    hedging = results.get("hedging")
    if hedging:
        rows.append(
            (
                "p99 first / p99 hedged race",
                f"{hedging['p99_cut_hedged']:.1f}x",
                ">= 5x",
                hedging["p99_cut_hedged"] >= 5,
            )
        )
        rows.append(
            (
                "extra requests, hedged race",
                f"{hedging['hedged']['extra_requests']:.0%}",
                "<= 10%",
                hedging["hedged"]["extra_requests"] <= 0.10,
            )
        )
        for name in ("first", "race", "hedged"):
            data = hedging[name]
            rows.append(
                (
                    f"  {name}: p50 / p99 / p99.9 ms, extra",
                    f"{data['p50_ms']} / {data['p99_ms']} / {data['p999_ms']}, {data['extra_requests']:.0%}",
                    "report",
                    None,
                )
            )
    adaptive = results.get("adaptive_hedging")
    if adaptive:
        rows.extend(bench_adaptive_hedging.rows(adaptive))
    health = results.get("health")
    if health:
        rows.extend(bench_health.rows(health))
    imported = results.get("import")
    if imported:
        ours, theirs = imported["lucky_litellm"], imported["litellm"]
        rows.append(
            (
                "import lucky_litellm (vs import litellm)",
                f"{ours['ms']} ms, {ours['rss_mb']} MB (litellm {theirs['ms']} ms, {theirs['rss_mb']} MB)",
                "< 150 ms",
                ours["ms"] < 150,
            )
        )
    memory = results.get("memory")
    if memory:
        layer, full = memory["lucky_layer"], memory["through_litellm_mock"]
        rows.append(
            (
                f"RSS growth, {layer['calls']} calls, stats+tracing on",
                f"{layer['growth_mb']} MB",
                "flat (< 5 MB)",
                layer["growth_mb"] < 5,
            )
        )
        rows.append(
            (
                f"  RSS growth through litellm, {full['calls']} calls",
                f"{full['growth_mb']} MB",
                "report",
                None,
            )
        )
    tracing = results.get("tracing")
    if tracing:
        for scenario in ("first", "race"):
            batch = tracing[scenario]["sdk_batch"]
            rows.append(
                (
                    f"tracing on (SDK, batch) vs off, {scenario}",
                    f"+{batch['overhead_us']:.0f} us ({batch['overhead_pct']:+.0f}%)",
                    "report",
                    None,
                )
            )
    proxy = results.get("proxy")
    if proxy:
        rows.extend(bench_proxy.rows(proxy))
    state = results.get("state")
    if state:
        for kind in ("mock", "http"):
            ratio = state[kind]["ratio"]
            measure = f"budgeted req/s, Redis / memory store, c=50, {kind}"
            rows.append((measure, f"{ratio:.2f}", ">= 0.80", ratio >= 0.8))
    config = results.get("config")
    if config:
        ratio = config["normal_ratio"]
        rows.append(("config load, hardened / bare yaml+pydantic", f"{ratio:.2f}", "<= 1.5", ratio <= 1.5))
        bomb = config["alias_bomb_1e6"]
        rows.append(
            (
                "alias bomb (10^6): refused at load, ms (bare: per call)",
                f"{bomb['refused_ms']:.1f} ({bomb['bare_per_call_ms']:.0f})",
                "report",
                None,
            )
        )
        big = config["file_1_1mb"]
        rows.append(
            (
                "1.1 MB file: refused, ms (bare: parsed)",
                f"{big['refused_ms']:.2f} ({big['bare_parse_ms']:.0f})",
                "report",
                None,
            )
        )
    middleware = results.get("middleware")
    if middleware:
        for level, data in middleware.items():
            if not isinstance(data, dict):  # "seconds", added by the runner
                continue
            ratio = data["empty_chain/no_chain"]
            target = bench_middleware.EMPTY_CHAIN_TARGET
            measure = f"empty middleware chain / no chain, {level}"
            rows.append((measure, f"{ratio:.3f}", f">= {target}", ratio >= target))
    guard = results.get("guard")
    if guard:
        rows.extend(bench_guard.rows(guard))
    return rows


def _print_table(rows: list[Row], title: str | None = None) -> None:
    """Every figure next to its target; plain text when stdout is not a terminal (CI logs, `tee`)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for column in ("measure", "value", "target", "result"):
        table.add_column(column, overflow="fold")
    for measure, value, target, met in rows:  # an error message may hold [brackets]: not markup
        table.add_row(escape(measure), escape(value), escape(target), _mark(met))
    _console().print(table)


def _mark(met: bool | None) -> str:
    return "-" if met is None else ("[green]PASS[/]" if met else "[bold red]FAIL[/]")


def _console(stderr: bool = False) -> Console:
    """Made per print, so it writes to whatever sys.stdout is then (pytest's capture included)."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # a log file: no colour codes, and no wrapping at 80 columns
        console = Console(stderr=stderr, highlight=False, width=WIDE, no_color=True)
    return console


def _budget(name: str) -> str:
    budget = BUDGETS.get(name)
    return f"{budget:.0f} s" if budget is not None else "none"


def _within(seconds: float, budget: float | None) -> str:
    if budget is None:
        return "-"
    return "[green]within[/]" if seconds <= budget else "[bold red]OVER[/]"


def _rows_of(name: str, result: dict[str, Any]) -> tuple[list[Row], str | None]:
    """One benchmark's rows; a result the table cannot read is one failed row, not a lost table."""
    try:
        return _rows({name: result}), None
    except Exception as exc:  # e.g. a key a benchmark stopped returning
        traceback.print_exc()
        error = f"result unreadable, {type(exc).__name__}: {exc}"
        return [], error


def _run_one(name: str, quick: bool) -> tuple[dict[str, Any], str | None]:
    """(result, error): the benchmark's own dict, or an error dict and its one-line description."""
    budget = BUDGETS.get(name)
    # a benchmark stuck far past its budget shows where it is stuck (stderr), and keeps running
    # (to the real stderr, fd 2: faulthandler writes to a file descriptor, not to sys.stderr)
    faulthandler.dump_traceback_later(max(60.0, 4 * (budget or 60.0)), exit=False, file=2)
    try:
        result = BENCHES[name](quick)
        if not isinstance(result, dict):
            raise TypeError(f"returned {type(result).__name__}, not a dict of figures")
        return result, None
    except Terminated:  # SIGTERM: stop this benchmark's children and the whole run, not just this one
        raise
    except (Exception, SystemExit) as exc:  # one broken benchmark must not lose the others' figures
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        return {"error": error}, error
    finally:
        faulthandler.cancel_dump_traceback_later()


def _setup(selected: list[str]) -> float | None:
    """Import litellm once, before the first benchmark that needs it, so that its ~3 s are not
    billed to whichever benchmark happens to run first; seconds taken, None if not needed."""
    if not set(selected) - NO_LITELLM:
        return None
    started = time.perf_counter()
    import litellm  # noqa: F401

    return time.perf_counter() - started


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples, for a smoke test")
    parser.add_argument(
        "--only",
        type=_names,
        metavar="NAME[,NAME...]",
        help=f"run only these ({', '.join(BENCHES)}); `--only a,b` or `--only=a,b`",
    )
    parser.add_argument(
        "--freeze", action="store_true", help="overhead: also the matrix after gc.freeze() (reference)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where to write the results (default: {RESULTS.name} for a full run, {PARTIAL.name} otherwise)",
    )
    return parser


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or value!r}; known: {', '.join(BENCHES)}"
        )
    return names


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    with stop_children_on_signals():  # a killed run stops the benchmark's servers, leaves no orphans
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    global FREEZE
    FREEZE = args.freeze
    selected: list[str] = args.only or list(BENCHES)
    full = selected == list(BENCHES) and not args.quick
    # Only a full run replaces the committed figures: a quick or partial run must not overwrite them.
    out: Path = args.out or (RESULTS if full else PARTIAL)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "quick": args.quick},
        "benchmarks": selected,
    }
    progress = _console(stderr=True)
    load_before = os.getloadavg()[0]
    if load_before > (os.cpu_count() or 1):
        progress.print(
            f"[yellow]busy machine[/]: load average {load_before:.1f} on {os.cpu_count()} cpus; wall times "
            "and wall-clock ratios will be off (the cpu seconds much less so)"
        )
    run_started, run_cpu = time.perf_counter(), _cpu_seconds()
    setup = _setup(selected)
    if setup is not None:
        results["setup_seconds"] = round(setup, 1)
        progress.print(f"setup: import litellm {setup:.1f} s")
    failed: list[str] = []
    rows: list[Row] = []
    # CPU seconds, this process and the children it waited for: what a benchmark needs whatever
    # else runs on the machine (more than its wall time when it runs processes side by side)
    cpu: dict[str, float] = {}
    results["cpu_seconds"] = cpu
    count = len(selected)
    for index, name in enumerate(selected, 1):
        step = f"[{index}/{count}] {name}"
        elapsed = time.perf_counter() - run_started
        progress.print(f"{step} started at {elapsed:.0f} s (budget {_budget(name)})")
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        results[name], error = _run_one(name, args.quick)
        seconds = round(time.perf_counter() - started, 1)
        results[name]["seconds"] = seconds
        cpu[name] = round(_cpu_seconds() - cpu_started, 1)
        own: list[Row] = []
        if error is None:
            own, error = _rows_of(name, results[name])
        if error is not None:
            failed.append(name)
            own = [(f"{name}: benchmark failed", error[:80], "runs", False)]
        rows += own
        verdict = _within(seconds, BUDGETS.get(name))
        progress.print(
            f"{step} {'FAILED' if error else 'done'} in {seconds} s (budget {_budget(name)}) {verdict}, "
            f"cpu {cpu[name]} s"
        )
        if own:
            _print_table(own)
    total = time.perf_counter() - run_started
    results["seconds"] = round(total, 1)
    results["cpu_seconds_total"] = round(_cpu_seconds() - run_cpu, 1)
    results["load_average"] = {"start": round(load_before, 1), "end": round(os.getloadavg()[0], 1)}
    if rows:
        _print_table(rows, title="all benchmarks")
    if "breakdown" in results.get("overhead", {}):
        print()
        print(profile_breakdown.format_table(results["overhead"]["breakdown"]))
    _print_times(results, selected, total, full)
    results["table"] = [{"measure": m, "value": v, "target": t, "met": ok} for m, v, t, ok in rows]
    out.write_text(json.dumps(results, indent=2) + "\n")
    shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    print(f"\nwritten to {shown} ({'full run' if full else 'partial run: ' + RESULTS.name + ' untouched'})")
    if failed:
        print(f"FAILED: {', '.join(failed)} (tracebacks above, on stderr)")
    return 1 if failed else 0


def _print_times(results: dict[str, Any], selected: list[str], total: float, full: bool) -> None:
    """Each benchmark's wall time next to its budget, then the whole run against its 5 minutes."""
    from rich import box
    from rich.table import Table

    table = Table(title="wall time", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for column in ("benchmark", "seconds", "budget", "result", "cpu seconds"):
        table.add_column(column)
    if "setup_seconds" in results:
        table.add_row("setup (import litellm)", f"{results['setup_seconds']}", "-", "-", "-")
    for name in selected:
        seconds = results[name]["seconds"]
        verdict = _within(seconds, BUDGETS.get(name))
        table.add_row(name, f"{seconds}", _budget(name), verdict, f"{results['cpu_seconds'][name]}")
    console = _console()
    console.print(table)
    load = results["load_average"]
    # the budgets are for a quiet 2-core machine: the load average says how quiet it was
    note = (
        f"cpu {results['cpu_seconds_total']} s in all; load average {load['start']} at start, "
        f"{load['end']} at end, {os.cpu_count()} cpus"
    )
    if full:
        met = total <= TOTAL_BUDGET_S
        console.print(
            f"whole run: {_minutes(total)} ({total:.1f} s), target < {_minutes(TOTAL_BUDGET_S)}: "
            f"{_mark(met)} ({note})"
        )
    else:
        budget = sum(BUDGETS.get(name, 0.0) for name in selected)
        console.print(f"total: {_minutes(total)} ({total:.1f} s), budgets of these: {budget:.0f} s ({note})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
