#!/usr/bin/env bash
# The HTTP cache of both tiers, serving stale (RFC 5861, RFC 9111 4.2.4): an expired object with
# stale-if-error is served when its upstream fails (origin down: by the regional; regional without
# the object: by the edge on the regional's 502; regional down: by the edge), and only within the
# stale-if-error window; without it the client gets the error, unless the request itself carries
# stale-if-error. stale-while-revalidate: the stale object is served at once and revalidated once in
# the background.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2119 # no extra cache settings
cache_tiers

# put_file NAME BYTES: DOCROOT/NAME becomes BYTES random bytes, a copy in $T/want-NAME
put_file() {
    head -c "$2" /dev/urandom >"$T/put.tmp"
    cp "$T/put.tmp" "$T/want-$1"
    mv "$T/put.tmp" "$DOCROOT/$1"
}

# is_error CODE WHAT: a 502 or a 504
is_error() {
    case $1 in
    502 | 504) ;;
    *) fail "$2: expected 502 or 504, got $1 (body: $(head -c 200 "$T/body"))" ;;
    esac
}

# --- stale-while-revalidate: served at once, revalidated once in the background ---------------------------
{
    SWR='hdr=Cache-Control:max-age%3D3,%20stale-while-revalidate%3D30'
    fetch "/slow/1500?$SWR"
    assert_eq "$(cat "$T/body")" "slow" "body of the first /slow/1500"
    settle
    sleep 3.2
    o=$(origin_count)
    fetch "/slow/1500?$SWR"
    assert_eq "$CODE" 200 "status of a stale object within stale-while-revalidate"
    assert_eq "$(cat "$T/body")" "slow" "body of a stale object within stale-while-revalidate"
    awk -v s="$SECS" 'BEGIN { exit !(s < 1.0) }' ||
        fail "a stale object within stale-while-revalidate took ${SECS}s: it waited for the 1.5 s origin"
    assert_match "$LAST_CS" "cdn-node-edge; (hit|fwd=stale).*" "Cache-Status within stale-while-revalidate"
    for ((i = 0; i < 50; i++)); do
        [ "$(origin_count)" -gt "$o" ] && break
        sleep 0.1
    done
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin: one background revalidation"
    fetch "/slow/1500?$SWR"
    awk -v s="$SECS" 'BEGIN { exit !(s < 1.0) }' || fail "the request after the revalidation took ${SECS}s"
    sleep 2
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin 2 s later: still one revalidation"
}

# --- five objects, all expired 3 s later -----------------------------------------------------------------
SIE='hdr=Cache-Control:max-age%3D1,%20stale-if-error%3D60'
SHORT='hdr=Cache-Control:max-age%3D1,%20stale-if-error%3D1'
NOSIE='hdr=Cache-Control:max-age%3D1'
# must-revalidate and s-maxage (which implies proxy-revalidate for us) forbid serving stale at all
MR='hdr=Cache-Control:max-age%3D1,%20must-revalidate,%20stale-if-error%3D60'
SM='hdr=Cache-Control:s-maxage%3D1,%20stale-if-error%3D60'
put_file s.bin 50000
put_file w.bin 40000
put_file n.bin 30000
put_file mr.bin 20000
put_file sm.bin 10000
for f in "s.bin?$SIE" "w.bin?$SHORT" "n.bin?$NOSIE" "mr.bin?$MR" "sm.bin?$SM"; do
    fetch "/files/$f"
    assert_eq "$CODE" 200 "status of /files/$f"
    assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-${f%%\?*}")" "body of /files/$f"
    assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of /files/$f"
done
settle
sleep 3.2 # age >= 3: stale by 2 s or more, beyond w.bin's stale-if-error=1

# --- the origin is down: the regional serves stale-if-error objects -------------------------------------
stop origin
o=$(origin_count)
fetch "/files/s.bin?$SIE"
assert_eq "$CODE" 200 "status of a stale-if-error object, origin down"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-s.bin")" "body of a stale-if-error object, origin down"
assert_match "$CS" "cdn-node-regional; fwd=stale; ttl=-[0-9]+, cdn-node-edge; fwd=stale; fwd-status=304; ttl=-[0-9]+" \
    "Cache-Status of a stale-if-error object, origin down (the regional served it stale)"
[ "$AGE" -ge 3 ] || fail "Age of the stale object: expected >= 3, got '$AGE'"
fetch "/files/s.bin?$SIE"
assert_eq "$CODE" 200 "status of a stale-if-error object, origin down, again"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-s.bin")" "body of a stale-if-error object, again"
fetch "/files/n.bin?$NOSIE"
is_error "$CODE" "status of a stale object without stale-if-error, origin down"
fetch "/files/w.bin?$SHORT"
is_error "$CODE" "status of an object stale beyond its stale-if-error=1, origin down"
fetch "/files/n.bin?$NOSIE" -H 'Cache-Control: stale-if-error=600'
assert_eq "$CODE" 200 "status for a request with stale-if-error=600 (RFC 5861 4), origin down"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-n.bin")" "body for a request with stale-if-error=600"
fetch "/files/mr.bin?$MR"
is_error "$CODE" "status of a stale must-revalidate object with stale-if-error, origin down"
fetch "/files/sm.bin?$SM"
is_error "$CODE" "status of a stale s-maxage object with stale-if-error, origin down"
fetch /files/never.bin
is_error "$CODE" "status of an object never cached, origin down"
assert_eq "$(origin_count)" "$o" "requests logged by the stopped origin"

# --- a regional without the objects answers 502: the edge serves its stale copy -------------------------
stop regional
sed -i -e "s/^    port: 0\$/    port: $REGIONAL_PORT/" -e 's/^  path: cache-regional$/  path: cache-regional-empty/' \
    "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
assert_eq "$(port_of regional https)" "$REGIONAL_PORT" "port of the restarted regional"
fetch "/files/s.bin?$SIE"
assert_eq "$CODE" 200 "status of a stale-if-error object, regional answering 502"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-s.bin")" "body of a stale-if-error object, regional answering 502"
assert_match "$LAST_CS" "cdn-node-edge; fwd=stale; fwd-status=502; ttl=-[0-9]+" \
    "the edge's Cache-Status member when it serves stale on the regional's 502"
fetch "/files/n.bin?$NOSIE"
is_error "$CODE" "status of a stale object without stale-if-error, regional answering 502"

# --- the regional is down: the edge serves stale on its own -------------------------------------------------
stop regional
fetch "/files/s.bin?$SIE"
assert_eq "$CODE" 200 "status of a stale-if-error object, regional down"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-s.bin")" "body of a stale-if-error object, regional down"
assert_match "$LAST_CS" "cdn-node-edge; fwd=stale; ttl=-[0-9]+" \
    "the edge's Cache-Status member when it serves stale with its upstream down"
fetch "/files/n.bin?$NOSIE"
is_error "$CODE" "status of a stale object without stale-if-error, regional down"
fetch "/files/w.bin?$SHORT"
is_error "$CODE" "status of an object stale beyond its stale-if-error=1, regional down"
fetch "/files/mr.bin?$MR"
is_error "$CODE" "status of a stale must-revalidate object with stale-if-error, regional down"

stop_all
