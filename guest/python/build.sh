#!/usr/bin/env bash
# Builds the Python guests into components with componentize-py:
#   src/stats.py      -> stats.wasm        world `command` of wit/ (resizable memory)
#   src/subscriber.py -> subscriber.wasm   world `subscriber` of wit/ (the channel, wasi:io/poll)
#
#   build.sh OUT_DIR [stats|subscriber]...   set up the tool (below) and build the named
#                                            (default: all); prints each component's path
#   build.sh setup                           only set up the tool
#
# The tool is installed into a project-local virtualenv, guest/python/.venv, at the version
# pinned in requirements.txt (reinstalled when that file changes). A component is rebuilt
# only when it is older than a source, the WIT or requirements.txt.
# Exit codes: 0 built (or up to date), 2 the tool could not be set up (no python3, no venv
# module, PyPI unreachable), 1 anything else (a build error).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
tool="$venv/bin/componentize-py"

setup() {
    local stamp="$venv/.requirements"
    if [[ -x "$tool" ]] && cmp -s "$here/requirements.txt" "$stamp"; then
        return 0
    fi
    command -v python3 >/dev/null || { echo "build.sh: python3 not found" >&2; return 2; }
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || { echo "build.sh: python3 -m venv failed" >&2; return 2; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2 \
        || { echo "build.sh: pip could not install $(cat "$here/requirements.txt")" >&2; return 2; }
    cp "$here/requirements.txt" "$stamp"
}

[[ $# -ge 1 ]] || { echo "usage: build.sh OUT_DIR [stats|subscriber]... | setup" >&2; exit 1; }
setup || exit $?
[[ "$1" == setup ]] && exit 0

# Absolute: the tool runs in another directory.
out_dir="$(mkdir -p "$1" && cd "$1" && pwd)"
shift
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(stats subscriber)
for name in "${names[@]}"; do
    case "$name" in
        stats) world=command ;;
        subscriber) world=subscriber ;;
        *) echo "build.sh: unknown component $name" >&2; exit 1 ;;
    esac
    out="$out_dir/$name.wasm"
    if [[ -f "$out" ]] && [[ -z "$(find -L "$here/src" "$here/wit" "$here/requirements.txt" "$here/build.sh" \
            -newer "$out" -type f -not -path '*/__pycache__/*' | head -1)" ]]; then
        echo "$out"
        continue
    fi
    # componentize-py bundles the modules of its Python path: only src/, never the virtualenv.
    (cd "$here" && env -u VIRTUAL_ENV "$tool" --quiet -d wit -w "$world" componentize "$name" \
        -p src -o "$out.tmp" >&2)
    mv "$out.tmp" "$out"
    echo "$out"
done
