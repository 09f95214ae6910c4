#!/usr/bin/env bash
# The regional requires a client certificate from its CA and refuses anything else in the TLS
# handshake (an alert, never an HTTP answer); the edge's client certificate gets through.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)
REG=https://127.0.0.1:$rp

# rcurl ARGS...: curl straight to the regional, as the edge would address it
rcurl() {
    curl -sS --cacert "$PKI/ca.crt" -H "Host: $REGIONAL_HOST" -o "$T/body" -w '%{http_code}' "$@" "$REG/hello"
}

# sclient ARGS...: openssl s_client to the regional; waits for the server to end the connection
sclient() {
    timeout 10 openssl s_client -connect "127.0.0.1:$rp" -CAfile "$PKI/ca.crt" -ign_eof "$@" </dev/null 2>&1 || true
}

# no client certificate
rc=0
code=$(rcurl 2>"$T/curl.err") || rc=$?
case $rc in 35 | 56) ;; *) fail "curl without a certificate: exit $rc (want 35 or 56): $(cat "$T/curl.err")" ;; esac
assert_eq "$code" 000 "HTTP status without a certificate"
out=$(sclient)
assert_contains "$out" "alert certificate required" "s_client without a certificate"
out=$(sclient -tls1_2) # refused in the handshake proper (or TLS 1.2 is off: then too an alert)
assert_contains "$out" "alert" "s_client (TLS 1.2) without a certificate"

# a client certificate from another CA
rc=0
code=$(rcurl --cert "$PKI/other-client.crt" --key "$PKI/other-client.key" 2>"$T/curl.err") || rc=$?
case $rc in 35 | 56) ;; *) fail "curl with other-client.crt: exit $rc (want 35 or 56): $(cat "$T/curl.err")" ;; esac
assert_eq "$code" 000 "HTTP status with other-client.crt"
out=$(sclient -cert "$PKI/other-client.crt" -key "$PKI/other-client.key")
assert_contains "$out" "alert unknown ca" "s_client with other-client.crt"

assert_eq "$(origin_count)" 0 "requests at the origin after the refused handshakes"

# the edge's client certificate
code=$(rcurl --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key") || fail "curl with edge-client.crt: exit $?"
assert_eq "$code" 200 "HTTP status with edge-client.crt"
assert_eq "$(cat "$T/body")" "origin: /hello" "body with edge-client.crt"
assert_eq "$(origin_count)" 1 "requests at the origin"

stop_all
