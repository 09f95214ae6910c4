#!/usr/bin/env bash
# CONNECT tunnels (docs/TUNNELS.md): curl -p -x through the edge, over mTLS to the regional, to a TLS
# service (openssl s_server -WWW) behind it. 100 MiB arrive intact with each node's peak RSS bounded;
# a port outside connect_ports and a target without a route get 403; CONNECT straight to the regional
# without a client certificate fails in the handshake; a peer's non-200 (sent in pieces) reaches the
# client; a 200 split over reads is understood and the bytes after it relayed; a half-close gets
# through both tiers; an unresolvable name is a 502 with the reason in the regional's log; stats and
# the access log count the bytes.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

N=104857600
# Release build: 64 MiB. ASan keeps shadow memory and a quarantine resident (capped here, as in
# 50_large.sh), which is the sanitizer's cost, not buffering by the node.
case "$CDN_NODE" in
*/san/*) limit_kb=${E2E_RSS_LIMIT_KB:-153600} ;;
*valgrind*) limit_kb=${E2E_RSS_LIMIT_KB:-262144} ;; # memcheck's shadow memory
*) limit_kb=${E2E_RSS_LIMIT_KB:-65536} ;;
esac
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
H=$E2E_SRC/test/e2e/tunnel_helpers.py

pki
start_origin

# the TLS service: s_server -WWW serves files from its working folder
mkdir -p "$T/www"
head -c $N /dev/urandom >"$T/www/big"
echo "small file" >"$T/www/small"
want=$(sha256_of "$T/www/big")
(cd "$T/www" && exec openssl s_server -accept 127.0.0.1:0 -cert "$PKI/edge.crt" -key "$PKI/edge.key" -WWW \
    >"$T/service.out" 2>"$T/service.err") &
_PID[service]=$!
for ((i = 0; i < 100; i++)); do
    grep -q '^ACCEPT' "$T/service.out" 2>/dev/null && break
    sleep 0.1
done
SP=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/service.out")
[ -n "$SP" ] || fail "s_server did not start: $(cat "$T/service.err")"

python3 "$H" echo "$T/echo.ports" >"$T/echo.out" 2>"$T/echo.err" &
_PID[echo]=$!
python3 "$H" peer "$T/fakepeer.ports" "$PKI/regional.crt" "$PKI/regional.key" >"$T/fakepeer.out" 2>"$T/fakepeer.err" &
_PID[fakepeer]=$!
_wait_ready echo
_wait_ready fakepeer
XP=$(port_of echo tcp)
FP=$(port_of fakepeer tcp)

regional_config "$T/regional.yaml"
# a second tunnel listener where the certificate is only requested: CONNECT needs one all the same
sed -i '/ca_file: pki\/ca.crt/a\
  - {name: maybe, address: 127.0.0.1, port: 0, tls: true, certificate: pki/regional.crt,\
     key: pki/regional.key, client_auth: request, ca_file: pki/ca.crt}' "$T/regional.yaml"
cat >>"$T/regional.yaml" <<EOF2
log:
  access: regional.access
tunnel:
  listeners: [https, maybe]
  connect_ports: [443, $SP, $XP]
EOF2
start_node regional regional "$T/regional.yaml"
RP=$(port_of regional https)
MP=$(port_of regional maybe)

cat >"$T/edge.yaml" <<EOF2
role: edge
workers: 2
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/edge.crt
    key: pki/edge.key
  - name: proxy
    address: 127.0.0.1
    port: 0
remap:
  - "map https://$EDGE_HOST/ https://$REGIONAL_HOST/"
upstream:
  address: 127.0.0.1:$RP
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
admin:
  port: 0
log:
  access: edge.access
tunnel:
  idle_timeout: 2s
  listeners: [proxy, https]
  routes:
    - match: 'localhost:[0-9]+'
      peer: 127.0.0.1:$RP
    - match: '(split200|slow|speak)[.]test:443'
      peer: 127.0.0.1:$FP
    - match: 'nowhere[.]invalid:443'
      peer: 127.0.0.1:$RP
EOF2
start_node edge edge "$T/edge.yaml"
PP=$(port_of edge proxy)
EP=$(port_of edge https)
AP=$(port_of edge admin)

# --- 100 MiB through edge -> regional -> service, intact, memory bounded ---------------------------
t0=$(date +%s%N)
curl -sS --max-time 60 -p -x "http://127.0.0.1:$PP" --cacert "$PKI/ca.crt" -o "$T/big.got" "https://localhost:$SP/big" ||
    fail "100 MiB through the tunnel: curl exit $?"
t1=$(date +%s%N)
assert_eq "$(sha256_of "$T/big.got")" "$want" "sha256 of 100 MiB through the tunnel"
echo "100 MiB through the tunnel in $(((t1 - t0) / 1000000)) ms"
rm -f "$T/big.got"

peak_kb() {
    local max=0 p kb
    for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
        kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        [ -n "$kb" ] && [ "$kb" -gt "$max" ] && max=$kb
    done
    echo "$max"
}
for name in edge regional; do
    kb=$(peak_kb "$(pid_of $name)")
    echo "$name peak RSS: $kb kB (limit $limit_kb kB)"
    [ "$kb" -le "$limit_kb" ] || fail "$name peak RSS $kb kB is over $limit_kb kB"
done

# the same through the edge's TLS listener (an HTTPS proxy: TLS inside TLS on the client side)
body=$(curl -sS --max-time 20 -p -x "https://127.0.0.1:$EP" --proxy-cacert "$PKI/ca.crt" --cacert "$PKI/ca.crt" \
    "https://localhost:$SP/small") || fail "through the edge's TLS listener: curl exit $?"
assert_eq "$body" "small file" "a file through the edge's TLS listener (TLS inside TLS)"

# --- refusals --------------------------------------------------------------------------------------
connect_code() { # TARGET: the proxy's status for CONNECT TARGET through the edge's plain listener
    curl -sS --max-time 20 -p -x "http://127.0.0.1:$PP" --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_connect}' \
        "https://$1/" 2>>"$T/curl.err" || true
}
assert_eq "$(connect_code localhost:1)" 403 "CONNECT to a port outside the regional's connect_ports"
log_has regional "port not in tunnel.connect_ports" || fail "regional log: no reason for the port refusal"
assert_eq "$(connect_code nomatch.test:443)" 403 "CONNECT to a target no route matches"
log_has edge "no tunnel route matches" || fail "edge log: no reason for the route refusal"
assert_eq "$(connect_code nowhere.invalid:443)" 502 "CONNECT to a name that does not resolve"
log_has regional "resolve nowhere.invalid" || fail "regional log: no resolution failure reason"

# CONNECT straight to the regional: refused in the handshake without a client certificate
req="CONNECT localhost:$SP HTTP/1.1\r\nHost: localhost:$SP\r\n\r\n"
out=$(printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$RP" -CAfile "$PKI/ca.crt" \
    -ign_eof 2>&1 || true)
assert_contains "$out" "alert certificate required" "CONNECT to the regional without a certificate"
assert_not_contains "$out" "HTTP/1.1 200" "CONNECT to the regional without a certificate"
# ...and the control: with the edge's client certificate the regional answers 200
out=$( (printf "$req"; sleep 2) | timeout 10 openssl s_client -connect "127.0.0.1:$RP" -CAfile "$PKI/ca.crt" \
    -cert "$PKI/edge-client.crt" -key "$PKI/edge-client.key" 2>&1 || true)
assert_contains "$out" "HTTP/1.1 200 Connection Established" "CONNECT to the regional with edge-client.crt"

# on a listener that only requests a certificate, a CONNECT without one is refused with 403
out=$( (printf "$req"; sleep 2) | timeout 10 openssl s_client -connect "127.0.0.1:$MP" -CAfile "$PKI/ca.crt" 2>&1 ||
    true)
assert_contains "$out" "HTTP/1.1 403 Forbidden" "CONNECT without a certificate on a client_auth: request listener"
log_has regional "no verified client certificate" || fail "regional log: no reason for the certificate refusal"

# --- a peer's answers, split over reads ------------------------------------------------------------
out=$(timeout 20 python3 "$H" client "$PP" slow.test:443 raw)
assert_contains "$out" "HTTP/1.1 429 Slow Down" "a peer's 429 passed to the client"
assert_contains "$out" "Connection: close" "a peer's 429 passed to the client"
out=$(timeout 20 python3 "$H" client "$PP" split200.test:443 raw)
assert_eq "$out" "$(printf 'HTTP/1.1 200 Connection Established\r\n\r\nbanner-from-peer')" \
    "a 200 in three pieces, then the peer's first bytes"

out=$(timeout 20 python3 "$H" client "$PP" speak.test:443 banner) ||
    fail "the service's first bytes, sent with the peer's 200, did not arrive: $out"

# --- idle: nothing either way for tunnel.idle_timeout (2 s here) closes the tunnel ------------------
out=$(timeout 20 python3 "$H" client "$PP" "localhost:$XP" idle)
secs=$(echo "$out" | sed -n 's/^closed after \([0-9]*\)\..*/\1/p')
[ -n "$secs" ] && [ "$secs" -ge 1 ] && [ "$secs" -le 8 ] || fail "idle tunnel: $out (want closed after about 2 s)"

