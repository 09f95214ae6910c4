#!/usr/bin/env bash
# The edge verifies the regional: a certificate for the wrong name, or from a CA the edge does not
# trust, means 502 and no request upstream. A regional with the right certificate is the control.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin

# per case NAME:CERT, a regional presenting pki/CERT.crt (regional-NAME) and an edge in front of it (edge-NAME)
for v in wrongname:regional-wrongname otherca:regional-otherca good:regional; do
    name=${v%%:*}
    regional_config "$T/regional-$name.yaml" "${v#*:}"
    start_node "regional-$name" regional "$T/regional-$name.yaml"
    rp=$(port_of "regional-$name" https)
    edge_config "$T/edge-$name.yaml" "$rp"
    start_node "edge-$name" edge "$T/edge-$name.yaml"
done

for name in wrongname otherca; do
    ep=$(port_of "edge-$name" https)
    code=$(curl -sS --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -o /dev/null -w '%{http_code}' \
        "https://127.0.0.1:$ep/hello") || fail "GET /hello through edge-$name: curl exit $?"
    assert_eq "$code" 502 "status through an edge whose regional serves regional-$name.crt"
done
assert_eq "$(origin_count)" 0 "requests at the origin after the 502s"

ep=$(port_of edge-good https)
body=$(curl -sS --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" "https://127.0.0.1:$ep/hello") ||
    fail "GET /hello through edge-good: curl exit $?"
assert_eq "$body" "origin: /hello" "body through the edge whose regional serves regional.crt"
assert_eq "$(origin_count)" 1 "requests at the origin"

stop_all
