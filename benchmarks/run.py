"""`make bench`: every benchmark in one run, a table of ratios against their targets, and
`benchmarks/results.json`.

    python -m benchmarks.run            # full run (a few minutes on 2 cores)
    python -m benchmarks.run --quick    # smaller samples, for a smoke test
    python -m benchmarks.run --only hedging,import     # or --only=hedging,import
    python -m benchmarks.run --only=overhead --freeze   # also the overhead matrix after gc.freeze()

Only a full run writes `benchmarks/results.json` (the committed figures); a quick or partial run
writes `benchmarks/results.partial.json`. A benchmark that fails is reported as a failed row and
the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks import (
    bench_adaptive_hedging,
    bench_config,
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

RESULTS = Path(__file__).with_name("results.json")
PARTIAL = Path(__file__).with_name("results.partial.json")

FREEZE = False
"""`--freeze`: the overhead benchmark also reports its matrix after `gc.freeze()` (reference)."""

BENCHES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "overhead": lambda quick: bench_overhead.run(quick, freeze=FREEZE),
    "hedging": bench_hedging.run,
    "adaptive_hedging": bench_adaptive_hedging.run,
    "import": bench_import.run,
    "memory": bench_memory.run,
    "tracing": bench_tracing.run,
    "proxy": bench_proxy.run,
    "state": bench_state.run,
    "config": bench_config.run,
    "middleware": bench_middleware.run,
}


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, met) for the table; met None = reported only."""
    rows: list[tuple[str, str, str, bool | None]] = []
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
        for name, ratio in proxy["ratio_to_plain"].items():
            if name != "plain":
                rows.append((f"proxy req/s with hook / plain proxy, {name}", f"{ratio:.2f}", "report", None))
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
    return rows


def _print_table(rows: list[tuple[str, str, str, bool | None]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    print(f"\n{'measure':<{widths[0]}}  {'value':<{widths[1]}}  {'target':<{widths[2]}}  result")
    for measure, value, target, met in rows:
        mark = "-" if met is None else ("PASS" if met else "FAIL")
        print(f"{measure:<{widths[0]}}  {value:<{widths[1]}}  {target:<{widths[2]}}  {mark}")


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
    global FREEZE
    args = _parser().parse_args(argv)
    FREEZE = args.freeze
    selected: list[str] = args.only or list(BENCHES)
    full = selected == list(BENCHES) and not args.quick
    # Only a full run replaces the committed figures: a quick or partial run must not overwrite them.
    out: Path = args.out or (RESULTS if full else PARTIAL)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "quick": args.quick},
        "benchmarks": selected,
    }
    failed: list[str] = []
    run_started = time.perf_counter()
    for index, name in enumerate(selected, 1):
        started = time.perf_counter()
        print(f"[{index}/{len(selected)}] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = BENCHES[name](args.quick)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            failed.append(name)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
            print(f"[{index}/{len(selected)}] {name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        seconds = round(time.perf_counter() - started, 1)
        results[name]["seconds"] = seconds
        print(f"[{index}/{len(selected)}] {name} done in {seconds} s", file=sys.stderr, flush=True)
    rows = _rows({name: value for name, value in results.items() if name not in failed})
    rows += [(f"{name}: benchmark failed", results[name]["error"][:60], "runs", False) for name in failed]
    if rows:
        _print_table(rows)
    if "breakdown" in results.get("overhead", {}):
        print()
        print(profile_breakdown.format_table(results["overhead"]["breakdown"]))
    results["table"] = [{"measure": m, "value": v, "target": t, "met": ok} for m, v, t, ok in rows]
    results["seconds"] = round(time.perf_counter() - run_started, 1)
    out.write_text(json.dumps(results, indent=2) + "\n")
    shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    print(f"\nwritten to {shown} ({'full run' if full else 'partial run: ' + RESULTS.name + ' untouched'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
