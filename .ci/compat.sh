#!/usr/bin/env bash
# The suite (proxy tests aside) against the litellm versions a library user can get, besides the
# one `make test` uses (the proxy extra pins litellm lower than a plain install resolves):
#   newest  what `pip install lucky-litellm` resolves today (no extras)
#   floor   the lowest litellm pyproject.toml allows (LITELLM_FLOOR, read from pyproject.toml)
# Each runs in its own venv (.venv-compat-<name>, reused while pyproject.toml is unchanged).
# Usage: .ci/compat.sh [newest|floor]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
PYTHON=${PYTHON:-python3}
FLOOR=$(sed -n 's/^ *"litellm>=\([0-9][0-9.]*\)",$/\1/p' pyproject.toml | head -1)
[ -n "$FLOOR" ] || { echo "compat: no litellm floor found in pyproject.toml" >&2; exit 1; }

run() {
    local name=$1 pin=$2 venv=".venv-compat-$1"
    local stamp="$venv/.stamp-$(sha1sum pyproject.toml | cut -c1-12)-$pin"
    if [ ! -f "$stamp" ]; then
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
        # a plain install of the package (no proxy extra) and the test tools, litellm pinned or not
        if ! "$venv/bin/python" -m pip install -q ".[test]" ${pin:+"litellm==$pin"} >"$venv.log" 2>&1; then
            cat "$venv.log" >&2
            exit 1
        fi
        touch "$stamp"
    fi
    local version
    version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('litellm'))")
    echo "== compat/$name: litellm $version"
    # the working tree, not the copy installed in the venv
    PYTHONPATH="$PWD" timeout 900 "$venv/bin/python" -m pytest -q -m "not proxy" -p no:cacheprovider
}

for target in "${@:-newest floor}"; do
    for name in $target; do
        case $name in
            newest) run newest "" ;;
            floor) run floor "$FLOOR" ;;
            *) echo "compat: unknown target $name (newest|floor)" >&2; exit 2 ;;
        esac
    done
done
