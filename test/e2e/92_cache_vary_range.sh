#!/usr/bin/env bash
# The HTTP cache of both tiers: Vary (RFC 9111 4.1) and ranges served from a stored object
# (RFC 9110 14). A response with Vary: Accept-Language is only reused for requests with the same
# Accept-Language: each client gets its own language, never another's. A stored 200 answers single
# byte ranges with 206 and the right bytes (also across the store's 256 KiB chunks), a range past the
# end with 416 and Content-Range: bytes */N, several ranges and a failed If-Range with the full 200.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2119 # no extra cache settings
cache_tiers
MA='hdr=Cache-Control:max-age%3D60'
V="/vary?$MA"

# --- Vary: Accept-Language ------------------------------------------------------------------------------
fetch "$V" -H 'Accept-Language: en'
assert_eq "$(cat "$T/body")" "en" "body for Accept-Language: en"
assert_eq "$(header_of Vary)" "Accept-Language" "Vary header passed to the client"
assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of the first /vary"
settle
o=$(origin_count)
fetch "$V" -H 'Accept-Language: en'
assert_eq "$(cat "$T/body")" "en" "body for Accept-Language: en, second time"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status for the same Accept-Language"
assert_eq "$(origin_count)" "$o" "requests at the origin for the same Accept-Language"
fetch "$V" -H 'Accept-Language: fr'
assert_eq "$(cat "$T/body")" "fr" "body for Accept-Language: fr after en was stored"
assert_match "$CS" "cdn-node-regional; fwd=vary-miss; fwd-status=200; stored; ttl=[0-9]+, cdn-node-edge; fwd=vary-miss; fwd-status=200; stored; ttl=[0-9]+" \
    "Cache-Status for another Accept-Language"
settle
# alternate: every answer must be the requester's own language, whatever is stored at the moment
for lang in fr en fr fr en de en de fr; do
    fetch "$V" -H "Accept-Language: $lang"
    assert_eq "$CODE" 200 "status for Accept-Language: $lang"
    assert_eq "$(cat "$T/body")" "$lang" "body for Accept-Language: $lang (alternating)"
    settle
done
fetch "$V"
assert_eq "$(cat "$T/body")" "(none)" "body without Accept-Language"
fetch "$V" -H 'Accept-Language;' # curl's way to send an empty value
assert_eq "$(cat "$T/body")" "" "body for an empty Accept-Language"
# equal after the normalisation of the secondary key (whitespace around commas)
fetch "$V" -H 'Accept-Language: en,fr'
assert_eq "$(cat "$T/body")" "en,fr" "body for Accept-Language: en,fr"
settle
o=$(origin_count)
fetch "$V" -H 'Accept-Language: en , fr'
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status for 'en , fr' after 'en,fr' (same list)"
assert_eq "$(cat "$T/body")" "en,fr" "body for 'en , fr' (the stored variant of the same list)"
assert_eq "$(origin_count)" "$o" "requests at the origin for the same list"
# concurrent clients with two languages: nobody gets the other's body
pids=()
for i in $(seq 1 12); do
    lang=en
    [ $((i % 2)) = 0 ] && lang=fr
    ecurl -o "$T/par-$i" -H "Accept-Language: $lang" "$EDGE$V" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || fail "a concurrent /vary request failed (curl exit $?)"
done
for i in $(seq 1 12); do
    lang=en
    [ $((i % 2)) = 0 ] && lang=fr
    assert_eq "$(cat "$T/par-$i")" "$lang" "body of concurrent request $i (Accept-Language: $lang)"
done

# ... and on a cold key whose origin answers 700 ms late, so that they overlap (collapsed forwarding must
# not hand one language's response to a client that asked for another)
pids=()
for i in $(seq 1 16); do
    lang=en
    [ $((i % 2)) = 0 ] && lang=fr
    ecurl -o "$T/cold-$i" -H "Accept-Language: $lang" "$EDGE/vary?$MA&delay=700" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || fail "a concurrent cold /vary request failed (curl exit $?)"
done
for i in $(seq 1 16); do
    lang=en
    [ $((i % 2)) = 0 ] && lang=fr
    assert_eq "$(cat "$T/cold-$i")" "$lang" "body of concurrent cold request $i (Accept-Language: $lang)"
done

# --- ranges from a stored object --------------------------------------------------------------------------
head -c 100000 /dev/urandom >"$T/r.tmp"
cp "$T/r.tmp" "$T/want-r"
mv "$T/r.tmp" "$DOCROOT/r.bin"
ETAG="\"$(sha256_of "$T/want-r")\""
fetch "/files/r.bin?$MA"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-r")" "body of /files/r.bin"
LM=$(header_of Last-Modified)
settle
fetch "/bytes/1000?$MA"
settle
o=$(origin_count) r=$(access_count regional)

# bytes FIRST LAST: the stored file's bytes FIRST..LAST
bytes() {
    tail -c +$(($1 + 1)) "$T/want-r" | head -c $(($2 - $1 + 1))
}

