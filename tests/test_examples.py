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
    """As the README says to run them, from the clone's root; `lucky-litellm dev`'s variables
    (another active provider) must not change what they show, and nothing warns."""
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LUCKY_PROVIDER": "local",
        "LUCKY_LOCAL_API_BASE": "http://127.0.0.1:9/v1",
    }
    result = subprocess.run(
        [sys.executable, str(Path("examples") / script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for text in EXPECTED[script]:
        assert text in result.stdout
    assert "Warning" not in result.stderr, result.stderr[-2000:]


def test_every_example_is_covered():
    assert sorted(p.name for p in Path("examples").glob("*.py")) == sorted(EXPECTED)
