#!/usr/bin/env bash
# Upstream groups when parents fail (docs/TIERING.md): a 5xx from a parent is passed on and does not
# take it out (and keepalive: false opens a resumed connection per request); parents that never answer are taken out after their timeouts, and then a request is
# refused with 502 at once, without waiting on any timeout; a group with go_direct sends the requests
# of its dead parents to the remap target itself.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
start_dead_upstream silent1 silent
start_dead_upstream silent2 silent
start_dead_upstream closed1 closed
start_dead_upstream closed2 closed
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
timeouts: {upstream_connect: 1s}
upstream:
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
upstream_groups:
  - name: ok
    health: {fail_threshold: 1}
    parents: [{address: "127.0.0.1:$(port_of regional https)", name: r1}]
  - name: nopool
    keepalive: false
    parents: [{address: "127.0.0.1:$(port_of regional https)", name: r1n}]
  - name: dead
    policy: first_live
    retries: 1
    health: {fail_threshold: 1, backoff: 60s}
    parents:
      - {address: "127.0.0.1:$(port_of silent1 tcp)", name: s1}
      - {address: "127.0.0.1:$(port_of silent2 tcp)", name: s2}
  - name: direct
    policy: round_robin
    go_direct: true
    health: {fail_threshold: 1, backoff: 60s}
    parents:
      - {address: "127.0.0.1:$(port_of closed1 tcp)", name: c1}
      - {address: "127.0.0.1:$(port_of closed2 tcp)", name: c2}
remap:
  - "map https://$EDGE_HOST/ https://$REGIONAL_HOST/ @group=ok"
  - "map https://nopool.test/ https://$REGIONAL_HOST/ @group=nopool"
  - "map https://dead.test/ https://$REGIONAL_HOST/ @group=dead"
  - "map https://direct.test/ http://127.0.0.1:$ORIGIN_PORT/ @group=direct"
YAML
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
ap=$(port_of edge admin)
st() { curl -sS "http://127.0.0.1:$ap/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# hcurl HOST ARGS...: a customer's request with another Host than ecurl's
hcurl() {
    local h=$1
    shift
    curl -sS --cacert "$PKI/ca.crt" -H "Host: $h" "$@"
}
# pv FAMILY PARENT: the parent's value in a per-parent series
pv() { st "[s['value'] for s in d['$1'] if s['parent'] == '$2'][0]"; }

# a 5xx is an answer: passed on, and the parent stays in
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/status/503")" 503 "a parent's 503"
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/status/500")" 500 "a parent's 500"
assert_eq "$(pv parent_up r1)" 1 "r1 up after 5xx answers"
assert_eq "$(pv parent_failures r1)" 0 "r1 failures after 5xx answers"
assert_eq "$(pv parent_requests r1)" 2 "requests to r1"

# keepalive: false: a new connection per request, resumed after the first
for i in 1 2 3 4 5; do
    assert_eq "$(hcurl nopool.test -o /dev/null -w '%{http_code}' "$EDGE/np$i")" 200 "nopool request $i"
done
assert_eq "$(st "[s['value'] for s in d['parent_connections'] if s['parent'] == 'r1n' and s['kind'] == 'opened'][0]")" 5 \
    "connections opened with keepalive: false"
assert_eq "$(st "[s['value'] for s in d['parent_connections'] if s['parent'] == 'r1n' and s['kind'] == 'reused'][0]")" 0 \
    "connections reused with keepalive: false"
res=$(st "[s['value'] for s in d['parent_tls_handshakes'] if s['parent'] == 'r1n' and s['kind'] == 'resumed'][0]")
full=$(st "[s['value'] for s in d['parent_tls_handshakes'] if s['parent'] == 'r1n' and s['kind'] == 'full'][0]")
assert_eq "$((res + full))" 5 "handshakes with keepalive: false"
[ "$res" -ge 4 ] || fail "only $res of 5 new connections resumed"  # r1's session may already be cached

# parents that never complete a handshake: the first request waits for both connect timeouts (1 s
# each: retries 1), which takes both out
out=$(hcurl dead.test -o /dev/null -w '%{http_code} %{time_total}' "$EDGE/a")
code=${out% *}
[ "$code" = 504 ] || [ "$code" = 502 ] || fail "first request to the dead group: $code"
log_has edge "parent s1 (127.0.0.1:$(port_of silent1 tcp)) is down" || fail "no log line for s1 going down"
log_has edge "parent s2 (127.0.0.1:$(port_of silent2 tcp)) is down" || fail "no log line for s2 going down"
assert_eq "$(pv parent_up s1)$(pv parent_up s2)" 00 "s1 and s2 up"
# now every parent is out: 502 at once, with a line that says why
for i in 1 2 3; do
    out=$(hcurl dead.test -o /dev/null -w '%{http_code} %{time_total}' "$EDGE/b$i")
    assert_eq "${out% *}" 502 "request $i to the dead group"
    python3 -c "import sys; sys.exit(0 if float('${out#* }') < 0.5 else 1)" ||
        fail "502 took ${out#* }s with every parent out (connect timeout 1s x 2 parents)"
done
log_has edge "upstream group dead: no parent in service (all 2 out); 502" || fail "no log line for the 502"
assert_eq "$(pv parent_failures s1)$(pv parent_failures s2)" 11 "s1 and s2 failures (no attempt once out)"

# go_direct: refused parents, then the target itself; once both are out, direct at once
o=$(origin_count)
for i in 1 2 3; do
    body=$(hcurl direct.test "$EDGE/d$i")
    assert_eq "$body" "origin: /d$i" "direct request $i"
done
assert_eq "$(($(origin_count) - o))" 3 "direct requests at the origin"
log_has edge "upstream group direct: no further parent to try; going direct" || fail "no log line for go_direct"
log_has edge "upstream group direct: no parent in service; going direct" || fail "no go_direct line once all are out"
assert_eq "$(pv parent_up c1)$(pv parent_up c2)" 00 "c1 and c2 up"
stop_all
