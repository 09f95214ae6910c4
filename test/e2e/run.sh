#!/bin/sh
# End-to-end test runner: runs test/e2e/NN_*.sh in order, each in its own temporary folder T and
# under a time limit, and ends with the line "N passed, N failed" (exit 1 if any failed).
#
#   test/e2e/run.sh [WORD...]     only the tests whose file name contains one of the WORDs
#
# Environment: CDN_NODE (default build/cdn-node), ORIGIN (default build/origin),
# E2E_TIMEOUT (seconds per test, default 120), E2E_KEEP=1 keeps the folders of passing tests too.
# A failing test's folder is kept and named in the output, with the tail of its logs.
set -u

src=$(cd "$(dirname "$0")/../.." && pwd)
abs() {
    case "$1" in
    /*) echo "$1" ;;
    *) echo "$(pwd)/$1" ;;
    esac
}
CDN_NODE=$(abs "${CDN_NODE:-$src/build/cdn-node}")
ORIGIN=$(abs "${ORIGIN:-$src/build/origin}")
E2E_SRC=$src
timeout_s=${E2E_TIMEOUT:-120}
export CDN_NODE ORIGIN E2E_SRC

for b in "$CDN_NODE" "$ORIGIN"; do
    if [ ! -x "$b" ]; then
        echo "e2e: $b is not built" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
done

root=$(mktemp -d "${TMPDIR:-/tmp}/cdn-e2e.XXXXXX")
E2E_PKI_CACHE=$root/pki
export E2E_PKI_CACHE

passed=0
failed=0
for t in "$src"/test/e2e/[0-9]*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    if [ $# -gt 0 ]; then
        want=0
        for w in "$@"; do
            case "$name" in *"$w"*) want=1 ;; esac
        done
        [ $want = 1 ] || continue
    fi
    T=$(mktemp -d "$root/$name.XXXXXX")
    export T
    start=$(date +%s)
    # timeout signals the whole process group, so the test's own processes get TERM too.
    timeout -k 10 "$timeout_s" bash "$t" </dev/null >"$T/test.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    # a test must stop every process it started: anything still running from its folder is a leak
    leaked=$(pgrep -f "$T/" 2>/dev/null | tr '\n' ' ')
    if [ -n "$leaked" ]; then
        kill -KILL $leaked 2>/dev/null
        echo "leaked processes (killed): $leaked" >>"$T/test.log"
        [ $rc -eq 0 ] && rc=3
    fi
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS $name (${secs}s)"
        [ "${E2E_KEEP:-0}" = 1 ] || rm -rf "$T"
    else
        failed=$((failed + 1))
        why="exit status $rc"
        [ -n "$leaked" ] && why="left processes running: $leaked"
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${timeout_s}s"
        echo "FAIL $name ($why; folder $T)"
        echo "---- $name: test output (last 40 lines)"
        tail -n 40 "$T/test.log" | sed 's/^/    /'
        for f in "$T"/*.err; do
            [ -s "$f" ] || continue
            echo "---- $name: $(basename "$f") (last 20 lines)"
            tail -n 20 "$f" | sed 's/^/    /'
        done
        echo "----"
    fi
done

rm -rf "$E2E_PKI_CACHE"
rmdir "$root" 2>/dev/null
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
