#!/usr/bin/env bash
# identity: the regional tells the origin who the client is (RFC 9440 Client-Cert-Chain, and subject,
# issuer, SANs, SHA-256 and status headers under configured names), and a client's own copies of any of
# those names never reach the origin, whether or not it presented a certificate, and whether or not the
# headers are turned on.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
write_config() { # write_config IDENTITY_YAML
    regional_config "$T/regional.yaml"
    sed -i 's/client_auth: require/client_auth: request/' "$T/regional.yaml"
    printf '%s\n' "$1" >>"$T/regional.yaml"
}
# seen ARGS...: the request headers the origin got for GET /headers, as a client of the regional
seen() {
    curl -sS --cacert "$PKI/ca.crt" --resolve "$REGIONAL_HOST:$rp:127.0.0.1" -H "Host: $REGIONAL_HOST" "$@" \
        -H 'Client-Cert: :Zm9v:' -H 'Client-Cert-Chain: :Zm9v:' -H 'X-Edge-Subject: CN=spoofed' \
        -H 'X-Edge-Fp: spoofed' -H 'Client-Cert-Status: SUCCESS' -H 'Client-Cert-Issuer: CN=spoofed' \
        -H 'client-cert-sans: DNS:spoofed' "https://$REGIONAL_HOST:$rp/headers" | tr -d '\r'
}
EDGE_CERT=(--cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")

# 1. headers on, two names changed
write_config "identity:
  client_cert_chain: true
  headers: true
  subject_header: X-Edge-Subject
  fingerprint_header: X-Edge-Fp"
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)
out=$(seen "${EDGE_CERT[@]}") || fail "curl with edge-client.crt: exit $?"
assert_not_contains "$out" "spoofed" "origin headers (certificate sent)"
assert_not_contains "$out" "Zm9v" "origin headers (certificate sent)"
assert_not_contains "$out" "Client-Cert-Status: SUCCESS
Client-Cert-Status" "origin headers: one status only"
want_cert=$(openssl x509 -in "$PKI/edge-client.crt" -outform DER | base64 -w0)
want_ca=$(openssl x509 -in "$PKI/ca.crt" -outform DER | base64 -w0)
assert_contains "$out" "Client-Cert: :$want_cert:" "Client-Cert"
assert_contains "$out" "Client-Cert-Chain: :$want_ca:" "Client-Cert-Chain (the CA; the leaf is in Client-Cert)"
subject=$(openssl x509 -in "$PKI/edge-client.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
issuer=$(openssl x509 -in "$PKI/edge-client.crt" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')
fp=$(openssl x509 -in "$PKI/edge-client.crt" -noout -fingerprint -sha256 | sed 's/.*=//')
assert_contains "$out" "X-Edge-Subject: $subject" "subject header (renamed)"
assert_contains "$out" "Client-Cert-Issuer: $issuer" "issuer header"
assert_contains "$out" "X-Edge-Fp: $fp" "fingerprint header (renamed)"
assert_contains "$out" "Client-Cert-Status: SUCCESS" "status header"
assert_not_contains "$out" "Client-Cert-SHA256" "the default fingerprint name once renamed"
# a resumed TLS session (no verification this time) still gets the chain
req="GET /headers HTTP/1.1\r\nHost: $REGIONAL_HOST\r\nConnection: close\r\n\r\n"
for v in -tls1_3 -tls1_2; do
    printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$rp" -servername "$REGIONAL_HOST" \
        -CAfile "$PKI/ca.crt" "${EDGE_CERT[@]/--/-}" -sess_out "$T/sess$v.pem" $v -ign_eof >/dev/null 2>&1 || true
    out=$(printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$rp" -servername "$REGIONAL_HOST" \
        -CAfile "$PKI/ca.crt" "${EDGE_CERT[@]/--/-}" -sess_in "$T/sess$v.pem" $v -ign_eof 2>&1 | tr -d '\r' || true)
    assert_contains "$out" "Reused," "second connection resumed ($v)"
    assert_contains "$out" "Client-Cert-Chain: :$want_ca:" "Client-Cert-Chain on a resumed session ($v)"
    assert_contains "$out" "X-Edge-Subject: $subject" "subject on a resumed session ($v)"
done
# without a certificate (client_auth request): no identity, status NONE, spoofs still dropped
out=$(seen) || fail "curl without a certificate: exit $?"
assert_not_contains "$out" "spoofed" "origin headers (no certificate)"
assert_not_contains "$out" "Zm9v" "origin headers (no certificate)"
assert_not_contains "$out" "Client-Cert:" "origin headers (no certificate)"
assert_contains "$out" "Client-Cert-Status: NONE" "status header (no certificate)"
stop regional

# 2. identity off (the default): only Client-Cert; the default names are still ours and dropped
write_config ""
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)
out=$(seen "${EDGE_CERT[@]}") || fail "curl with edge-client.crt: exit $?"
assert_contains "$out" "Client-Cert: :$want_cert:" "Client-Cert (identity off)"
assert_not_contains "$out" "Client-Cert-Chain" "identity off"
assert_not_contains "$out" "Client-Cert-Status" "identity off"
assert_not_contains "$out" "Client-Cert-Issuer" "identity off"
assert_not_contains "$out" "client-cert-sans" "identity off"
# X-Edge-Subject is not one of our names now: it is the client's business
assert_contains "$out" "X-Edge-Subject: CN=spoofed" "a name identity no longer uses"
stop_all
