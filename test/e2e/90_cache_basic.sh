#!/usr/bin/env bash
# The HTTP cache of both tiers (RFC 9111), basics: a miss is stored by the regional and the edge
# (Cache-Status members in that order), a fresh hit at the edge reaches neither the regional nor the
# origin, Age grows while an object sits in the cache, a second edge with an empty store gets a hit
# from the regional, no-store/private/Set-Cookie/Authorization responses are never stored, a
# Last-Modified without freshness gets a heuristic lifetime, HEAD is answered from a stored GET (and
# a cold HEAD stores nothing), multi-chunk bodies come back intact, objects over max_object_size pass
# through unstored, an unsafe method invalidates its URL (and Location), the query is part of the key
# but ignore_params are not, CDN-Cache-Control wins over Cache-Control, only-if-cached never goes
# upstream, and a client's no-cache makes both tiers revalidate.
#
# Which tier answered: origin_count (requests at the origin), access_count regional (requests that
# reached the regional) and the last Cache-Status member (the edge's). A hit at the regional alone
# needs an edge without the object: a second edge with its own empty store (a client's no-cache
# would not do, it travels end to end and makes the regional revalidate too).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

LINES=("max_object_size: 4MiB" "ignore_params: [utm_source, utm_medium]")
cache_tiers "${LINES[@]}"
EDGE1=$EDGE
MA='hdr=Cache-Control:max-age%3D60'
TTL='(5[0-9]|60)' # a ttl at most a few seconds below max-age=60

# counts ORIGIN_BEFORE REGIONAL_BEFORE WHAT: neither count has changed
unchanged() {
    assert_eq "$(origin_count)" "$1" "requests at the origin ($3)"
    assert_eq "$(access_count regional "$2")" "$2" "requests at the regional ($3)"
}

# --- a miss at both tiers, then a fresh hit at the edge -------------------------------------------
fetch "/a?$MA"
assert_eq "$CODE" 200 "status of the first GET /a"
assert_eq "$(cat "$T/body")" "origin: /a?$MA" "body of the first GET /a"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of a miss at both tiers (regional first)"
assert_eq "$(origin_count)" 1 "requests at the origin after the first GET /a"
assert_eq "$(access_count regional 1)" 1 "requests at the regional after the first GET /a"
settle

fetch "/a?$MA"
assert_eq "$CODE" 200 "status of the second GET /a"
assert_eq "$(cat "$T/body")" "origin: /a?$MA" "body of the second GET /a (from the edge's cache)"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "the edge's Cache-Status member on the second GET /a"
unchanged 1 1 "a fresh hit at the edge"
assert_match "$AGE" '[0-9]+' "Age of a hit"

# --- Age grows while the object sits in the cache ---------------------------------------------------
sleep 2
fetch "/a?$MA"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "Cache-Status of GET /a 2 s later"
[ "$AGE" -ge 2 ] || fail "Age 2 s after the fill: expected >= 2, got '$AGE'"
[ "${LAST_CS##*ttl=}" -le 58 ] || fail "ttl 2 s after the fill: expected <= 58, got '$LAST_CS'"
unchanged 1 1 "GET /a 2 s later"

# --- a hit at the regional: a second edge (own, empty store) asks it -----------------------------------
cache_edge edge2 "${LINES[@]}" "name: edge-two"
EDGE2=$EDGE
EDGE=$EDGE1
FETCH_BASE=$EDGE2 fetch "/a?$MA"
assert_eq "$CODE" 200 "status of GET /a through the second edge"
assert_eq "$(cat "$T/body")" "origin: /a?$MA" "body of GET /a through the second edge"
assert_match "$CS" "cdn-node-regional; hit; ttl=$TTL, edge-two; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of GET /a through the second edge (regional hit, named edge)"
[ "$AGE" -ge 2 ] || fail "Age through the second edge (the regional's age is kept): expected >= 2, got '$AGE'"
assert_eq "$(origin_count)" 1 "requests at the origin after a regional hit"
assert_eq "$(access_count regional 2)" 2 "requests at the regional after the second edge's miss"
settle
FETCH_BASE=$EDGE2 fetch "/a?$MA"
assert_match "$LAST_CS" "edge-two; hit; ttl=$TTL" "Cache-Status of the second edge's second GET /a"
unchanged 1 2 "the second edge's hit"

