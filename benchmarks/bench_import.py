"""Import cost: `import lucky_litellm` vs `import litellm`, each in a fresh interpreter.

Wall time is taken around the import statement inside the child; memory is the child's peak RSS
(`VmHWM` in /proc/self/status) next to that of an interpreter that imported nothing. Not
`getrusage().ru_maxrss`: Linux carries the parent's peak over `fork`+`exec`, so a child started
from a benchmark process that holds litellm would report litellm's footprint whatever it imports.

    python -m benchmarks.bench_import [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import parser, stop_children_on_signals

_PROBE = """
import time
started = time.perf_counter()
{statement}
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    fields = dict(line.split(":", 1) for line in status)
print(seconds, int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0]))
"""


def _measure(statement: str, runs: int) -> dict[str, Any]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    seconds, peak_kb = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(statement=statement)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.split()
        seconds.append(float(out[0]))
        peak_kb.append(float(out[1]))
    return {
        "ms": round(statistics.median(seconds) * 1000, 1),
        "ms_runs": [round(s * 1000, 1) for s in seconds],
        "rss_mb": round(statistics.median(peak_kb) / 1024, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Median over fresh interpreters. litellm's own import takes seconds and is there for
    comparison only, so it gets one run (three runs spread by ~6 %, and took 7 of 10 s)."""
    ours = _measure("import lucky_litellm", 3 if quick else 7)
    bare = _measure("pass", 3)
    litellm = _measure("import litellm", 1)
    return {
        "lucky_litellm": ours,
        "litellm": litellm,
        "bare_interpreter": bare,
        "lucky_litellm_rss_added_mb": round(ours["rss_mb"] - bare["rss_mb"], 1),
        "litellm_rss_added_mb": round(litellm["rss_mb"] - bare["rss_mb"], 1),
    }


def main(argv: list[str]) -> int:
    args = parser("benchmarks.bench_import", __doc__).parse_args(argv)
    with stop_children_on_signals():
        print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