fetch "/bytes/1000?$MA" -r 10-19
assert_eq "$CODE" 206 "status of bytes 10-19 of /bytes/1000"
assert_eq "$(header_of Content-Range)" "bytes 10-19/1000" "Content-Range of bytes 10-19"
assert_eq "$(header_of Content-Length)" 10 "Content-Length of bytes 10-19"
assert_eq "$(cat "$T/body")" "abcdefghij" "bytes 10-19 of the pattern"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of a range from the cache"

for spec in 10-19 0-0 99990- -10 99990-200000 0-99999; do
    case $spec in
    -*) first=$((100000 - ${spec#-})) last=99999 ;;
    *-) first=${spec%-} last=99999 ;;
    *) first=${spec%-*} last=${spec#*-} ;;
    esac
    [ "$last" -le 99999 ] || last=99999
    fetch "/files/r.bin?$MA" -r "$spec"
    assert_eq "$CODE" 206 "status of range $spec"
    assert_eq "$(header_of Content-Range)" "bytes $first-$last/100000" "Content-Range of range $spec"
    assert_eq "$(sha256_of "$T/body")" "$(bytes "$first" "$last" | sha256sum | cut -d' ' -f1)" "bytes of range $spec"
done
for spec in 100000- 200000-300000; do
    fetch "/files/r.bin?$MA" -r "$spec"
    assert_eq "$CODE" 416 "status of range $spec past the end"
    assert_eq "$(header_of Content-Range)" "bytes */100000" "Content-Range of range $spec"
done
fetch "/files/r.bin?$MA" -r 0-1,5-6
assert_eq "$CODE" 200 "status for two ranges (not honoured)"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-r")" "body for two ranges (the whole object)"
# If-Range: only a strong ETag equal to the stored one, or the exact Last-Modified, keeps the range
fetch "/files/r.bin?$MA" -r 10-19 -H 'If-Range: "wrong"'
assert_eq "$CODE" 200 "status for If-Range with a wrong ETag"
assert_eq "$(sha256_of "$T/body")" "$(sha256_of "$T/want-r")" "body for If-Range with a wrong ETag (the whole object)"
fetch "/files/r.bin?$MA" -r 10-19 -H "If-Range: W/$ETAG"
assert_eq "$CODE" 200 "status for If-Range with a weak ETag"
fetch "/files/r.bin?$MA" -r 10-19 -H "If-Range: $ETAG"
assert_eq "$CODE" 206 "status for If-Range with the right ETag"
assert_eq "$(sha256_of "$T/body")" "$(bytes 10 19 | sha256sum | cut -d' ' -f1)" "bytes for If-Range with the right ETag"
fetch "/files/r.bin?$MA" -r 10-19 -H "If-Range: $LM"
assert_eq "$CODE" 206 "status for If-Range with the Last-Modified date"
fetch "/files/r.bin?$MA" -r 10-19 -H 'If-Range: Sat, 01 Jan 2000 00:00:00 GMT'
assert_eq "$CODE" 200 "status for If-Range with another date"
assert_eq "$(origin_count)" "$o" "requests at the origin for the ranges"
assert_eq "$(access_count regional "$r")" "$r" "requests at the regional for the ranges"

# --- ranges across the store's 256 KiB chunks ----------------------------------------------------------
fetch "/bytes/3000000?$MA"
settle
o=$(origin_count)
for spec in 262140-262149 262143-524288 100000-2999999 2999990-; do
    first=${spec%-*} last=${spec#*-}
    [ -n "$last" ] || last=2999999
    fetch "/bytes/3000000?$MA" -r "$spec"
    assert_eq "$CODE" 206 "status of range $spec of /bytes/3000000"
    assert_eq "$(header_of Content-Range)" "bytes $first-$last/3000000" "Content-Range of range $spec of /bytes/3000000"
    want=$(yes "$PATTERN" | tr -d '\n' | head -c $((last + 1)) | tail -c $((last - first + 1)) | sha256sum | cut -d' ' -f1)
    assert_eq "$(sha256_of "$T/body")" "$want" "bytes of range $spec of /bytes/3000000"
done
assert_eq "$(origin_count)" "$o" "requests at the origin for the ranges of /bytes/3000000"

# --- a range on a cold key: the answer is right whatever it is (the origin ignores Range) ----------------
fetch "/bytes/5000?$MA" -r 100-109
case $CODE in
206) assert_eq "$(cat "$T/body")" "$(yes "$PATTERN" | tr -d '\n' | head -c 110 | tail -c 10)" "bytes 100-109 of a cold object" ;;
200) assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 5000)" "the whole cold object for a range" ;;
*) fail "status of a range on a cold key: $CODE" ;;
esac
settle
fetch "/bytes/5000?$MA"
assert_eq "$CODE" 200 "status of a plain GET after a range on a cold key"
assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 5000)" "body of a plain GET after a range on a cold key"

stop_all