# --- half-close: the echo service answers only after it saw the client's EOF -----------------------
out=$(timeout 20 python3 "$H" client "$PP" "localhost:$XP" halfclose) || fail "half-close: $out"
assert_contains "$out" "half-close ok" "half-close through both tiers"

# --- stats and access log --------------------------------------------------------------------------
stats=$(curl -sS "http://127.0.0.1:$AP/stats")
python3 - "$stats" "$N" <<'PYEOF' || fail "edge /stats: tunnel counters wrong: $stats"
import json, sys
j, n = json.loads(sys.argv[1]), int(sys.argv[2])
ok = (j["tunnels"] >= 6 and j["tunnels_active"] == 0 and j["tunnel_bytes_down"] >= n
      and j["tunnel_bytes_up"] >= 1 << 20 and j["tunnel_refused_no_route"] == 1
      and j["tunnel_failed_peer"] >= 3)
sys.exit(0 if ok else 1)
PYEOF
access_count edge 8 >/dev/null
grep -q "CONNECT localhost:$XP .*end=idle-timeout" "$T/edge.access" || fail "edge access log: no idle-timeout line"
line=$(grep "CONNECT localhost:$SP " "$T/edge.access" | head -1)
assert_contains "$line" "tunnel_down=" "edge access log line of the 100 MiB tunnel"
down=$(echo "$line" | sed -n 's/.*tunnel_down=\([0-9]*\).*/\1/p')
[ "$down" -ge $N ] || fail "edge access log: tunnel_down=$down, want >= $N: $line"
assert_contains "$line" "up=127.0.0.1:$RP" "edge access log line names the peer"


