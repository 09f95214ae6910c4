#!/usr/bin/env bash
# Reload without dropping a request: under continuous load through both tiers, rotate the edge's client
# certificate (watch_files, by a symlink swap as cert-manager does), the regional's CA bundle and its
# server certificate (SIGHUP and `cdn-node reload`) to a new CA; no request fails, the new certificates
# are the ones presented afterwards, a slow response in flight across a reload completes, and a
# broken or restart-only config is refused while the running generation keeps serving.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
P=$PKI

# a second CA, with the certificates the nodes rotate to
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/ca2.key" -out "$P/ca2.crt" \
    -days 30 -subj "/CN=cdn-node rotated CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf2() { # NAME CN EKU [SAN]
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$1.key" -out "$P/$1.csr" \
        -subj "/CN=$2" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$3"
        [ -z "${4:-}" ] || echo "subjectAltName=$4"
    } >"$P/$1.ext"
    openssl x509 -req -in "$P/$1.csr" -CA "$P/ca2.crt" -CAkey "$P/ca2.key" -set_serial "0x$(openssl rand -hex 8)" \
        -sha256 -days 30 -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
}
leaf2 edge-client2 edge-2 clientAuth
leaf2 regional2 regional.cdn.test serverAuth "DNS:localhost,DNS:regional.cdn.test,IP:127.0.0.1"
cat "$P/ca.crt" "$P/ca2.crt" >"$P/both.crt"

# the regional's material lives in files the test rewrites: cur-ca.crt, cur-regional.crt/.key
cp "$P/ca.crt" "$P/cur-ca.crt"
cp "$P/regional.crt" "$P/cur-regional.crt"
cp "$P/regional.key" "$P/cur-regional.key"
regional_yaml() { # extra lines appended
    cat <<EOF
role: regional
workers: 2
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/cur-regional.crt
    key: pki/cur-regional.key
    client_auth: require
    ca_file: pki/cur-ca.crt
remap:
  - "map https://$REGIONAL_HOST/ http://127.0.0.1:$ORIGIN_PORT/"
admin:
  port: 0
EOF
}
regional_yaml >"$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)
rap=$(port_of regional admin)

# the edge's client certificate is reached through a symlinked folder, swapped atomically
mkdir -p "$T/id/v1" "$T/id/v2"
cp "$P/edge-client.crt" "$P/edge-client.key" "$T/id/v1/"
cp "$P/edge-client2.crt" "$T/id/v2/edge-client.crt"
cp "$P/edge-client2.key" "$T/id/v2/edge-client.key"
ln -s v1 "$T/id/live"
cp "$P/ca.crt" "$P/edge-ca.crt"
cat >"$T/edge.yaml" <<EOF
role: edge
workers: 2
watch_files: true
watch_interval: 200ms
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/edge.crt
    key: pki/edge.key
remap:
  - "map https://$EDGE_HOST/ https://$REGIONAL_HOST/"
upstream:
  address: 127.0.0.1:$rp
  client_certificate: id/live/edge-client.crt
  client_key: id/live/edge-client.key
  ca_file: pki/edge-ca.crt
admin:
  port: 0
EOF
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
eap=$(port_of edge admin)

stat_of() { # NODE-ADMIN-PORT KEY
    curl -sS "http://127.0.0.1:$1/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}
# wait_gen ADMIN_PORT N: until the node's generation is N (5 s)
wait_gen() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(stat_of "$1" generation)" = "$2" ] && return 0
        sleep 0.1
    done
    fail "generation of :$1 is $(stat_of "$1" generation), want $2"
}
# origin_client: the CN of the client certificate the regional saw on the last request (Client-Cert)
origin_client() {
    ecurl "$EDGE/headers" | tr -d '\r' | sed -n 's/^[Cc]lient-[Cc]ert: :\(.*\):$/\1/p' | base64 -d |
        openssl x509 -inform DER -noout -subject -nameopt RFC2253
}

assert_eq "$(stat_of "$rap" generation)" 1 "regional generation at start"
assert_eq "$(origin_client)" "subject=CN=edge-1" "client certificate before rotation"

# ---- continuous load: 2 clients, new connections and keep-alive, until $T/stop exists ----
python3 - "$EDGE" "$P/both.crt" "$T/stop" "$T/load.out" <<'PY' &
import http.client, ssl, sys, threading, os, time
base, ca, stop, out = sys.argv[1:5]
host, port = base.split("//")[1].split(":")
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ok, bad = [0], []
def run(n):
    while not os.path.exists(stop):
        try:
            c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
            for i in range(3):  # keep-alive: a reload turns it into "Connection: close" later
                c.request("GET", "/bytes/2048?c=%d" % n, headers={"Host": "cdn.test"})
                r = c.getresponse()
                body = r.read()
                if r.status != 200 or len(body) != 2048:
                    bad.append("status %d, %d bytes" % (r.status, len(body)))
                else:
                    ok[0] += 1
            c.close()
        except Exception as e:
            bad.append(repr(e))
ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
for t in ts: t.start()
for t in ts: t.join()
with open(out, "w") as f:
    f.write("%d %d\n" % (ok[0], len(bad)))
    for b in bad[:10]: f.write(b + "\n")
PY
load_pid=$!
sleep 1

