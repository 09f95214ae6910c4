#!/usr/bin/env bash
# A 256 MiB response crosses both tiers intact, and neither tier buffers it: the peak RSS of every
# node process stays under E2E_RSS_LIMIT_KB (default 150 MiB, measured with the ASan build).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

N=268435456
limit_kb=${E2E_RSS_LIMIT_KB:-153600}
case "$CDN_NODE" in *valgrind*) limit_kb=${E2E_RSS_LIMIT_KB:-262144} ;; esac # memcheck shadow memory

# ASan's quarantine keeps up to 256 MiB of freed memory resident by default; that is the sanitizer's
# cost, not buffering by the node, so it is capped for this measurement (appended: the last value wins).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

two_tiers
want=$(pattern_sha256 $N) # before the download, so it does not compete for the CPU

got=$( (ecurl "$EDGE/bytes/$N" || echo "curl exit $?" >"$T/curl.rc") | sha256sum | cut -d' ' -f1)
[ ! -s "$T/curl.rc" ] || fail "GET /bytes/$N: $(cat "$T/curl.rc")"
assert_eq "$got" "$want" "sha256 of /bytes/$N"
assert_eq "$(origin_count)" 1 "requests at the origin"

# peak_kb PID: VmHWM of PID and each of its descendants (workers may be processes), the largest
peak_kb() {
    local max=0 p kb
    for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
        kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        [ -n "$kb" ] && [ "$kb" -gt "$max" ] && max=$kb
    done
    echo "$max"
}
for name in edge regional; do
    kb=$(peak_kb "$(pid_of $name)")
    echo "$name peak RSS: $kb kB (limit $limit_kb kB)"
    [ "$kb" -le "$limit_kb" ] || fail "$name peak RSS $kb kB is over $limit_kb kB"
done

stop_all