# --- the roles' rules, through check-config ----------------------------------------------------------
bad_config() { # ROLE WANT: check-config of $T/bad.yaml fails and says WANT
    local rc=0
    "$CDN_NODE" check-config --role "$1" --config "$T/bad.yaml" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -ne 0 ] || fail "check-config accepted $(cat "$T/bad.yaml")"
    assert_contains "$(cat "$T/err")" "$2" "check-config ($1)"
}
regional_config "$T/bad.yaml"
printf 'tunnel:\n  listeners: [https]\n  routes: [{match: "x:1", peer: "r.test:443"}]\n' >>"$T/bad.yaml"
bad_config regional "tunnel.routes: a regional connects to the service itself"
regional_config "$T/bad.yaml"
sed -i 's/client_auth: require/client_auth: none/' "$T/bad.yaml"
printf 'tunnel:\n  listeners: [https]\n' >>"$T/bad.yaml"
bad_config regional "a regional accepts CONNECT only from verified client certificates"
printf 'role: edge\nlisteners: [{name: p, address: 127.0.0.1, port: 0}]\ntunnel: {listeners: [p]}\n' >"$T/bad.yaml"
bad_config edge "an edge needs tunnel.routes"
printf 'role: edge\nlisteners: [{name: p, address: 127.0.0.1, port: 0}]\ntunnel: {listeners: [p], routes: [{match: "x:1", peer: "r.test:443"}]}\n' >"$T/warn.yaml"
"$CDN_NODE" check-config --config "$T/warn.yaml" >"$T/out" 2>"$T/err" || fail "check-config warn.yaml: $(cat "$T/err")"
assert_contains "$(cat "$T/err")" "no upstream.client_certificate" "check-config of an edge routing tunnels without a client certificate"

stop_all