# --- no-store and private responses (and no-store requests) are never stored -------------------------
for cc in no-store private; do
    for i in 1 2 3; do
        o=$(origin_count)
        fetch "/$cc?hdr=Cache-Control:$cc"
        assert_eq "$CODE" 200 "status of GET /$cc ($i)"
        assert_eq "$(cat "$T/body")" "origin: /$cc?hdr=Cache-Control:$cc" "body of GET /$cc ($i)"
        assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after GET /$cc ($i)"
        assert_not_contains "$CS" "stored" "Cache-Status of a Cache-Control: $cc response"
        assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; detail=$cc, cdn-node-edge; fwd=uri-miss; fwd-status=200; detail=$cc" \
            "Cache-Status of a Cache-Control: $cc response"
        settle
    done
done
for i in 1 2; do
    o=$(origin_count)
    fetch "/req-no-store?$MA" -H 'Cache-Control: no-store'
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after a request with no-store ($i)"
    assert_not_contains "$CS" "stored" "Cache-Status of a response to a request with no-store"
    settle
done

# --- heuristic freshness: Last-Modified 5 days ago and no Cache-Control/Expires -> 10% = 43200 s -----
printf 'old file\n' >"$DOCROOT/old"
touch -d '5 days ago' "$DOCROOT/old"
fetch /files/old
assert_eq "$(cat "$T/body")" "old file" "body of /files/old"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=(4319[0-9]|43200), cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=(4319[0-9]|43200)" \
    "Cache-Status of a response with only Last-Modified (heuristic lifetime)"
o=$(origin_count) r=$(access_count regional)
settle
fetch /files/old
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=(4319[0-9]|43200)" "Cache-Status of /files/old from the cache"
assert_eq "$(cat "$T/body")" "old file" "body of /files/old from the cache"
unchanged "$o" "$r" "a heuristically fresh hit"

# --- HEAD from a stored GET: same headers, no body, nothing upstream ---------------------------------
fetch "/bytes/1234?$MA"
assert_eq "$(stat -c %s "$T/body")" 1234 "size of GET /bytes/1234"
settle
o=$(origin_count) r=$(access_count regional)
# HEAD then GET on one connection: a body sent after the HEAD response would corrupt the GET's
ecurl -I -D "$T/head" -o /dev/null "$EDGE/bytes/1234?$MA" \
    --next --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -D "$T/head2" -o "$T/body2" -w '%{num_connects}' \
    "$EDGE/bytes/1234?$MA" >"$T/conns" || fail "HEAD + GET /bytes/1234: curl exit $?"
assert_contains "$(head -n1 "$T/head")" "HTTP/1.1 200" "status line of HEAD /bytes/1234"
assert_eq "$(header_of Content-Length)" 1234 "Content-Length of HEAD /bytes/1234"
assert_match "$(header_of Cache-Status)" ".*cdn-node-edge; hit; ttl=$TTL" "Cache-Status of HEAD /bytes/1234"
assert_eq "$(cat "$T/conns")" 0 "new connections for the GET after the HEAD (keep-alive)"
assert_eq "$(sha256_of "$T/body2")" "$(pattern_sha256 1234)" "GET after HEAD on the same connection"
unchanged "$o" "$r" "HEAD and GET answered from the edge's cache"

# a HEAD on a cold key is forwarded and not stored: the GET that follows gets the body
ecurl -I -o /dev/null "$EDGE/bytes/777?$MA" || fail "HEAD /bytes/777: curl exit $?"
settle
fetch "/bytes/777?$MA"
assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 777)" "GET /bytes/777 after a HEAD on the cold key"
assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of GET after a HEAD on a cold key"

