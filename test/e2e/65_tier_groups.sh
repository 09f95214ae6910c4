#!/usr/bin/env bash
# Upstream groups (docs/TIERING.md): three regionals, each with its own cache, behind one edge whose
# remap rule uses a consistent_hash group. Keys spread over all three; under steady load the edge
# reuses its pooled connections and new ones resume; stopping one regional fails no customer request,
# moves only its keys, and the others keep serving theirs from cache (origin counts); when it comes
# back on the same port it gets its keys again after the back-off; adding a fourth parent (reload)
# moves roughly a quarter of the keys, all to the new one.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
MA='hdr=Cache-Control:max-age%3D600'
declare -A RP=()
# start_regional NAME: a caching regional (its own store and access log $T/NAME.access); the port it
# bound is written into its config, so that a restart binds the same one
start_regional() {
    if [ ! -f "$T/$1.yaml" ]; then
        regional_config "$T/$1.yaml"
        cache_config "$T/$1.yaml" "$1"
    fi
    start_node "$1" regional "$T/$1.yaml"
    RP[$1]=$(port_of "$1" https)
    sed -i "s/^    port: 0$/    port: ${RP[$1]}/" "$T/$1.yaml"
}
for r in r1 r2 r3; do start_regional $r; done

# edge_yaml PARENT...: the edge's config with the group "regionals" of these regionals
edge_yaml() {
    cat <<YAML
role: edge
workers: 2
listeners:
  - name: https
    address: 127.0.0.1
    port: $(cat "$T/edge.port" 2>/dev/null || echo 0)
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
    health: {fail_threshold: 1, backoff: 1s}
    parents:
YAML
    for r in "$@"; do
        printf '      - {address: "127.0.0.1:%s", name: %s}\n' "${RP[$r]}" "$r"
    done
    echo "remap:"
    echo "  - \"map https://$EDGE_HOST/ https://$REGIONAL_HOST/ @group=regionals\""
}
edge_yaml r1 r2 r3 >"$T/edge.yaml"
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
ap=$(port_of edge admin)
st() { curl -sS "http://127.0.0.1:$ap/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# psum FAMILY [KIND]: a per-parent counter summed over the group's parents
psum() { st "sum(s['value'] for s in d['$1'] if '${2:-}' in ('', s.get('kind')))"; }

# pass NAME PREFIX N: GET PREFIX0..N-1 through the edge on one connection; every answer must be 200
pass() {
    local i
    for ((i = 0; i < $3; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$EDGE$2$i?$MA"; done >"$T/$1.urls"
    ecurl -K "$T/$1.urls" -w '%{http_code}\n' >"$T/$1.codes" || true
    assert_eq "$(wc -l <"$T/$1.codes")" "$3" "answers in pass $1"
    assert_eq "$(sort -u "$T/$1.codes")" 200 "statuses in pass $1"
}
# owners PREFIX N [NAME=SKIP...]: "key owner" per key, from the regionals' access logs (with NAME=SKIP
# arguments: only those regionals, and only their lines after line SKIP); one owner per key or fail
owners() {
    sleep 0.3 # access logs are written by a thread of their own
    python3 - "$T" "$1" "$2" "${@:3}" <<'PY'
import sys, re, os
T, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
skip = dict(a.split("=") for a in sys.argv[4:])
seen = {}
for name in sorted(os.listdir(T)):
    if not name.endswith(".access") or (skip and name[:-7] not in skip):
        continue
    r = name[:-7]
    lines = open(os.path.join(T, name)).read().splitlines()[int(skip.get(r, 0)):]
    for l in lines:
        m = re.search(r'"GET ' + re.escape(prefix) + r'(\d+)\?', l)
        if m:
            seen.setdefault(int(m.group(1)), set()).add(r)
for k in range(n):
    o = seen.get(k, set())
    if len(o) != 1:
        sys.exit("key %d went to %s" % (k, sorted(o) or "no regional"))
    print(k, o.pop())
PY
}
lines_of() { wc -l <"$T/$1.access"; }

# 1. 60 keys spread over the three parents, each stored by the one that got it
pass p1 /k/ 60
owners /k/ 60 >"$T/own1" || fail "pass 1: $(cat "$T/own1")"
for r in r1 r2 r3; do
    n=$(grep -c " $r$" "$T/own1" || true)
    [ "$n" -ge 8 ] || fail "$r got $n of 60 keys: $(cut -d' ' -f2 "$T/own1" | sort | uniq -c | tr '\n' ' ')"
done
assert_eq "$(origin_count)" 60 "origin requests after the first pass"

# 2. steady load: 300 more requests (regional hits) on pooled connections; new ones resume
opened=$(psum parent_connections opened)
full=$(psum parent_tls_handshakes full)
resumed=$(psum parent_tls_handshakes resumed)
for i in 1 2 3 4 5; do pass "s$i" /k/ 60; done
assert_eq "$(origin_count)" 60 "origin requests after the steady load"
d_opened=$(($(psum parent_connections opened) - opened))
d_full=$(($(psum parent_tls_handshakes full) - full))
d_resumed=$(($(psum parent_tls_handshakes resumed) - resumed))
[ "$d_opened" -le 3 ] || fail "$d_opened new connections to the parents for 300 sequential requests"
assert_eq "$d_full" 0 "full handshakes under steady load ($d_resumed resumed of $d_opened new)"
assert_eq "$d_resumed" "$d_opened" "new connections under steady load resume"
[ "$(psum parent_connections reused)" -ge 290 ] || fail "pooled connections were not reused"

# 3. r2 stops: no failed request; r1's and r3's keys stay put and come from their caches
stop r2
n2=$(grep -c " r2$" "$T/own1")
declare -A L=()
for r in r1 r3; do L[$r]=$(lines_of $r); done
o=$(origin_count)
pass p2 /k/ 60
owners /k/ 60 "r1=${L[r1]}" "r3=${L[r3]}" >"$T/own2" || fail "pass 2: $(cat "$T/own2")"
moved=$(join "$T/own1" "$T/own2" | awk '$2 != $3 && $2 != "r2"' | wc -l)
assert_eq "$moved" 0 "keys of r1 and r3 that moved when r2 stopped"
assert_eq "$(($(origin_count) - o))" "$n2" "origin requests in pass 2 (only r2's $n2 keys are fetched again)"
log_has edge "parent r2 (127.0.0.1:${RP[r2]}) is down" || fail "no log line for r2 going down"
assert_eq "$(st "[s['value'] for s in d['parent_up'] if s['parent'] == 'r2'][0]")" 0 "r2 up in /stats"

# 4. r2 comes back on its port: after the back-off a probe puts it back, and its keys return to it
start_regional r2
k2=$(awk '$2 == "r2" { print $1; exit }' "$T/own1")
for ((i = 0; i < 60; i++)); do
    ecurl -o /dev/null "$EDGE/k/$k2?$MA"
    [ "$(st "[s['value'] for s in d['parent_up'] if s['parent'] == 'r2'][0]")" = 1 ] && break
    sleep 0.2
done
log_has edge "parent r2 (127.0.0.1:${RP[r2]}) is up again" || fail "r2 was not put back within 12 s"
sleep 0.3 # the probe's access log line
L[r2]=$(lines_of r2)
o=$(origin_count)
pass p3 /k/ 60
sleep 0.3
n=$(($(lines_of r2) - L[r2]))
assert_eq "$n" "$n2" "requests r2 got back in pass 3"
assert_eq "$(origin_count)" "$o" "origin requests in pass 3 (r2 still has its keys; the others theirs)"

# 5. a fourth parent (reload): about a quarter of 200 keys move, all of them to r4
start_regional r4
pass a /m/ 200
owners /m/ 200 >"$T/own_a" || fail "pass a: $(cat "$T/own_a")"
declare -A B=()
for r in r1 r2 r3 r4; do B[$r]=$(lines_of $r 2>/dev/null || echo 0); done
edge_yaml r1 r2 r3 r4 >"$T/edge.yaml"
kill -HUP "$(pid_of edge)"
for ((i = 0; i < 50; i++)); do
    [ "$(st 'd["generation"]')" = 2 ] && break
    sleep 0.1
done
assert_eq "$(st 'd["generation"]')" 2 "generation after adding r4"
pass b /m/ 200
owners /m/ 200 "r1=${B[r1]}" "r2=${B[r2]}" "r3=${B[r3]}" "r4=${B[r4]}" >"$T/own_b" || fail "pass b: $(cat "$T/own_b")"
moved=$(join "$T/own_a" "$T/own_b" | awk '$2 != $3' | wc -l)
elsewhere=$(join "$T/own_a" "$T/own_b" | awk '$2 != $3 && $3 != "r4"' | wc -l)
echo "adding a fourth parent moved $moved of 200 keys"
[ "$moved" -ge 20 ] && [ "$moved" -le 80 ] || fail "adding a fourth parent moved $moved of 200 keys (want 10%..40%)"
assert_eq "$elsewhere" 0 "moved keys that went elsewhere than r4"
stop_all
