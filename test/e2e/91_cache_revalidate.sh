#!/usr/bin/env bash
# The HTTP cache of both tiers, validation (RFC 9111 4.3): a stale object is revalidated with a
# conditional request, a 304 freshens it and the client still gets the whole stored body; a changed
# object comes back as a 200 that replaces the stored one; a client's own conditional request is
# answered 304 from the cache; a no-cache response is stored but revalidated on every use.
#
# Files come from the origin's --docroot ($DOCROOT), whose ETag is the quoted sha256 of the content.
# They are replaced with mv, so the origin never serves half of each version.
#
# Why max-age=3 and not 1: ages are whole seconds and every tier adds its own response delay (RFC 9111
# 4.2.3, corrected_age_value = Age + response_delay), so one clock tick during a revalidation that
# crosses both tiers can age the edge's copy by 2 s at once. Only a lifetime of 3 s leaves an object
# certainly fresh for the request that follows within a second.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2119 # no extra cache settings
cache_tiers
O=http://127.0.0.1:$ORIGIN_PORT

# put_file NAME BYTES: DOCROOT/NAME becomes BYTES random bytes (atomically); sets ETAG (quoted sha256)
put_file() {
    head -c "$2" /dev/urandom >"$T/put.tmp"
    ETAG="\"$(sha256_of "$T/put.tmp")\""
    cp "$T/put.tmp" "$T/want-$1"
    mv "$T/put.tmp" "$DOCROOT/$1"
}

# ocurl ARGS...: straight to the origin; prints the status, head in $T/ohead, body in $T/obody
ocurl() {
    rm -f "$T/ohead" "$T/obody"
    : >"$T/obody"
    curl -sS -D "$T/ohead" -o "$T/obody" -w '%{http_code}' "$@"
}

# quick T0: less than 1 s has passed since T0 (from now_s). Requests made within 1 s of the one that
# stored or revalidated a max-age=3 object find it fresh whatever the clock did (see above); on a
# machine so loaded that this does not hold, the freshness checks that depend on it are skipped.
now_s() {
    date +%s.%N
}
quick() {
    awk -v t0="$1" -v t="$(now_s)" 'BEGIN { exit !(t - t0 < 1.0) }' && return 0
    echo "note: $(awk -v t0="$1" -v t="$(now_s)" 'BEGIN { printf "%.2f", t - t0 }') s since the fill: too slow to check freshness" >&2
    return 1
}

# --- the test origin's validators (straight to the origin) ----------------------------------------------
put_file o.bin 5000
code=$(ocurl "$O/files/o.bin")
assert_eq "$code" 200 "origin: status of /files/o.bin"
assert_eq "$(sha256_of "$T/obody")" "$(sha256_of "$T/want-o.bin")" "origin: body of /files/o.bin"
assert_contains "$(tr -d '\r' <"$T/ohead")" "ETag: $ETAG" "origin: head of /files/o.bin"
lm=$(tr -d '\r' <"$T/ohead" | sed -n 's/^Last-Modified: //p')
[ -n "$lm" ] || fail "origin: no Last-Modified in $(cat "$T/ohead")"
for inm in "$ETAG" "W/$ETAG" "\"x\", W/\"y\" , $ETAG" "*"; do
    code=$(ocurl -H "If-None-Match: $inm" "$O/files/o.bin?hdr=Cache-Control:max-age%3D7")
    assert_eq "$code" 304 "origin: status for If-None-Match: $inm"
    assert_eq "$(stat -c %s "$T/obody")" 0 "origin: body of a 304"
    assert_contains "$(tr -d '\r' <"$T/ohead")" "ETag: $ETAG" "origin: head of a 304"
    assert_contains "$(tr -d '\r' <"$T/ohead")" "Cache-Control: max-age=7" "origin: head of a 304"
done
assert_eq "$(ocurl -H 'If-None-Match: "x", W/"y"' "$O/files/o.bin")" 200 "origin: status for a non-matching If-None-Match"
assert_eq "$(ocurl -H "If-Modified-Since: $lm" "$O/files/o.bin")" 304 "origin: status for If-Modified-Since = Last-Modified"
assert_eq "$(ocurl -H 'If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT' "$O/files/o.bin")" 200 \
    "origin: status for an older If-Modified-Since"
assert_eq "$(ocurl -H 'If-None-Match: "x"' -H "If-Modified-Since: $lm" "$O/files/o.bin")" 200 \
    "origin: If-None-Match wins over If-Modified-Since"
assert_eq "$(ocurl "$O/files/absent")" 404 "origin: status of a missing file"
assert_eq "$(grep -c ' conditional$' "$T/origin.log")" 8 "origin: conditional requests logged as such"
assert_eq "$(grep -c '^GET /files/o.bin$' "$T/origin.log")" 1 "origin: unconditional requests logged as before"

