"""Every script in examples/ runs offline and prints what its docstring promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPECTED = {
    "quickstart.py": ["tier:medium -> openai/gpt-4.1-mini", "won"],
    "migration.py": ["researcher-1 -> registry", "user-7       -> legacy", "researcher-1 -> legacy"],
    "streaming.py": ["autumn wind", "'openai/gpt-4.1-nano': 'won'"],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_and_prints_its_result(script):
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, str(Path("examples") / script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for text in EXPECTED[script]:
        assert text in result.stdout


def test_every_example_is_covered():
    assert sorted(p.name for p in Path("examples").glob("*.py")) == sorted(EXPECTED)
