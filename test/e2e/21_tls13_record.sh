#!/usr/bin/env bash
# A customer's TLS 1.3 connection moves to cdn-node's own record layer after the handshake (lib/trec):
# requests before and after a KeyUpdate from the client (update requested, so the edge must update its
# own keys too), small and large responses, and close_notify, all with OpenSSL's s_client on the other
# side; a TLS 1.2 client on the same listener (OpenSSL keeps it) still works.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
printf 'admin:\n  port: 0\n' >>"$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
edge_config "$T/edge.yaml" "$(port_of regional https)"
printf 'admin:\n  port: 0\n' >>"$T/edge.yaml"
start_node edge edge "$T/edge.yaml"
ep=$(port_of edge https)
EDGE=https://127.0.0.1:$ep
# st NODE EXPR: EXPR over the node's /stats JSON (d)
st() { curl -sS "http://127.0.0.1:$(port_of "$1" admin)/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($2)"; }

# s_client reads commands at the start of a line (not with -ign_eof): K = KeyUpdate(update_requested),
# k = not requested; stdin stays open until the last answer came
session() {
    {
        printf 'GET /hello HTTP/1.1\nHost: %s\n\n' "$EDGE_HOST"
        sleep 0.5
        printf '%s\n' "$1"
        sleep 0.5
        printf 'GET /bytes/100000 HTTP/1.1\nHost: %s\n\n' "$EDGE_HOST"
        sleep 0.5
        printf '%s\n' "$1"
        sleep 0.5
        printf 'GET /hello?again=1 HTTP/1.1\nHost: %s\nConnection: close\n\n' "$EDGE_HOST"
        sleep 1
    } | timeout 20 openssl s_client -connect "127.0.0.1:$ep" -servername "$EDGE_HOST" -CAfile "$PKI/ca.crt" \
        -tls1_3 -crlf "${@:2}" >"$T/s_client.out" 2>"$T/s_client.err" || true
}

for cmd in K k; do
    session "$cmd"
    out=$(tr -d '\r' <"$T/s_client.out")
    assert_contains "$out" "Protocol  : TLSv1.3" "s_client negotiated TLS 1.3 ($cmd)"
    assert_eq "$(grep -c KEYUPDATE "$T/s_client.err")" 2 "KeyUpdates s_client sent ($cmd)"
    n=$(printf '%s\n' "$out" | grep -o 'HTTP/1.1 200 OK' | wc -l)
    assert_eq "$n" 3 "responses to the three requests around two KeyUpdates ($cmd)"
    assert_contains "$out" "origin: /hello" "the first response ($cmd)"
    assert_contains "$out" "Content-Length: 100000" "the large response, between the key updates ($cmd)"
    assert_contains "$out" "origin: /hello?again=1" "the last response, after the key updates ($cmd)"
    assert_not_contains "$(cat "$T/s_client.err")" "alert" "no TLS alert ($cmd)"
done

# both sessions were taken over by the edge; the edge's connections to the regional carry a client
# certificate, so the regional's stay with OpenSSL
assert_eq "$(st edge 'd["tls_takeovers"]')" 2 "edge connections taken over"
assert_eq "$(st regional 'd["tls_takeovers"]')" 0 "regional connections taken over (mTLS: never)"

# TLS 1.2 on the same listener stays with OpenSSL
code=$(ecurl --tlsv1.2 --tls-max 1.2 -o /dev/null -w '%{http_code}' "$EDGE/hello") || fail "TLS 1.2: curl exit $?"
assert_eq "$code" 200 "a TLS 1.2 client"

# many requests on one TLS 1.3 connection, and a body that spans many records
for i in 1 2 3; do echo "url = \"$EDGE/bytes/1048576?i=$i\""; echo "output = \"$T/big$i\""; done >"$T/urls"
ecurl --tlsv1.3 -K "$T/urls" || fail "three 1 MiB responses on one connection: curl exit $?"
for i in 1 2 3; do
    assert_eq "$(sha256_of "$T/big$i")" "$(pattern_sha256 1048576)" "1 MiB body $i, byte for byte"
done
assert_eq "$(st edge 'd["tls_takeovers"]')" 3 "edge connections taken over (TLS 1.2 not)"
stop_all
