#!/usr/bin/env bash
# Active health checks of an upstream group (docs/TIERING.md): the edge sends GET check_path to each
# parent over the same mTLS as requests. A parent whose check answers 503 is taken out without any
# customer request failing; when it answers 200 again it is put back by the check (its passive
# back-off is far longer), and customers' requests return to it.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
# regional NAME STATUS: a regional whose /healthz is the origin's /status/STATUS
regional() {
    regional_config "$T/$1.yaml"
    cat >>"$T/$1.yaml" <<YAML
  - "map https://$REGIONAL_HOST/healthz http://127.0.0.1:$ORIGIN_PORT/status/$2"
log:
  access: $1.access
YAML
}
regional r1 200
regional r2 503
start_node r1 regional "$T/r1.yaml"
start_node r2 regional "$T/r2.yaml"
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
admin: {port: 0}
upstream:
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
upstream_groups:
  - name: regionals
    policy: first_live
    health: {fail_threshold: 2, backoff: 60s, check_path: /healthz, check_interval: 200ms, check_timeout: ${E2E_SLOW:-1}s}
    parents:
      - {address: "127.0.0.1:$(port_of r2 https)", name: r2}
      - {address: "127.0.0.1:$(port_of r1 https)", name: r1}
remap:
  - "map https://$EDGE_HOST/ https://$REGIONAL_HOST/ @group=regionals"
YAML
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
ap=$(port_of edge admin)
st() { curl -sS "http://127.0.0.1:$ap/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
up() { st "[s['value'] for s in d['parent_up'] if s['parent'] == '$1'][0]"; }
# customers N: N customer requests, one after the other; every one must get 200
customers() {
    local i code
    for ((i = 0; i < $1; i++)); do
        code=$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/c/$RANDOM") || fail "customer request: curl exit $?"
        assert_eq "$code" 200 "a customer request"
    done
}
# wait_up PARENT 0|1: customers keep coming while waiting (up to 5 s) for PARENT's state
wait_up() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(up "$1")" = "$2" ] && return 0
        customers 2
        sleep 0.05
    done
    fail "$1 is not up=$2 after 5 s"
}

# r2 (first in the list) fails its checks: out after two, while customers are served throughout (their
# successful requests to r2 in between do not reset the checks' streak)
wait_up r2 0
log_has edge "parent r2 (127.0.0.1:$(port_of r2 https)) is down after 2 failed health checks in a row (last: status 503)" ||
    fail "no log line for r2 going down"
grep -q '"GET /healthz HTTP/1.1" 503' "$T/r2.access" || fail "r2 logged no health check"
sleep 0.2
c2=$(grep -c '"GET /c/' "$T/r2.access" || true)
n1=$(wc -l <"$T/r1.access")
customers 20
sleep 0.3
assert_eq "$(grep -c '"GET /c/' "$T/r2.access" || true)" "$c2" "customer requests r2 got while out"
[ "$(tail -n +"$((n1 + 1))" "$T/r1.access" | grep -c '"GET /c/')" -ge 20 ] || fail "r1 did not take the customers"

# r2's check passes again: the check puts it back long before its 60 s back-off, customers return
sed -i 's|/status/503"|/status/200"|' "$T/r2.yaml"
kill -HUP "$(pid_of r2)"
wait_up r2 1
log_has edge "parent r2 (127.0.0.1:$(port_of r2 https)) is up again" || fail "no log line for r2 coming back"
sleep 0.2
n2=$(grep -c '"GET /c/' "$T/r2.access" || true)
customers 10
sleep 0.3
[ "$(grep -c '"GET /c/' "$T/r2.access")" -ge $((n2 + 10)) ] || fail "customers did not return to r2"
[ "$(st "[s['value'] for s in d['parent_state_changes'] if s['parent'] == 'r2'][0]")" -eq 2 ] ||
    fail "r2 state changes: $(st "d['parent_state_changes']")"
stop_all
