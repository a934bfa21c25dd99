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


def test_dir_lists_exactly_the_public_api():
    code = "import lucky_litellm as ll\nprint(dir(ll) == sorted(ll.__all__))"
    assert _run(code) == "True"


def test_public_namespace_has_no_helper_or_typing_names():
    code = "import lucky_litellm as ll\nprint(' '.join(dir(ll)))"
    names = set(_run(code).split())
    leaked = {"Any", "Mapping", "Sequence", "TYPE_CHECKING", "annotations", "importlib", "errors", "spec"}
    assert names.isdisjoint(leaked)


def test_every_name_in_all_resolves_without_importing_litellm():
    code = (
        "import sys, lucky_litellm as ll\n"
        "missing = [n for n in ll.__all__ if not hasattr(ll, n)]\n"
        "print(missing, 'litellm' in sys.modules)"
    )
    assert _run(code) == "[] False"
