#!/usr/bin/env bash
# customer -> edge -> regional -> origin: bodies arrive intact whatever their framing, request
# bodies go up intact, hop-by-hop headers stop at the edge, connections are reused, and a request
# that matches no remap rule gets 404 without reaching the origin.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

two_tiers

# a small body, end to end
body=$(ecurl "$EDGE/hello") || fail "GET /hello: curl exit $?"
assert_eq "$body" "origin: /hello" "/hello body"
assert_eq "$(origin_count)" 1 "requests at the origin after /hello"

# Content-Length, chunked and close-delimited responses, compared with the pattern computed here
for u in bytes/1048576 chunked/1000000 eof/300000; do
    code=$(ecurl -o "$T/body" -w '%{http_code}' "$EDGE/$u") || fail "GET /$u: curl exit $?"
    assert_eq "$code" 200 "status of /$u"
    assert_eq "$(stat -c %s "$T/body")" "${u#*/}" "size of /$u"
    assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 "${u#*/}")" "sha256 of /$u"
done

# HEAD: the headers of the GET, no body
head=$(ecurl -I "$EDGE/bytes/1000") || fail "HEAD /bytes/1000: curl exit $?"
assert_contains "$head" "HTTP/1.1 200" "HEAD status line"
assert_contains "$(printf '%s' "$head" | tr -d '\r' | tr '[:upper:]' '[:lower:]')" "content-length: 1000" "HEAD headers"
size=$(ecurl -I -o /dev/null -w '%{size_download}' "$EDGE/bytes/1000") || fail "HEAD /bytes/1000: curl exit $?"
assert_eq "$size" 0 "HEAD body size"

# 1 MiB request bodies, with Content-Length and chunked, echoed back by the origin
head -c 1048576 /dev/urandom >"$T/up"
want=$(sha256_of "$T/up")
ecurl -o "$T/echo-cl" --data-binary @"$T/up" "$EDGE/echo" || fail "POST /echo (Content-Length): curl exit $?"
assert_eq "$(sha256_of "$T/echo-cl")" "$want" "echo of a Content-Length upload"
ecurl -o "$T/echo-chunked" -H 'Transfer-Encoding: chunked' --data-binary @"$T/up" "$EDGE/echo" ||
    fail "POST /echo (chunked): curl exit $?"
assert_eq "$(sha256_of "$T/echo-chunked")" "$want" "echo of a chunked upload"

# what reached the origin: a Via header, none of the hop-by-hop headers the client sent
seen=$(ecurl -H 'Connection: foo' -H 'Foo: bar' -H 'Keep-Alive: 1' -H 'X-End-To-End: kept' "$EDGE/headers") ||
    fail "GET /headers: curl exit $?"
seen=$(printf '%s\n' "$seen" | tr -d '\r' | tr '[:upper:]' '[:lower:]')
assert_contains "$seen" "get /headers http/1.1" "request line at the origin"
assert_contains "$seen" $'\nvia: ' "headers at the origin"
assert_contains "$seen" "x-end-to-end: kept" "headers at the origin"
assert_not_contains "$seen" $'\nfoo:' "headers at the origin (Foo is named in Connection)"
assert_not_contains "$seen" $'\nkeep-alive:' "headers at the origin"
assert_not_contains "$seen" "connection: foo" "headers at the origin"

# keep-alive: three requests in one curl run use one connection
conns=$(ecurl -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects} ' \
    "$EDGE/a" "$EDGE/bytes/100000" "$EDGE/chunked/5000") || fail "keep-alive run: curl exit $?"
assert_eq "$conns" "1 0 0 " "connections opened per request"

# no remap rule for the host: 404 from the edge, nothing at the origin
before=$(origin_count)
code=$(curl -sS --cacert "$PKI/ca.crt" -H 'Host: nomatch.test' -o /dev/null -w '%{http_code}' "$EDGE/hello") ||
    fail "GET /hello for nomatch.test: curl exit $?"
assert_eq "$code" 404 "status for a host with no remap rule"
assert_eq "$(origin_count)" "$before" "requests at the origin after the 404"

stop_all
