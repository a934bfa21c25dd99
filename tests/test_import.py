"""`import lucky_litellm` stays light: litellm is imported on the first call, not before."""

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_importing_the_package_does_not_import_litellm():
    loaded = _run("import sys, lucky_litellm; print('litellm' in sys.modules)")
    assert loaded == "False"


def test_public_names_resolve_without_importing_litellm():
    code = (
        "import sys, lucky_litellm as ll\n"
        "ll.Models, ll.ModelsConfig, ll.validate_user_config, ll.routing_of\n"
        "from lucky_litellm import rollout\n"
        "from lucky_litellm.tiers import DEFAULT_MODELS, tier_resolver\n"
        "print('litellm' in sys.modules)"
    )
    assert _run(code) == "False"
