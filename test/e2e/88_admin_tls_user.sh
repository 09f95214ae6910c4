#!/usr/bin/env bash
# The admin listener over TLS with required client certificates; `cdn-node reload` through a pid
# file; and, when the test runs as root, dropping privileges to `user:` after binding: the process
# runs as that user, still serves, and a reload that cannot read its files is refused (and works once
# they are readable).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
cat >>"$T/regional.yaml" <<'YAML'
admin:
  port: 0
  tls: true
  certificate: pki/regional.crt
  key: pki/regional.key
  ca_file: pki/ca.crt
YAML
as_root=0
if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null; then
    as_root=1
    echo "user: nobody" >>"$T/regional.yaml"
    # nobody may read the config and the certificates for reloads, not (yet) the keys (root's, 600)
    chmod 711 "$(dirname "$T")" "$T" "$PKI"
    chmod 644 "$T/regional.yaml" "$PKI"/*.crt
fi
start_node regional regional "$T/regional.yaml" --pid-file "$T/regional.pid"
rp=$(port_of regional https)
ap=$(port_of regional admin)
ADMIN=https://127.0.0.1:$ap

# admin over TLS: no certificate -> refused in the handshake; the edge's client certificate -> 200
rc=0
curl -sS -o /dev/null --cacert "$PKI/ca.crt" "$ADMIN/stats" 2>/dev/null || rc=$?
case $rc in 35 | 56) ;; *) fail "admin without a client certificate: curl exit $rc (want 35 or 56)" ;; esac
rc=0
curl -sS -o /dev/null "http://127.0.0.1:$ap/stats" 2>/dev/null || rc=$?
[ "$rc" != 0 ] || fail "plain HTTP to the TLS admin listener succeeded"
acurl() { curl -sS --cacert "$PKI/ca.crt" --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key" "$@"; }
assert_eq "$(acurl "$ADMIN/healthz")" ok "GET /healthz over TLS"
gen=$(acurl "$ADMIN/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
assert_eq "$gen" 1 "generation"

# cdn-node reload: no plain admin listener, so it needs the pid file
rc=0
out=$("$CDN_NODE" reload --config "$T/regional.yaml" 2>&1) || rc=$?
assert_eq "$rc" 2 "cdn-node reload without --pid-file"
assert_contains "$out" "--pid-file" "cdn-node reload explains"
[ -s "$T/regional.pid" ] || fail "no pid file"
assert_eq "$(cat "$T/regional.pid")" "$(pid_of regional)" "pid file"

if [ "$as_root" = 1 ]; then
    uid=$(id -u nobody)
    assert_match "$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$(pid_of regional)/status")" "$uid $uid $uid $uid" \
        "real, effective, saved and filesystem uid"
    grep -qF "running as uid $uid" "$T/regional.err" || fail "no 'running as uid' line"
    # still serves
    code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" --cert "$PKI/edge-client.crt" \
        --key "$PKI/edge-client.key" -H "Host: $REGIONAL_HOST" "https://127.0.0.1:$rp/hello")
    assert_eq "$code" 200 "request after dropping privileges"
    # the keys are root's (mode 600): a reload cannot read them and is refused, the node keeps serving
    "$CDN_NODE" reload --pid-file "$T/regional.pid" >/dev/null || fail "cdn-node reload --pid-file"
    for ((i = 0; i < 50; i++)); do
        [ "$(acurl "$ADMIN/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads_failed"])')" = 1 ] && break
        sleep 0.1
    done
    err=$(acurl "$ADMIN/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reload_last_error"])')
    assert_contains "$err" "regional.key" "reload_last_error names the unreadable key"
    chmod 644 "$PKI"/*.key
fi
"$CDN_NODE" reload --pid-file "$T/regional.pid" >/dev/null || fail "cdn-node reload --pid-file"
for ((i = 0; i < 50; i++)); do
    gen=$(acurl "$ADMIN/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
    [ "$gen" = 2 ] && break
    sleep 0.1
done
assert_eq "$gen" 2 "generation after SIGHUP through the pid file"
code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$PKI/ca.crt" --cert "$PKI/edge-client.crt" \
    --key "$PKI/edge-client.key" -H "Host: $REGIONAL_HOST" "https://127.0.0.1:$rp/hello")
assert_eq "$code" 200 "request after the reload"
stop_all
