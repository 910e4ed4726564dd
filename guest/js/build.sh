#!/usr/bin/env bash
# Builds the JavaScript guests with componentize-js:
#   src/filter.js -> filter.wasm   world `plugin` of wit/resmem.wit (a filter plugin)
#   src/bench.js  -> bench.wasm    world `command` of guest/js/wit (the bench guest)
#   src/subscriber.js -> js-subscriber.wasm   world `subscriber` of guest/js/wit (a channel
#                                             subscriber waiting in wasi:io/poll.poll)
#
#   build.sh OUT_DIR [filter|bench|js-subscriber]...   set up the tool and build the named
#                                                      (default: all)
#   build.sh setup                                     only set up the tool
#
# The tool is installed into guest/js/node_modules by `npm ci` from package-lock.json (pinned
# versions; reinstalled when the lock file changes). The componentize-js CLI is called
# directly, with `-d http fetch-event` so the component does not import wasi:http, which
# resmem's host does not provide. A component is rebuilt only when it is older than its
# source, the WIT or the lock file.
# Exit codes: 0 built (or up to date), 2 the tool could not be set up (no node/npm, npm
# registry unreachable), 1 anything else (a build error).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tool="$here/node_modules/.bin/componentize-js"

setup() {
    local stamp="$here/node_modules/.resmem-lock"
    if [[ -x "$tool" ]] && cmp -s "$here/package-lock.json" "$stamp"; then
        return 0
    fi
    command -v node >/dev/null || { echo "build.sh: node not found" >&2; return 2; }
    command -v npm >/dev/null || { echo "build.sh: npm not found" >&2; return 2; }
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2) \
        || { echo "build.sh: npm ci could not install componentize-js" >&2; return 2; }
    cp "$here/package-lock.json" "$stamp"
}

[[ $# -ge 1 ]] || {
    echo "usage: build.sh OUT_DIR [filter|bench|js-subscriber]... | setup" >&2
    exit 1
}
setup || exit $?
[[ "$1" == setup ]] && exit 0

# Absolute: the tool runs in another directory.
out_dir="$(mkdir -p "$1" && cd "$1" && pwd)"
shift
mkdir -p "$out_dir"
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(filter bench js-subscriber)
for name in "${names[@]}"; do
    case "$name" in
        # The names are unique next to the Python guests' in one OUT_DIR.
        filter) src=filter; wit=wit; world=plugin ;;
        bench) src=bench; wit=guest/js/wit; world=command ;;
        js-subscriber) src=subscriber; wit=guest/js/wit; world=subscriber ;;
        *) echo "build.sh: unknown component $name" >&2; exit 1 ;;
    esac
    out="$out_dir/$name.wasm"
    if [[ -f "$out" ]] && [[ -z "$(find -L "$here/src/$src.js" "$root/$wit" "$here/package-lock.json" \
            "$here/build.sh" -newer "$out" -type f | head -1)" ]]; then
        echo "$out"
        continue
    fi
    # Relative paths from the repository root: the tool's WASI sandbox sees only its cwd.
    (cd "$root" && "$tool" "guest/js/src/$src.js" --wit "$wit" -n "$world" \
        -d http fetch-event -o "$out.tmp" >&2)
    mv "$out.tmp" "$out"
    echo "$out"
done
