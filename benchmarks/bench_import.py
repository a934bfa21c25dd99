"""Import cost: `import lucky_litellm` vs `import litellm`, each in a fresh interpreter.

python -m benchmarks.bench_import [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

_PROBE = (
    "import resource, time; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def _measure(module: str, runs: int) -> dict[str, float]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    seconds, rss_kb = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.split()
        seconds.append(float(out[0]))
        rss_kb.append(float(out[1]))
    return {
        "ms": round(statistics.median(seconds) * 1000, 1),
        "rss_mb": round(statistics.median(rss_kb) / 1024, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    runs = 3  # litellm's import alone takes seconds; three fresh interpreters give a stable median
    ours = _measure("lucky_litellm", runs)
    litellm = _measure("litellm", runs)
    return {"lucky_litellm": ours, "litellm": litellm}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
