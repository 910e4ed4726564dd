#!/usr/bin/env bash
# The Python package `resmem` (PyO3 extension + python/resmem), in a project-local virtualenv:
#
#   build.sh setup     install the pinned tools (requirements.txt) into host/python/.venv
#   build.sh develop   setup, then build the extension (release) and install it into the venv
#   build.sh test      develop, then run the pytest suite (tests/); extra args go to pytest
#   build.sh python    develop, then print the venv's python (for tests that run scripts)
#   build.sh bench     develop, install bench-requirements.txt (iceoryx2), run bench/receive_sum.py
#
# $RESMEM_PYTHON picks the interpreter (default python3; >= 3.9). For CPython >= 3.11 the
# extension is abi3 (one wheel for all later versions), for 3.9 and 3.10 version-specific; each
# interpreter gets its own virtualenv (.venv for the default, .venv-<name> else) and builds in
# <repo>/target/python[-<name>] (its own cargo workspace). Exit codes: 0 done,
# 2 the tools could not be set up (no python3, no venv module, PyPI unreachable), else the
# failing step's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
interpreter="${RESMEM_PYTHON:-python3}"
if [[ -z "${RESMEM_PYTHON:-}" ]]; then
    venv="$here/.venv"
    target="$repo/target/python"
else
    tag="$(basename "$interpreter")"
    venv="$here/.venv-$tag"
    target="$repo/target/python-$tag"
fi
python="$venv/bin/python"

setup() {
    local stamp="$venv/.requirements"
    if [[ -x "$venv/bin/maturin" ]] && cmp -s "$here/requirements.txt" "$stamp"; then
        return 0
    fi
    command -v "$interpreter" >/dev/null || { echo "build.sh: $interpreter not found" >&2; return 2; }
    rm -rf "$venv"
    "$interpreter" -m venv "$venv" >&2 || { echo "build.sh: $interpreter -m venv failed" >&2; return 2; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2 \
        || { echo "build.sh: pip could not install $(tr '\n' ' ' < "$here/requirements.txt")" >&2; return 2; }
    cp "$here/requirements.txt" "$stamp"
}

develop() {
    # Rebuilt only when a source is newer than the installed extension.
    local stamp="$venv/.built"
    if [[ -f "$stamp" ]] && [[ -z "$(find "$here/src" "$here/python" "$here/Cargo.toml" "$here/Cargo.lock" \
            "$here/pyproject.toml" "$repo/host/segments/src" "$repo/host/segments/Cargo.toml" \
            -newer "$stamp" -type f -not -path '*/__pycache__/*' | head -1)" ]]; then
        return 0
    fi
    local features=()
    if "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        features=(--features abi3)
    fi
    (cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$target" \
        "$venv/bin/maturin" develop --quiet --release "${features[@]}" >&2)
    touch "$stamp"
}

bench_tools() {
    local stamp="$venv/.bench-requirements"
    cmp -s "$here/bench-requirements.txt" "$stamp" && return 0
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/bench-requirements.txt" >&2 \
        || { echo "build.sh: pip could not install $(cat "$here/bench-requirements.txt")" >&2; return 2; }
    cp "$here/bench-requirements.txt" "$stamp"
}

[[ $# -ge 1 ]] || { echo "usage: build.sh setup|develop|test|python|bench" >&2; exit 1; }
cmd="$1"
shift
setup || exit $?
case "$cmd" in
    setup) ;;
    develop) develop ;;
    test) develop; cd "$here" && "$python" -m pytest -q tests "$@" ;;
    python) develop; echo "$python" ;;
    bench) develop; bench_tools; "$python" "$here/bench/receive_sum.py" "$@" ;;
    *) echo "build.sh: unknown command $cmd" >&2; exit 1 ;;
esac