# --- multi-chunk bodies (the store's chunks are 256 KiB) come back intact, also to a slow reader ------
for u in bytes/3000000 chunked/3000000; do
    fetch "/$u?$MA"
    assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 3000000)" "sha256 of /$u (miss)"
    assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of /$u (miss)"
    settle
    o=$(origin_count) r=$(access_count regional)
    fetch "/$u?$MA"
    assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 3000000)" "sha256 of /$u (hit)"
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "Cache-Status of /$u (hit)"
    assert_eq "$(header_of Content-Length)" 3000000 "Content-Length of /$u from the cache"
    fetch "/$u?$MA" --limit-rate 6M
    assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 3000000)" "sha256 of /$u (hit, slow reader)"
    unchanged "$o" "$r" "hits on /$u"
done

# --- over max_object_size (4 MiB): passed through intact, never stored --------------------------------
for u in bytes/5000000 chunked/5000000; do
    for i in 1 2; do
        o=$(origin_count)
        fetch "/$u?$MA"
        assert_eq "$CODE" 200 "status of /$u ($i)"
        assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 5000000)" "sha256 of /$u ($i)"
        assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after /$u ($i): never stored"
        settle
    done
done
assert_not_contains "$CS" "hit" "Cache-Status of an object over max_object_size"
fetch "/bytes/5000000?$MA"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200, cdn-node-edge; fwd=uri-miss; fwd-status=200" \
    "Cache-Status of a Content-Length response over max_object_size"

# --- an unsafe method invalidates its URL at both tiers (RFC 9111 4.4) ---------------------------------
fetch "/inv?$MA"
settle
fetch "/inv?$MA"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "GET /inv before the POST"
o=$(origin_count)
code=$(ecurl -o "$T/post" -w '%{http_code}' -D "$T/head" --data-binary x "$EDGE/inv?$MA") ||
    fail "POST /inv: curl exit $?"
assert_eq "$code" 200 "status of POST /inv"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after POST /inv"
assert_eq "$(tail -n1 "$T/origin.log")" "POST /inv?$MA" "the origin saw the POST"
assert_match "$(header_of Cache-Status)" "cdn-node-regional; fwd=method; fwd-status=200, cdn-node-edge; fwd=method; fwd-status=200" \
    "Cache-Status of POST /inv"
settle
fetch "/inv?$MA"
assert_eq "$(origin_count)" $((o + 2)) "requests at the origin after GET /inv following the POST"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of GET /inv after the POST (invalidated at both tiers)"
# ... and the same-origin Location of a 2xx response to an unsafe method (RFC 9111 4.4)
printf 'target\n' >"$DOCROOT/loc"
touch -d '5 days ago' "$DOCROOT/loc"
fetch /files/loc
settle
fetch /files/loc
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=.*" "GET /files/loc before the PUT"
o=$(origin_count)
code=$(ecurl -o /dev/null -w '%{http_code}' -X PUT --data-binary y "$EDGE/upload?hdr=Location:/files/loc") ||
    fail "PUT /upload: curl exit $?"
assert_eq "$code" 200 "status of PUT /upload"
settle
fetch /files/loc
assert_eq "$(origin_count)" $((o + 2)) "requests at the origin after GET /files/loc following PUT with Location: /files/loc"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; .*, cdn-node-edge; fwd=uri-miss; .*" \
    "Cache-Status of GET /files/loc after it was named by Location"

# --- the query is part of the key; ignore_params are left out of it ------------------------------------
o=$(origin_count)
for v in 1 2; do
    fetch "/q?$MA&a=$v"
    assert_eq "$(cat "$T/body")" "origin: /q?$MA&a=$v" "body of /q?...&a=$v"
done
assert_eq "$(origin_count)" $((o + 2)) "requests at the origin: two queries, two objects"
settle
for v in 1 2; do
    fetch "/q?$MA&a=$v"
    assert_eq "$(cat "$T/body")" "origin: /q?$MA&a=$v" "body of /q?...&a=$v from the cache"
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "Cache-Status of /q?...&a=$v, second time"
done
for q in "$MA&a=1&utm_source=news" "utm_medium=mail&$MA&utm_source=x&a=1"; do
    fetch "/q?$q"
    assert_eq "$(cat "$T/body")" "origin: /q?$MA&a=1" "body of /q?$q (ignored parameters: the stored /q?...&a=1)"
    assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "Cache-Status of /q?$q"
