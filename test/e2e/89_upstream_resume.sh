#!/usr/bin/env bash
# Between the tiers, connections are pooled and new ones resume the TLS session of an earlier one:
# after a first request (a full mTLS handshake), parallel requests that need more connections to the
# regional resume; under steady load the edge opens almost no connections; the regional still sees
# the edge's client certificate on resumed connections; a reload starts afresh with a full handshake.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
edge_config "$T/edge.yaml" "$(port_of regional https)"
printf 'admin:\n  port: 0\n' >>"$T/edge.yaml"
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
ap=$(port_of edge admin)
st() { curl -sS "http://127.0.0.1:$ap/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/hello")" 200 "first request"
assert_eq "$(st 'd["upstream_tls_full"]')" 1 "full handshakes after the first request"
assert_eq "$(st 'd["upstream_tls_resumed"]')" 0 "resumed handshakes after the first request"

# 8 slow requests at once: the pool has one idle connection, so the edge opens more, resumed
pids=()
for i in 1 2 3 4 5 6 7 8; do
    ecurl -o /dev/null -w '%{http_code}\n' "$EDGE/slow/300?p=$i" >>"$T/par.codes" &
    pids+=($!)
done
wait "${pids[@]}"
assert_eq "$(sort -u "$T/par.codes")" 200 "parallel requests"
opened=$(st 'd["upstream_conns_opened"]')
resumed=$(st 'd["upstream_tls_resumed"]')
full=$(st 'd["upstream_tls_full"]')
[ "$opened" -ge 4 ] || fail "only $opened upstream connections for 8 parallel slow requests"
assert_eq "$full" 1 "full handshakes after the parallel requests ($resumed resumed, $opened connections)"
assert_eq "$((resumed + full))" "$opened" "every new connection did a handshake"

# resumed connections still carry the edge's identity to the origin (RFC 9440 Client-Cert)
for i in 1 2 3 4; do
    ecurl "$EDGE/headers?r=$i" | tr -d '\r' | grep -qi '^client-cert: :' || fail "no Client-Cert on request $i"
done

# steady load: 400 sequential requests reuse pooled connections
before=$(st 'd["upstream_conns_opened"]')
for i in $(seq 1 400); do printf 'url = "%s"\noutput = "/dev/null"\n' "$EDGE/bytes/100?s=$i"; done >"$T/urls"
ecurl -K "$T/urls" -w '%{http_code}\n' >"$T/seq.codes"
assert_eq "$(sort -u "$T/seq.codes")" 200 "steady load"
after=$(st 'd["upstream_conns_opened"]')
[ $((after - before)) -le 2 ] || fail "$((after - before)) new upstream connections for 400 sequential requests"

# a reload builds a new client context: the next connection is a full handshake again
kill -HUP "$(pid_of edge)"
for ((i = 0; i < 50; i++)); do
    [ "$(st 'd["generation"]')" = 2 ] && break
    sleep 0.1
done
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/hello?after-reload")" 200 "request after the reload"
assert_eq "$(st 'd["upstream_tls_full"]')" 2 "full handshakes after the reload"
# the server side too: a session from before a reload of the regional is not resumed after it
rp=$(port_of regional https)
sc() {
    printf 'GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$REGIONAL_HOST" |
        timeout 10 openssl s_client -connect "127.0.0.1:$rp" -servername "$REGIONAL_HOST" -CAfile "$PKI/ca.crt" \
            -cert "$PKI/edge-client.crt" -key "$PKI/edge-client.key" -ign_eof "$@" 2>/dev/null | grep -E '^(New|Reused),'
}
sc -sess_out "$T/sess.pem" >/dev/null
assert_contains "$(sc -sess_in "$T/sess.pem")" "Reused" "the regional resumes a session before a reload"
kill -HUP "$(pid_of regional)"
for ((i = 0; i < 50; i++)); do
    grep -qF "generation 2 in service" "$T/regional.err" && break
    sleep 0.1
done
assert_contains "$(sc -sess_in "$T/sess.pem")" "New" "the regional after a reload: a full handshake"
stop_all
