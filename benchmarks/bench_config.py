"""Config loading: what the hardened YAML reader costs on a normal file, and what it saves on a hostile one.

Side by side in one run:

- a normal user config (``configs/complete-example.yaml``) through `load_user_config` (limits,
  control-character scan, alias-expansion measure, line map, schema, params allow-list) against the
  bare pipeline the loader used to be (`yaml.safe_load` + `UserConfig.model_validate`);
- hostile documents: the time `load_user_config` takes to refuse them against what the bare pipeline
  spends on them (parsing a 1.1 MB file; for an alias bomb under ``params``, loading it and then one
  copy and serialisation of its params, which every call then paid).

    python -m benchmarks.bench_config [--quick]
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import parser, stop_children_on_signals
from lucky_litellm.config import UserConfig, load_user_config
from lucky_litellm.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "complete-example.yaml"


def _bomb(levels: int) -> str:
    lines = [
        "experiments:",
        "  x:",
        "    providers: [openai/gpt-4.1-mini]",
        "    params:",
        "      stop:",
        "        - &l0 [x, x, x, x, x, x, x, x, x, x]",
    ]
    for level in range(1, levels):
        lines.append(f"        - &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _median_ms(action: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 3)


def _refusal_ms(source: Any, runs: int) -> float:
    def refuse() -> None:
        try:
            load_user_config(source)
        except ConfigError:
            return
        raise AssertionError("expected a ConfigError")

    return _median_ms(refuse, runs)


def _bare(text: str) -> UserConfig:
    return UserConfig.model_validate(yaml.safe_load(text))


def _interleaved_ms(
    first: Callable[[], Any], second: Callable[[], Any], runs: int
) -> tuple[float, float, float]:
    """Median ms of each, run alternately so that a neighbour's burst of load slows both alike,
    and the median of the per-pair ratios first/second."""
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(runs):
        order = ((0, first), (1, second)) if index % 2 == 0 else ((1, second), (0, first))
        for slot, action in order:
            started = time.perf_counter()
            action()
            times[slot].append(time.perf_counter() - started)
    ratio = statistics.median(a / b for a, b in zip(*times, strict=True))
    return (
        round(statistics.median(times[0]) * 1000, 3),
        round(statistics.median(times[1]) * 1000, 3),
        round(ratio, 2),
    )


def run(quick: bool = False) -> dict[str, Any]:
    runs = 20 if quick else 50
    text = EXAMPLE.read_text()
    ours, bare, ratio = _interleaved_ms(lambda: load_user_config(text), lambda: _bare(text), runs)

    # 10^6 values once expanded: small enough to measure the bare pipeline at all
    bomb = _bomb(6)
    # the old schema let any params through, so the bare pipeline is the YAML load itself
    params = yaml.safe_load(bomb)["experiments"]["x"]["params"]
    bomb_load = _median_ms(lambda: yaml.safe_load(bomb), 3)
    # deepcopy keeps shared lists shared; the request body does not: every call serialised 10^6 values
    bomb_copy = _median_ms(lambda: json.dumps(copy.deepcopy(params)), 1 if quick else 3)
    bomb_refusal = _refusal_ms(bomb, runs)

    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big.yaml"
        big.write_text(text + "# padding\n" * 110_000)
        big_bare = _median_ms(lambda: _bare(big.read_text()), 1)  # loads fine (~0.4 s)
        big_refusal = _refusal_ms(big, runs)

    deep = "experiments:\n  x: " + "[" * 900 + "]" * 900 + "\n"
    deep_refusal = _refusal_ms(deep, runs)

    return {
        "normal_ms": ours,
        "normal_bare_ms": bare,
        "normal_ratio": ratio,
        "alias_bomb_1e6": {
            "refused_ms": bomb_refusal,
            "bare_load_ms": bomb_load,
            "bare_per_call_ms": bomb_copy,
            "per_call_cost_over_refusal": round(bomb_copy / bomb_refusal, 1),
        },
        "file_1_1mb": {
            "refused_ms": big_refusal,
            "bare_parse_ms": big_bare,
            "ratio": round(big_bare / big_refusal, 1),
        },
        "nesting_900_refused_ms": deep_refusal,
    }


def main(argv: list[str]) -> int:
    args = parser("benchmarks.bench_config", __doc__).parse_args(argv)
    with stop_children_on_signals():
        print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
