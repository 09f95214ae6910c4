#!/usr/bin/env bash
# Named outbound TLS profiles (upstreams:, chosen per remap rule with "@upstream=NAME"): each presents its
# own client certificate to the same regional, a pooled connection made under one profile is never
# reused for another (the regional would otherwise see the wrong edge), the upstream CRL (crl_file) is
# checked on the regional's chain (502 under ENFORCED, logged success under PERMISSIVE), and an unknown
# profile name is refused with file:line:col.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
# a CRL of the dev CA that revokes the regional's own server certificate, and one that revokes nothing
C=$T/ca
mkdir -p "$C"
: >"$C/index.txt"
echo 1000 >"$C/crlnumber"
printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = %s\nprivate_key = %s\n' \
    "$C/index.txt" "$C/crlnumber" "$PKI/ca.crt" "$PKI/ca.key" >"$C/ca.cnf"
openssl ca -config "$C/ca.cnf" -gencrl -out "$T/clean.crl" >/dev/null 2>&1 || fail "openssl ca -gencrl"
openssl ca -config "$C/ca.cnf" -revoke "$PKI/regional.crt" >/dev/null 2>&1 || fail "openssl ca -revoke"
openssl ca -config "$C/ca.cnf" -gencrl -out "$T/regional-revoked.crl" >/dev/null 2>&1 || fail "openssl ca -gencrl"

# the regional answers /headers, so the origin's view tells which edge certificate arrived
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)

cat >"$T/edge.yaml" <<YAML
role: edge
workers: 1
admin: {port: 0}
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/edge.crt
    key: pki/edge.key
remap:
  - "map https://$EDGE_HOST/edge/ https://$REGIONAL_HOST/ @upstream=edge"
  - "map https://$EDGE_HOST/anon/ https://$REGIONAL_HOST/"
  - "map https://$EDGE_HOST/other/ https://$REGIONAL_HOST/ @upstream=other"
  - "map https://$EDGE_HOST/crl-ok/ https://$REGIONAL_HOST/ @upstream=crl-ok"
  - "map https://$EDGE_HOST/revoked/ https://$REGIONAL_HOST/ @upstream=revoked"
  - "map https://$EDGE_HOST/revoked-permissive/ https://$REGIONAL_HOST/ @upstream=revoked-permissive"
upstream: # the node default: no client certificate
  address: 127.0.0.1:$rp
  ca_file: pki/ca.crt
upstreams:
  - name: edge
    address: 127.0.0.1:$rp
    client_certificate: pki/edge-client.crt
    client_key: pki/edge-client.key
    ca_file: pki/ca.crt
  - name: other
    address: 127.0.0.1:$rp
    client_certificate: pki/other-client.crt
    client_key: pki/other-client.key
    ca_file: pki/ca.crt
  - name: crl-ok
    address: 127.0.0.1:$rp
    client_certificate: pki/edge-client.crt
    client_key: pki/edge-client.key
    ca_file: pki/ca.crt
    crl_file: clean.crl
  - name: revoked
    address: 127.0.0.1:$rp
    client_certificate: pki/edge-client.crt
    client_key: pki/edge-client.key
    ca_file: pki/ca.crt
    crl_file: regional-revoked.crl
  - name: revoked-permissive
    address: 127.0.0.1:$rp
    client_certificate: pki/edge-client.crt
    client_key: pki/edge-client.key
    ca_file: pki/ca.crt
    crl_file: regional-revoked.crl
    verify_server_policy: PERMISSIVE
YAML
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
get() { # get PATH: prints the status; the body in $T/body
    curl -sS --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -o "$T/body" -w '%{http_code}' "$EDGE$1" || true
}
edge_cert=$(openssl x509 -in "$PKI/edge-client.crt" -outform DER | base64 -w0)

# the profile's client certificate reaches the regional (which passes it on as Client-Cert)
assert_eq "$(get /edge/headers)" 200 "profile edge"
assert_contains "$(tr -d '\r' <"$T/body")" "Client-Cert: :$edge_cert:" "what the regional saw (profile edge)"
# the same regional, host and port, right after: the default (no certificate) and another profile must
# not ride the pooled connection of profile edge
for i in 1 2; do
    assert_eq "$(get /anon/hello)" 502 "upstream: without a client certificate (try $i, after a pooled edge conn)"
    assert_eq "$(get /other/hello)" 502 "profile other (other CA) (try $i, after a pooled edge conn)"
    assert_eq "$(get /edge/hello)" 200 "profile edge again (try $i)"
done
reused=$(curl -sS "http://127.0.0.1:$(port_of edge admin)/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["upstream_conns_reused"])')
[ "$reused" -ge 1 ] || fail "profile edge never reused its pooled connection (reused=$reused)"
log_has regional "reason=no_certificate" || fail "the regional did not refuse the default upstream's handshake"
log_has regional "reason=unknown_ca" || fail "the regional did not refuse profile other's certificate"

# the upstream CRL: checked on the regional's chain
assert_eq "$(get /crl-ok/hello)" 200 "profile with a CRL that revokes nothing"
assert_eq "$(get /revoked/hello)" 502 "profile whose CRL revokes the regional's certificate (ENFORCED)"
log_has edge "certificate revoked" || fail "no 'certificate revoked' for the revoked regional"
assert_eq "$(get /revoked-permissive/hello)" 200 "revoked regional under PERMISSIVE"
log_has edge "certificate not verified (certificate revoked); connecting anyway" || fail "PERMISSIVE logged nothing"

# config errors: an unknown profile, a duplicate name, a profile without a name
sed -e 's/@upstream=other"/@upstream=nope"/' -e 's/name: crl-ok/name: edge/' -e 's/  - name: revoked$/  - address: 127.0.0.1:1/' \
    "$T/edge.yaml" >"$T/bad.yaml"
rc=0
"$CDN_NODE" check-config --config "$T/bad.yaml" >"$T/check.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "check-config accepted bad upstream profiles"
out=$(cat "$T/check.out")
assert_contains "$out" "$T/bad.yaml:14:5: remap[2]: @upstream=nope: no such profile in upstreams:" "unknown profile"
assert_contains "$out" "upstreams[2].name: duplicate upstream name \"edge\" (also upstreams[0] at" "duplicate name"
assert_contains "$out" "upstreams[3].name: missing required key" "profile without a name"

stop_all
