#!/usr/bin/env bash
# Per-SNI client-certificate rules (sni:, ATS sni.yaml key names) on a regional whose listener requires
# certificates from the dev CA: a NONE rule lets a client without a certificate in, a STRICT rule refuses
# it in the handshake, a wildcard rule has its own CA bundle, '' serves clients that send no SNI, the
# longest wildcard wins, names match case-insensitively, and a Host that maps to a stricter rule than the
# connection's SNI gets 421 Misdirected Request (host_sni_policy: enforce, the default).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
o=http://127.0.0.1:$ORIGIN_PORT/
# a CRL of the dev CA that revokes edge-client.crt, for a per-SNI crl_file
C=$T/ca
mkdir -p "$C"
: >"$C/index.txt"
echo 1000 >"$C/crlnumber"
printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = %s\nprivate_key = %s\n' \
    "$C/index.txt" "$C/crlnumber" "$PKI/ca.crt" "$PKI/ca.key" >"$C/ca.cnf"
openssl ca -config "$C/ca.cnf" -revoke "$PKI/edge-client.crt" >/dev/null 2>&1 || fail "openssl ca -revoke"
openssl ca -config "$C/ca.cnf" -gencrl -out "$T/edges.crl" >/dev/null 2>&1 || fail "openssl ca -gencrl"
cat >"$T/regional.yaml" <<EOF
role: regional
workers: 2
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/regional.crt
    key: pki/regional.key
    client_auth: require
    ca_file: pki/ca.crt
sni:
  - fqdn: open.example
    verify_client: NONE
  - fqdn: Secure.Example
    verify_client: STRICT
  - fqdn: '*.partner.example'
    verify_client: STRICT
    verify_client_ca_certs: pki/other-ca.crt
  - fqdn: '*.example'
    verify_client: MODERATE
  - fqdn: ''
    verify_client: NONE
  - fqdn: revoked.example
    verify_client: STRICT
    crl_file: edges.crl
  - fqdn: cert.example
    verify_client: NONE
    certificate: pki/edge.crt
    key: pki/edge.key
remap:
  - "map https://open.example/ $o"
  - "map https://secure.example/ $o"
  - "map https://a.partner.example/ $o"
  - "map https://x.y.example/ $o"
  - "map https://$REGIONAL_HOST/ $o"
  - "map https://127.0.0.1/ $o"
  - "map https://revoked.example/ $o"
EOF
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)

# scurl SNI HOST ARGS...: curl with SNI (the URL's host, resolved to the regional) and a Host header;
# prints the status, body in $T/body
scurl() {
    local sni=$1 host=$2
    shift 2
    curl -sS -k --resolve "$sni:$rp:127.0.0.1" -H "Host: $host" -o "$T/body" -w '%{http_code}' "$@" \
        "https://$sni:$rp/hello"
}

# refused WHAT SNI ARGS...: the handshake fails (curl exit 35 or 56, no HTTP status)
refused() {
    local what=$1 sni=$2 rc=0 code
    shift 2
    code=$(scurl "$sni" "$sni" "$@" 2>"$T/curl.err") || rc=$?
    case $rc in 35 | 56) ;; *) fail "$what: curl exit $rc, status $code (want a refused handshake): $(cat "$T/curl.err")" ;; esac
}

# sclient ARGS...: one request through openssl s_client (Host: open.example); prints the transcript
sclient() {
    printf 'GET /hello HTTP/1.1\r\nHost: open.example\r\nConnection: close\r\n\r\n' |
        timeout 10 openssl s_client -connect "127.0.0.1:$rp" -quiet -ign_eof "$@" 2>&1 || true
}

# NONE rule: no certificate needed
assert_eq "$(scurl open.example open.example)" 200 "SNI open.example (NONE) without a certificate"
assert_eq "$(cat "$T/body")" "origin: /hello" "body for open.example"

# STRICT rule (written Secure.Example: matching is case-insensitive): refused without a certificate
refused "SNI secure.example (STRICT) without a certificate" secure.example
log_has regional "sni=secure.example rule='secure.example' verify_client=STRICT: handshake refused" ||
    fail "no refusal log line naming the rule: $(tail -n 5 "$T/regional.err")"
out=$(sclient -servername SECURE.EXAMPLE)
assert_contains "$out" "alert certificate required" "s_client -servername SECURE.EXAMPLE without a certificate"
assert_eq "$(scurl secure.example secure.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 200 \
    "SNI secure.example with edge-client.crt"

# per-SNI CA bundle: *.partner.example trusts other-ca only
refused "SNI a.partner.example with edge-client.crt (other CA bundle)" a.partner.example \
    --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key"
refused "SNI a.partner.example without a certificate" a.partner.example
assert_eq "$(scurl a.partner.example a.partner.example --cert "$PKI/other-client.crt" --key "$PKI/other-client.key")" \
    200 "SNI a.partner.example with other-client.crt"
out=$(sclient -servername b.c.partner.example -cert "$PKI/other-client.crt" -key "$PKI/other-client.key")
assert_contains "$out" "origin: /hello" "b.c.partner.example (wildcard over two labels) with other-client.crt"

# the longest wildcard wins: x.y.example is '*.example' (MODERATE): no certificate is fine, a bad one is not
assert_eq "$(scurl x.y.example x.y.example)" 200 "SNI x.y.example (MODERATE) without a certificate"
refused "SNI x.y.example (MODERATE) with other-client.crt" x.y.example \
    --cert "$PKI/other-client.crt" --key "$PKI/other-client.key"
assert_eq "$(scurl x.y.example x.y.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 200 \
    "SNI x.y.example (MODERATE) with edge-client.crt"