# a slow response in flight across the reloads: it was accepted under generation 1 and finishes
ecurl -o "$T/slow.body" -w '%{http_code}' "$EDGE/slow/3000" >"$T/slow.code" 2>"$T/slow.err" &
slow_pid=$!
sleep 0.3

# 1. the regional trusts both CAs (SIGHUP)
cp "$P/both.crt" "$P/cur-ca.crt"
kill -HUP "$(pid_of regional)"
wait_gen "$rap" 2
# 2. the edge trusts both CAs for the regional and presents its new certificate: a symlink swap,
#    noticed by watch_files (two files change: one reload or two, never a failed one)
cp "$P/both.crt" "$P/edge-ca.crt.new" && mv "$P/edge-ca.crt.new" "$P/edge-ca.crt"
ln -s v2 "$T/id/live.new" && mv -T "$T/id/live.new" "$T/id/live"
for ((i = 0; i < 50; i++)); do
    [ "$(stat_of "$eap" generation)" -ge 2 ] && [ "$(origin_client)" = "subject=CN=edge-2" ] && break
    sleep 0.1
done
assert_eq "$(origin_client)" "subject=CN=edge-2" "client certificate after the symlink swap"
assert_eq "$(stat_of "$eap" reloads_failed)" 0 "edge reloads failed"
# 3. the regional presents its new server certificate (cdn-node reload, through the admin listener)
cp "$P/regional2.crt" "$P/cur-regional.crt"
cp "$P/regional2.key" "$P/cur-regional.key"
out=$("$CDN_NODE" reload --config "$T/regional.yaml" --ports-file "$T/regional.ports") || fail "cdn-node reload: $out"
assert_eq "$out" "reloaded: generation 3 in service" "cdn-node reload"
# 4. the regional drops the old CA
cp "$P/ca2.crt" "$P/cur-ca.crt"
kill -HUP "$(pid_of regional)"
wait_gen "$rap" 4
sleep 1
touch "$T/stop"
wait "$load_pid" || fail "load generator failed"
read -r nok nbad <"$T/load.out"
[ "$nok" -gt 50 ] || fail "only $nok requests completed under load"
assert_eq "$nbad" 0 "failed requests during the rotation ($(tail -n +2 "$T/load.out" | head -3))"
wait "$slow_pid" || fail "slow request: curl exit $?: $(cat "$T/slow.err")"
assert_eq "$(cat "$T/slow.code")" 200 "slow response in flight across the reloads"

# the regional now presents the new certificate, and refuses the old client certificate in the handshake
issuer=$(openssl s_client -connect "127.0.0.1:$rp" -servername "$REGIONAL_HOST" -cert "$P/edge-client2.crt" \
    -key "$P/edge-client2.key" </dev/null 2>/dev/null | openssl x509 -noout -issuer -nameopt RFC2253)
assert_eq "$issuer" "issuer=CN=cdn-node rotated CA" "issuer of the regional's certificate"
rc=0
curl -sS -o /dev/null --cacert "$P/ca2.crt" --cert "$P/edge-client.crt" --key "$P/edge-client.key" \
    -H "Host: $REGIONAL_HOST" "https://127.0.0.1:$rp/hello" 2>/dev/null || rc=$?
case $rc in 35 | 56) ;; *) fail "the old client certificate after the CA rotation: curl exit $rc (want 35 or 56)" ;; esac
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/hello")" 200 "through both tiers after the rotation"

# a broken config on reload: refused with file:line, the old generation keeps serving
cp "$T/regional.yaml" "$T/regional.good"
printf 'timeouts:\n  keepalive: forever\n' >>"$T/regional.yaml"
rc=0
out=$("$CDN_NODE" reload --config "$T/regional.good" --ports-file "$T/regional.ports" 2>&1) || rc=$?
assert_eq "$rc" 1 "cdn-node reload exit status with a broken config"
assert_contains "$out" "regional.yaml:" "cdn-node reload names the file"
assert_contains "$out" "keepalive" "cdn-node reload names the key"
assert_eq "$(stat_of "$rap" generation)" 4 "regional generation after a refused reload"
assert_eq "$(stat_of "$rap" reload_last_success)" 0 "reload_last_success after a refused reload"
assert_contains "$(stat_of "$rap" reload_last_error)" "regional.yaml:" "reload_last_error"
assert_contains "$(curl -sS "http://127.0.0.1:$rap/metrics")" 'cdn_reloads_total{role="regional",result="failed"} 1' "/metrics reloads failed"
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/hello")" 200 "serving after a refused reload"
log_has regional "reload (admin POST /reload) failed, generation 4 stays in service"

# a restart-only change (the listener's port) is refused too, by name
sed 's/^    port: 0$/    port: 1/' "$T/regional.good" >"$T/regional.yaml"
kill -HUP "$(pid_of regional)"
for ((i = 0; i < 50; i++)); do
    [ "$(stat_of "$rap" reloads_failed)" = 2 ] && break
    sleep 0.1
done
assert_contains "$(stat_of "$rap" reload_last_error)" "need a restart: listener https" "restart-only change"
cp "$T/regional.good" "$T/regional.yaml"
kill -HUP "$(pid_of regional)"
wait_gen "$rap" 5
assert_eq "$(stat_of "$rap" reload_last_success)" 1 "reload_last_success after a good reload"
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/hello")" 200 "serving after the good reload"

stop_all
