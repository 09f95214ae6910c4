#!/usr/bin/env bash
# Request smuggling and malformed input: a corpus of raw requests (test/e2e/smuggle.py) sent over TLS and
# plain HTTP to the edge, which forwards to the regional and on to the test origin. Each case asserts the
# edge's answer (400/414/431/501/505 and close, or correct handling) and exactly which requests reach
# the origin, so that a request the edge did not mean to send would be seen there.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
cat >"$T/edge.yaml" <<YAML
role: edge
workers: 2
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/edge.crt
    key: pki/edge.key
  - name: http
    address: 127.0.0.1
    port: 0
remap:
  - "map https://$EDGE_HOST/ https://$REGIONAL_HOST/"
  - "map http://$EDGE_HOST/ https://$REGIONAL_HOST/"
upstream:
  address: 127.0.0.1:$(port_of regional https)
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
YAML
start_node edge edge "$T/edge.yaml"

python3 "$E2E_SRC/test/e2e/smuggle.py" "$(port_of edge https)" "$(port_of edge http)" "$PKI/ca.crt" \
    "$T/origin.log" "$EDGE_HOST" >"$T/smuggle.out" 2>&1 || fail "smuggling corpus:
$(cat "$T/smuggle.out")"
tail -n 1 "$T/smuggle.out"
stop_all
