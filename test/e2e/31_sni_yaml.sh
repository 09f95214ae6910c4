#!/usr/bin/env bash
# sni_yaml: an existing ATS sni.yaml is read as sni: rules (fqdn, verify_client, verify_client_ca_certs,
# ssl_cert_name, ssl_key_name; paths relative to the sni.yaml's folder), appended after the inline
# rules; its unsupported keys are refused by name with the sni.yaml's file:line:col.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
mkdir -p "$T/ats/certs"
cp "$PKI/edge.crt" "$PKI/edge.key" "$PKI/other-ca.crt" "$T/ats/certs/"
cat >"$T/ats/sni.yaml" <<'YAML'
# as ATS writes it
sni:
  - fqdn: partner.example
    verify_client: STRICT
    verify_client_ca_certs: certs/other-ca.crt
  - fqdn: '*.open.example'
    verify_client: NONE
    ssl_cert_name: certs/edge.crt
    ssl_key_name: certs/edge.key
YAML
regional_config "$T/regional.yaml" # ends with its remap: list
for h in partner.example a.open.example secure.example; do
    echo "  - \"map https://$h/ http://127.0.0.1:$ORIGIN_PORT/\"" >>"$T/regional.yaml"
done
cat >>"$T/regional.yaml" <<YAML
sni_yaml: ats/sni.yaml
sni:
  - fqdn: secure.example
    verify_client: STRICT
YAML
"$CDN_NODE" check-config --config "$T/regional.yaml" >"$T/check.out" 2>&1 || fail "check-config: $(cat "$T/check.out")"
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)

# scurl SNI ARGS...: prints the status, or "refused" for a failed handshake
scurl() {
    local sni=$1 rc=0 code
    shift
    code=$(curl -sS -k --resolve "$sni:$rp:127.0.0.1" -H "Host: $sni" -o "$T/body" -w '%{http_code}' "$@" \
        "https://$sni:$rp/hello" 2>"$T/curl.err") || rc=$?
    case $rc in 0) echo "$code" ;; 35 | 56) echo refused ;; *) echo "curl-exit-$rc" ;; esac
}
# the sni.yaml's STRICT rule with its own CA (relative to ats/): only other-ca's clients
assert_eq "$(scurl partner.example --cert "$PKI/other-client.crt" --key "$PKI/other-client.key")" 200 \
    "partner.example (sni.yaml, STRICT, other-ca) with other-client.crt"
assert_eq "$(scurl partner.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" refused \
    "partner.example with edge-client.crt (the listener's CA, not the rule's)"
assert_eq "$(scurl partner.example)" refused "partner.example without a certificate"
# the sni.yaml's NONE wildcard, with its ssl_cert_name (edge.crt: CN=localhost)
assert_eq "$(scurl a.open.example)" 200 "a.open.example (sni.yaml, NONE) without a certificate"
out=$(timeout 10 openssl s_client -connect "127.0.0.1:$rp" -servername a.open.example </dev/null 2>&1 || true)
assert_contains "$out" "CN = localhost" "server certificate for a.open.example (ssl_cert_name)"
# the inline rule still applies
assert_eq "$(scurl secure.example)" refused "secure.example (inline, STRICT) without a certificate"
assert_eq "$(scurl secure.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 200 \
    "secure.example with edge-client.crt"
log_has regional "sni=partner.example rule='partner.example'" || fail "no refusal line naming the sni.yaml rule"

# unsupported ATS keys: refused by name, at their place in the sni.yaml
cat >"$T/ats/unsupported.yaml" <<'YAML'
sni:
  - fqdn: tunnel.example
    tunnel_route: origin.example:443
  - fqdn: secure.example
    ip_allow: 10.0.0.0/8
    valid_tls_versions_in: [TLSv1_2]
YAML
sed 's|sni_yaml: ats/sni.yaml|sni_yaml: ats/unsupported.yaml|' "$T/regional.yaml" >"$T/bad.yaml"
rc=0
"$CDN_NODE" check-config --config "$T/bad.yaml" >"$T/check.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "check-config accepted an sni.yaml with unsupported keys"
out=$(cat "$T/check.out")
assert_contains "$out" "$T/ats/unsupported.yaml:3:19: sni[0].tunnel_route: ATS sni.yaml key \"tunnel_route\" is not supported" \
    "tunnel_route"
assert_contains "$out" "$T/ats/unsupported.yaml:5:15: sni[1].ip_allow: ATS sni.yaml key \"ip_allow\" is not supported" "ip_allow"
assert_contains "$out" "sni[1].valid_tls_versions_in: ATS sni.yaml key \"valid_tls_versions_in\"" "valid_tls_versions_in"
assert_contains "$out" "$T/ats/unsupported.yaml:4:11: sni[1].fqdn: duplicate fqdn \"secure.example\" (also at $T/bad.yaml:" \
    "an fqdn in both files"

stop_all
