#!/usr/bin/env bash
# Malformed or oversized requests to the edge are answered there (400/431) and the connection is
# closed; none of them reaches the origin.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

two_tiers
ep=${EDGE##*:}

# raw WHAT REQUEST: sends REQUEST (printf %b escapes) over TLS, prints what came back. The server
# must close the connection: s_client -quiet ignores stdin EOF and returns only when it does.
raw() {
    local rc=0
    printf '%b' "$2" | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$ep" -CAfile "$PKI/ca.crt" \
        >"$T/raw.out" 2>"$T/raw.err" || rc=$?
    [ "$rc" -ne 124 ] || fail "$1: the edge did not close the connection within 10 s; got: $(head -c 300 "$T/raw.out")"
    tr -d '\r' <"$T/raw.out"
}

# expect_status WHAT STATUS REQUEST
expect_status() {
    local out
    out=$(raw "$1" "$3")
    assert_eq "$(printf '%s\n' "$out" | head -n 1 | cut -d' ' -f1-2)" "HTTP/1.1 $2" "$1: status line"
    assert_eq "$(printf '%s\n' "$out" | grep -c '^HTTP/1')" 1 "$1: responses"
}

H="Host: $EDGE_HOST\r\n"
expect_status "malformed request line" 400 "GET /a b c HTTP/1.1\r\n$H\r\n"
expect_status "no version" 400 "GET /\r\n$H\r\n"
big=$(head -c 33000 /dev/zero | tr '\0' a)
expect_status "33000-byte header" 431 "GET / HTTP/1.1\r\n${H}X-Big: $big\r\n\r\n"
expect_status "Content-Length with Transfer-Encoding" 400 \
    "POST /echo HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
expect_status "two Content-Lengths" 400 "POST /echo HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
expect_status "bare LF" 400 "GET /hello HTTP/1.1\n${H}\r\n"
expect_status "a bad request with a good one pipelined behind it" 400 "GET /a b HTTP/1.1\r\n$H\r\nGET /hello HTTP/1.1\r\n$H\r\n"
assert_eq "$(origin_count)" 0 "requests at the origin after the bad requests"

# the control: the same channel with a good request works and reaches the origin
out=$(raw "good request" "GET /hello HTTP/1.1\r\n${H}Connection: close\r\n\r\n")
assert_contains "$out" "HTTP/1.1 200" "good request"
assert_contains "$out" "origin: /hello" "good request"
assert_eq "$(origin_count)" 1 "requests at the origin"

# TLS 1.2 is the minimum, and renegotiation is refused (even when the client asks politely)
out=$(timeout 10 openssl s_client -connect "127.0.0.1:$ep" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null 2>&1 || true)
assert_contains "$out" "alert protocol version" "TLS 1.1 client"
out=$( (echo R; sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$ep" -tls1_2 -CAfile "$PKI/ca.crt" 2>&1 || true)
assert_contains "$out" "RENEGOTIATING" "s_client asked for a renegotiation"
assert_contains "$out" "no renegotiation" "renegotiation refused"

stop_all