# --- a stale object is revalidated: 304 at the origin, the whole stored body to the client ---------------
MA='hdr=Cache-Control:max-age%3D3'
put_file a.bin 300000
ETAG1=$ETAG
sleep_until_second_start
t0=$(now_s)
fetch "/files/a.bin?$MA"
assert_eq "$CODE" 200 "status of the first GET /files/a.bin"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-a.bin")" "body of the first GET /files/a.bin"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=[0-3], cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=[0-3]" \
    "Cache-Status of the first GET /files/a.bin"
assert_eq "$(header_of ETag)" "$ETAG1" "ETag of /files/a.bin"
settle
o=$(origin_count) r=$(access_count regional)
fetch "/files/a.bin?$MA"
if quick "$t0"; then
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[123]" "Cache-Status of GET /files/a.bin while fresh"
    assert_eq "$(origin_count)" "$o" "requests at the origin while /files/a.bin is fresh"
fi

sleep 3.2
o=$(origin_count) r=$(access_count regional)
t0=$(now_s)
fetch "/files/a.bin?$MA"
assert_eq "$CODE" 200 "status of GET /files/a.bin once stale (revalidated)"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-a.bin")" "body of the revalidated GET /files/a.bin"
assert_eq "$(header_of Content-Length)" 300000 "Content-Length of the revalidated GET /files/a.bin"
assert_match "$CS" "cdn-node-regional; fwd=stale; fwd-status=304; ttl=-?[0-9]+, cdn-node-edge; fwd=stale; fwd-status=304; ttl=-?[0-9]+" \
    "Cache-Status of a revalidation answered 304 by the origin"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin for the revalidation"
last=$(tail -n1 "$T/origin.log")
assert_contains "$last" "GET /files/a.bin?$MA inm=$ETAG1" "the origin's log of the revalidation"
assert_match "$last" '.* conditional' "the origin's log of the revalidation"
assert_eq "$(access_count regional $((r + 1)))" $((r + 1)) "requests at the regional for the revalidation"
assert_match "$(tail -n1 "$T/regional.access")" '.*"GET [^ ]* HTTP/1.1" 304 0 .*' \
    "the regional answered the edge's revalidation with a 304 (the edge sent its stored body)"
settle
fetch "/files/a.bin?$MA"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-a.bin")" "body right after the revalidation"
if quick "$t0"; then
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status right after the revalidation (fresh again)"
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin right after the revalidation"
    assert_eq "$(access_count regional $((r + 1)))" $((r + 1)) "requests at the regional right after the revalidation"
fi

# --- a client's own conditional request is answered from the cache (a long-lived object) -----------------
LONG='hdr=Cache-Control:max-age%3D600'
put_file l.bin 40000
ETAGL=$ETAG
fetch "/files/l.bin?$LONG"
LM=$(header_of Last-Modified)
settle
o=$(origin_count) r=$(access_count regional)
for inm in "$ETAGL" "W/$ETAGL" "\"nope\", $ETAGL" "*"; do
    fetch "/files/l.bin?$LONG" -H "If-None-Match: $inm"
    assert_eq "$CODE" 304 "status for the client's If-None-Match: $inm"
    assert_eq "$(stat -c %s "$T/body")" 0 "body of the edge's 304"
    assert_eq "$(header_of ETag)" "$ETAGL" "ETag of the edge's 304"
    assert_eq "$(header_of Cache-Control)" "max-age=600" "Cache-Control of the edge's 304"
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of the edge's 304"
done
fetch "/files/l.bin?$LONG" -H 'If-None-Match: "nope"'
assert_eq "$CODE" 200 "status for a client's non-matching If-None-Match"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-l.bin")" "body for a non-matching If-None-Match"
fetch "/files/l.bin?$LONG" -H "If-Modified-Since: $LM"
assert_eq "$CODE" 304 "status for the client's If-Modified-Since = Last-Modified"
fetch "/files/l.bin?$LONG" -H 'If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT'
assert_eq "$CODE" 200 "status for the client's older If-Modified-Since"
fetch "/files/l.bin?$LONG" -H 'If-None-Match: "nope"' -H "If-Modified-Since: $LM"
assert_eq "$CODE" 200 "status for a non-matching If-None-Match with a matching If-Modified-Since"
assert_eq "$(origin_count)" "$o" "requests at the origin for the client's conditionals"
assert_eq "$(access_count regional "$r")" "$r" "requests at the regional for the client's conditionals"