done
assert_eq "$(origin_count)" $((o + 2)) "requests at the origin after the ignored-parameter variants"
r=$(access_count regional)
FETCH_BASE=$EDGE2 fetch "/q?utm_source=b&$MA&a=2"
assert_eq "$(cat "$T/body")" "origin: /q?$MA&a=2" "body through the second edge (regional key without utm_source)"
assert_match "$CS" "cdn-node-regional; hit; ttl=$TTL, edge-two; fwd=uri-miss; .*" \
    "Cache-Status through the second edge (regional hit despite utm_source)"
assert_eq "$(access_count regional $((r + 1)))" $((r + 1)) "requests at the regional from the second edge"
assert_eq "$(origin_count)" $((o + 2)) "requests at the origin after the second edge's request"

# --- more responses that are never stored: Set-Cookie, Authorization without public ---------------------
for i in 1 2; do
    o=$(origin_count)
    fetch "/cookie?$MA&hdr=Set-Cookie:session%3Dsecret"
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after a Set-Cookie response ($i)"
    assert_not_contains "$CS" "stored" "Cache-Status of a Set-Cookie response ($i)"
    o=$(origin_count)
    fetch "/auth?$MA" -H 'Authorization: Bearer x'
    assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after a request with Authorization ($i)"
    assert_match "$LAST_CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; detail=auth" \
        "Cache-Status of a response to Authorization without public ($i)"
    settle
done
# ... but Authorization with a public response is stored (RFC 9111 3.5)
fetch "/auth-public?hdr=Cache-Control:public,%20max-age%3D60" -H 'Authorization: Bearer x'
assert_contains "$CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored" "Cache-Status of a public response to Authorization"

# --- CDN-Cache-Control (RFC 9213) wins over Cache-Control for both tiers -----------------------------------
fetch "/targeted?hdr=Cache-Control:no-store&hdr=CDN-Cache-Control:max-age%3D600"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=(59[0-9]|600), cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=(59[0-9]|600)" \
    "Cache-Status of Cache-Control: no-store + CDN-Cache-Control: max-age=600"
assert_eq "$(header_of Cache-Control)" "no-store" "Cache-Control forwarded unchanged to the client"
o=$(origin_count)
settle
fetch "/targeted?hdr=Cache-Control:no-store&hdr=CDN-Cache-Control:max-age%3D600"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=(59[0-9]|600)" "Cache-Status of the CDN-Cache-Control object, second time"
assert_eq "$(origin_count)" "$o" "requests at the origin for the CDN-Cache-Control object"

# --- only-if-cached on a miss: 504 from the edge, nothing upstream (RFC 9111 5.2.1.7) ----------------------
o=$(origin_count) r=$(access_count regional)
fetch "/never-stored?$MA" -H 'Cache-Control: only-if-cached'
assert_eq "$CODE" 504 "status of only-if-cached on a miss"
unchanged "$o" "$r" "only-if-cached on a miss"
fetch "/a?$MA" -H 'Cache-Control: only-if-cached'
assert_eq "$CODE" 200 "status of only-if-cached on a stored object"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status of only-if-cached on a stored object"

# --- a client's Cache-Control: no-cache: both tiers revalidate with the origin (RFC 9111 5.2.1.4) -----
# (so it cannot be used to make only the edge skip its copy: the directive travels end to end)
o=$(origin_count)
fetch "/a?$MA" -H 'Cache-Control: no-cache'
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after a no-cache request"
assert_match "$CS" "cdn-node-regional; fwd=request; fwd-status=200; stored; ttl=$TTL, cdn-node-edge; fwd=request; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of a request with Cache-Control: no-cache"

stop_all