# per-SNI CRL (the listener's CA): edge-client.crt is revoked for revoked.example only
refused "SNI revoked.example with the revoked edge-client.crt" revoked.example \
    --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key"
log_has regional "sni=revoked.example rule='revoked.example' verify_client=STRICT: handshake refused: alert certificate revoked" ||
    fail "no 'certificate revoked' refusal for revoked.example: $(tail -n 5 "$T/regional.err")"

# '' rule: clients that send no SNI
out=$(sclient -noservername)
assert_contains "$out" "origin: /hello" "s_client -noservername (rule '')"
code=$(curl -sS -k -o "$T/body" -w '%{http_code}' -H "Host: 127.0.0.1" "https://127.0.0.1:$rp/hello")
assert_eq "$code" 200 "no SNI (an address in the URL), Host 127.0.0.1 (rule '' too)"

# per-SNI server certificate (edge.crt: CN=localhost) and the listener's (CN=regional.cdn.test)
out=$(sclient -servername cert.example)
assert_contains "$out" "CN = localhost" "certificate for SNI cert.example"
assert_contains "$out" "origin: /hello" "request with SNI cert.example"
out=$(sclient -servername open.example)
assert_contains "$out" "CN = regional.cdn.test" "certificate for SNI open.example"

# no rule matches: the listener's own client_auth (require)
refused "SNI other.test (listener: require) without a certificate" other.test
log_has regional "sni=other.test rule=- verify_client=STRICT: handshake refused" ||
    fail "no refusal log line for the listener's own settings: $(tail -n 5 "$T/regional.err")"
assert_eq "$(scurl "$REGIONAL_HOST" "$REGIONAL_HOST" --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 200 \
    "SNI $REGIONAL_HOST with edge-client.crt"

# a TLS session made under a NONE rule is never resumed under another rule (own session id context)
for v in -tls1_3 -tls1_2; do
    sclient -servername open.example -sess_out "$T/sess$v.pem" $v >/dev/null
    [ -s "$T/sess$v.pem" ] || fail "no session saved ($v)"
    out=$(timeout 10 openssl s_client -connect "127.0.0.1:$rp" -servername secure.example -sess_in "$T/sess$v.pem" \
        $v -ign_eof </dev/null 2>&1 || true)
    assert_not_contains "$out" "Reused," "session of open.example resumed with SNI secure.example ($v)"
    assert_contains "$out" "alert" "resumption attempt with SNI secure.example without a certificate ($v)"
    out=$(printf 'GET /hello HTTP/1.1\r\nHost: open.example\r\nConnection: close\r\n\r\n' |
        timeout 10 openssl s_client -connect "127.0.0.1:$rp" -servername open.example -sess_in "$T/sess$v.pem" \
            $v -ign_eof 2>&1 || true)
    assert_contains "$out" "Reused," "session of open.example resumed with SNI open.example ($v)"
done

# Host != SNI
n1=$(origin_count)
assert_eq "$(scurl open.example secure.example)" 421 "SNI open.example (NONE), Host secure.example (STRICT)"
log_has regional "Host secure.example maps to rule 'secure.example'" || fail "no 421 log line"
assert_eq "$(scurl open.example a.partner.example)" 421 "SNI open.example, Host a.partner.example"
assert_eq "$(scurl x.y.example secure.example)" 421 "SNI x.y.example (MODERATE, no certificate), Host secure.example"
assert_eq "$(scurl secure.example a.partner.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 421 \
    "SNI secure.example (STRICT, ca.crt), Host a.partner.example (STRICT, other-ca.crt)"
assert_eq "$(scurl secure.example revoked.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 421 \
    "SNI secure.example (STRICT, no CRL), Host revoked.example (STRICT, CRL)"
assert_eq "$(origin_count)" "$n1" "requests at the origin after the 421s"
# the other way round is fine: a stricter connection may ask for a laxer Host
assert_eq "$(scurl secure.example open.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 200 \
    "SNI secure.example (STRICT), Host open.example (NONE)"
assert_eq "$(scurl x.y.example secure.example --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key")" 200 \
    "SNI x.y.example (MODERATE, certificate sent), Host secure.example (STRICT)"
stop regional

# host_sni_policy: permissive logs the mismatch and serves the request
echo "host_sni_policy: permissive" >>"$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
rp=$(port_of regional https)
assert_eq "$(scurl open.example secure.example)" 200 "host_sni_policy permissive: SNI open.example, Host secure.example"
log_has regional "allowed (host_sni_policy: permissive)" || fail "no permissive log line"

# config errors name the rule
cat >"$T/bad.yaml" <<EOF
role: edge
listeners:
  - address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/edge.crt
    key: pki/edge.key
sni:
  - fqdn: secure.example
    verify_client: STRICT
  - fqdn: 'a.*.example'
  - fqdn: secure.EXAMPLE
  - fqdn: x.example
    verify_client: strict
EOF
rc=0
"$CDN_NODE" check-config --config "$T/bad.yaml" >"$T/check.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "check-config accepted a bad sni: list"
out=$(cat "$T/check.out")
assert_contains "$out" "sni[1].fqdn: expected a host name" "bad wildcard"
assert_contains "$out" "sni[2].fqdn: duplicate fqdn \"secure.example\"" "duplicate fqdn"
assert_contains "$out" "sni[3].verify_client: expected one of NONE, MODERATE, STRICT" "lower-case level"
sed -i '/a\.\*\.example/d; /secure.EXAMPLE/d; /x.example/d; /strict$/d' "$T/bad.yaml"
rc=0
"$CDN_NODE" check-config --config "$T/bad.yaml" >"$T/check.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "check-config accepted STRICT without a CA"
assert_contains "$(cat "$T/check.out")" "verify_client STRICT needs verify_client_ca_certs" "STRICT without a CA"

stop_all
