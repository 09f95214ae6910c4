#!/usr/bin/env bash
# The HTTP cache survives restarts of the edge and never serves a partial object: after SIGTERM and
# a start with the same store, stored objects are hits (neither the regional nor the origin is
# asked); a fill cut by a stop (SIGTERM twice: no graceful drain) or by kill -9 (while a slow client
# reads a 20 MB object) leaves the object either absent (fetched again) or complete (right sha256),
# never partial, and every other object still hits.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

LINES=("size: 256MiB" "max_object_size: 64MiB")
cache_tiers "${LINES[@]}"
MA='hdr=Cache-Control:max-age%3D600'
BIG=20000000

head -c 700000 /dev/urandom >"$T/want-f"
cp "$T/want-f" "$DOCROOT/f.bin"
touch -d '5 days ago' "$DOCROOT/f.bin" # heuristic freshness: a day

# check_all WHAT: the three small objects are edge hits with the right bodies
OBJECTS=("/a?$MA" "/bytes/3000000?$MA" "/files/f.bin")
check_all() {
    local u want
    for u in "${OBJECTS[@]}"; do
        fetch "$u"
        assert_eq "$CODE" 200 "status of $u ($1)"
        case $u in
        /a*) want=$(printf 'origin: %s\n' "$u" | sha256sum | cut -d' ' -f1) ;;
        /bytes/*) want=$(pattern_sha256 3000000) ;;
        *) want=$(sha256_of "$T/want-f") ;;
        esac
        assert_eq "$(sha256_of "$T/body")" "$want" "body of $u ($1)"
        assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of $u ($1)"
    done
}

# edge_objects: the object count the edge logged when it opened its store
edge_objects() {
    sed -n 's/.*cache: .*cache-edge: \([0-9]*\) objects.*/\1/p' "$T/edge.err" | tail -n1
}

# slow_fill URL: starts a client reading URL at 4 MB/s (into $T/slow, pid SLOW_PID) and returns once
# 2 MB have arrived: the edge is then in the middle of filling URL, held back by the slow client (it
# reads from the regional only as fast as the client takes bytes, plus the sockets' buffers, a few MB
# on loopback). The client then gets what the buffers held, less than the whole body: that proves
# the edge was cut mid-fill.
slow_fill() {
    rm -f "$T/slow"
    ecurl --limit-rate 4M -o "$T/slow" "$EDGE$1" 2>/dev/null &
    SLOW_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(stat -c %s "$T/slow" 2>/dev/null || echo 0)" -ge 2000000 ] && return 0
        sleep 0.1
    done
    fail "the slow client of $1 got $(stat -c %s "$T/slow" 2>/dev/null || echo 0) bytes in 10 s"
}

# absent_or_complete URL WHAT: after a cut fill, URL is either a hit with the whole body or a miss that
# fetches it again; either way the body is whole, and the next request is a hit
absent_or_complete() {
    local r
    r=$(access_count regional)
    fetch "$1"
    assert_eq "$CODE" 200 "status of $1 ($2)"
    assert_eq "$(stat -c %s "$T/body")" "$BIG" "size of $1 ($2)"
    assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 "$BIG")" "sha256 of $1 ($2)"
    case $LAST_CS in
    "cdn-node-edge; hit;"*)
        assert_eq "$(access_count regional "$r")" "$r" "requests at the regional for $1, a hit ($2)"
        echo "$2: the object was complete"
        ;;
    "cdn-node-edge; fwd=uri-miss;"*)
        assert_eq "$(access_count regional $((r + 1)))" $((r + 1)) "requests at the regional for $1, a miss ($2)"
        echo "$2: the object was absent"
        ;;
    *) fail "Cache-Status of $1 ($2): neither a hit nor a miss: '$CS'" ;;
    esac
    settle
    fetch "$1"
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of $1 after it was fetched again ($2)"
    assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 "$BIG")" "sha256 of $1 from the cache ($2)"
}

# --- fill, restart after SIGTERM: every object is still a hit ---------------------------------------------
for u in "${OBJECTS[@]}"; do
    fetch "$u"
    assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of the first $u"
done
settle
check_all "before the restart"
o=$(origin_count) r=$(access_count regional)
stop edge
cache_edge edge "${LINES[@]}"
[ "$(edge_objects)" -ge 3 ] || fail "objects the edge found in its store after SIGTERM: '$(edge_objects)'"
check_all "after SIGTERM and a restart"
assert_eq "$(origin_count)" "$o" "requests at the origin after the restart"
assert_eq "$(access_count regional "$r")" "$r" "requests at the regional after the restart"

# --- SIGTERM in the middle of a fill --------------------------------------------------------------------
# Two SIGTERMs: a graceful stop lets responses in flight finish (timeouts.drain); the second signal
# ends that drain at once, so the fill is cut whichever shutdown the node implements.
slow_fill "/bytes/$BIG?$MA&cut=term"
kill -TERM "$(pid_of edge)"
sleep 0.3
kill -TERM "$(pid_of edge)" 2>/dev/null || true
stop edge
wait "$SLOW_PID" && fail "the slow client of the fill cut by SIGTERM got the whole body"
[ "$(stat -c %s "$T/slow")" -lt "$BIG" ] || fail "the slow client got everything before SIGTERM"
cache_edge edge "${LINES[@]}"
absent_or_complete "/bytes/$BIG?$MA&cut=term" "fill cut by SIGTERM"
check_all "after a fill cut by SIGTERM"

# --- kill -9 in the middle of a fill ---------------------------------------------------------------------
slow_fill "/bytes/$BIG?$MA&cut=kill"
kill9 edge
wait "$SLOW_PID" && fail "the slow client of the fill cut by kill -9 got the whole body"
[ "$(stat -c %s "$T/slow")" -lt "$BIG" ] || fail "the slow client got everything before kill -9"
cp "$T/edge.err" "$T/edge-killed.err"
cache_edge edge "${LINES[@]}"
[ "$(edge_objects)" -ge 4 ] || fail "objects the edge found in its store after kill -9: '$(edge_objects)'"
if grep -E '\[(warn|error)\]' "$T/edge.err"; then
    fail "the edge complained when it opened the store after kill -9"
fi
o=$(origin_count) r=$(access_count regional)
check_all "after kill -9 and a restart"
fetch "/bytes/$BIG?$MA&cut=term"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of the object completed after SIGTERM, after kill -9"
assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 "$BIG")" "sha256 of the object completed after SIGTERM, after kill -9"
assert_eq "$(origin_count)" "$o" "requests at the origin for the objects stored before kill -9"
assert_eq "$(access_count regional "$r")" "$r" "requests at the regional for the objects stored before kill -9"
absent_or_complete "/bytes/$BIG?$MA&cut=kill" "fill cut by kill -9"

stop_all