# --- replacement: the file changes; once stale, the origin answers 200 and that replaces the copy ---------
put_file a.bin 200000
ETAG2=$ETAG
[ "$ETAG2" != "$ETAG1" ] || fail "the new content has the old ETag"
sleep 3.2
o=$(origin_count)
t0=$(now_s)
fetch "/files/a.bin?$MA"
assert_eq "$CODE" 200 "status of GET /files/a.bin after the change"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-a.bin")" "body of GET /files/a.bin after the change (new content)"
assert_eq "$(header_of ETag)" "$ETAG2" "ETag of GET /files/a.bin after the change"
assert_match "$CS" "cdn-node-regional; fwd=stale; fwd-status=200; stored; ttl=[0-3], cdn-node-edge; fwd=stale; fwd-status=200; stored; ttl=[0-3]" \
    "Cache-Status of a revalidation answered 200 by the origin"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after the change"
assert_contains "$(tail -n1 "$T/origin.log")" "inm=$ETAG1" "the origin's log of the revalidation with the old ETag"
settle
fetch "/files/a.bin?$MA"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-a.bin")" "body of the next GET (new content from the cache)"
assert_eq "$(header_of ETag)" "$ETAG2" "ETag of the next GET"
if quick "$t0"; then
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of the next GET (the new copy is stored)"
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after the next GET"
fi
fetch "/files/a.bin?$MA" -H "If-None-Match: $ETAG1"
assert_eq "$CODE" 200 "status for a client's If-None-Match with the old ETag"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-a.bin")" "body for a client's If-None-Match with the old ETag"
fetch "/files/a.bin?$MA" -H "If-None-Match: $ETAG2"
assert_eq "$CODE" 304 "status for a client's If-None-Match with the new ETag"

# --- a client's conditional on a stale object: revalidated upstream, then 304 to the client --------------
sleep 3.2
o=$(origin_count)
fetch "/files/a.bin?$MA" -H "If-None-Match: $ETAG2"
assert_eq "$CODE" 304 "status of a client's matching If-None-Match on a stale object"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin for it"
assert_contains "$(tail -n1 "$T/origin.log")" "inm=$ETAG2" "the origin's log of the revalidation"
assert_match "$CS" ".*cdn-node-edge; fwd=stale; fwd-status=304; ttl=-?[0-9]+" "Cache-Status of it"

# --- a client's conditional on a cold key goes to the origin; its 304 is not stored as the object ---------
put_file c.bin 1000
o=$(origin_count)
fetch "/files/c.bin?$MA" -H "If-None-Match: $ETAG"
assert_eq "$CODE" 304 "status of a client's matching If-None-Match on a cold key"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin for it"
settle
fetch "/files/c.bin?$MA"
assert_eq "$CODE" 200 "status of a plain GET after the 304"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-c.bin")" "body of a plain GET after the 304"
assert_eq "$(origin_count)" $((o + 2)) "requests at the origin for the plain GET"

# --- Cache-Control: no-cache (response): stored, but revalidated before every use -------------------------
put_file nc.bin 70000
NC='hdr=Cache-Control:no-cache'
fetch "/files/nc.bin?$NC"
assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of the first no-cache GET"
settle
for i in 1 2; do
    o=$(origin_count)
    fetch "/files/nc.bin?$NC"
    assert_eq "$CODE" 200 "status of no-cache GET $i"
    assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-nc.bin")" "body of no-cache GET $i"
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin for no-cache GET $i"
    assert_match "$(tail -n1 "$T/origin.log")" ".* conditional" "the origin's log of no-cache GET $i"
    assert_match "$CS" "cdn-node-regional; fwd=stale; fwd-status=304; ttl=-?[0-9]+, cdn-node-edge; fwd=stale; fwd-status=304; ttl=-?[0-9]+" \
        "Cache-Status of no-cache GET $i"
    settle
done

# --- the client forces a revalidation of a fresh object (no-cache, max-age=0): 304, fwd=request ------------
# RFC 9211 2.2 / docs/CACHING.md 10: fwd=request when "the request forced it", fwd=stale only for a
# stale object. (Last in this file: a failure here leaves the checks above meaningful.)
put_file rq.bin 20000
RQ='hdr=Cache-Control:max-age%3D60'
fetch "/files/rq.bin?$RQ"
settle
for cc in no-cache max-age=0; do
    sleep 1.1 # age >= 1 (also after the previous revalidation restarted it), so that max-age=0 applies
    o=$(origin_count)
    fetch "/files/rq.bin?$RQ" -H "Cache-Control: $cc"
    assert_eq "$CODE" 200 "status of a request with Cache-Control: $cc"
    assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-rq.bin")" "body of a request with Cache-Control: $cc"
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin for Cache-Control: $cc"
    assert_match "$(tail -n1 "$T/origin.log")" ".* conditional" "the origin's log for Cache-Control: $cc"
    assert_match "$CS" "cdn-node-regional; fwd=request; fwd-status=304; ttl=[0-9]+, cdn-node-edge; fwd=request; fwd-status=304; ttl=[0-9]+" \
        "Cache-Status of a fresh object revalidated because the request said Cache-Control: $cc"
    settle
done

stop_all
