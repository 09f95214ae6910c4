#!/usr/bin/env bash
# Client-certificate policy beyond the CA: a revoked edge certificate (CRL) is refused in the
# handshake; an expired CRL refuses everyone unless crl_expired: warn; a CA certificate is never
# accepted as a client's own; verify_depth bounds the chain.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
C=$T/ca
mkdir -p "$C"
: >"$C/index.txt"
echo 1000 >"$C/crlnumber"
cat >"$C/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $C/index.txt
crlnumber = $C/crlnumber
default_md = sha256
default_crl_days = 30
certificate = $PKI/ca.crt
private_key = $PKI/ca.key
CNF

# leaf NAME EXT: a certificate for NAME signed by the test CA with extension lines EXT
leaf() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/$1.key" 2>/dev/null
    printf '[v3]\n%b\n' "$2" >"$C/$1.ext"
    openssl req -new -key "$C/$1.key" -subj "/CN=$1" -out "$C/$1.csr" 2>/dev/null
    openssl x509 -req -in "$C/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 30 -sha256 -extfile "$C/$1.ext" -extensions v3 -out "$C/$1.crt" 2>/dev/null
}
leaf revoked 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth'
leaf good 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth'
leaf cacert 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,digitalSignature'
openssl ca -config "$C/ca.cnf" -revoke "$C/revoked.crt" >/dev/null 2>&1 || fail "openssl ca -revoke"
openssl ca -config "$C/ca.cnf" -gencrl -out "$C/now.crl" >/dev/null 2>&1 || fail "openssl ca -gencrl"
# a CRL whose next update is already past (valid from 2 days ago to 1 day ago)
openssl ca -config "$C/ca.cnf" -gencrl -crl_lastupdate "$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)" \
    -crl_nextupdate "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)" -out "$C/expired.crl" >/dev/null 2>&1 ||
    fail "openssl ca -gencrl (expired)"

# regional NAME CRL EXPIRED_POLICY
regional() {
    cat >"$T/$1.yaml" <<CFG
role: regional
workers: 1
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/regional.crt
    key: pki/regional.key
    client_auth: require
    ca_file: pki/ca.crt
    crl_file: $2
    crl_expired: $3
remap:
  - "map https://$REGIONAL_HOST/ http://127.0.0.1:$ORIGIN_PORT/"
CFG
    start_node "$1" regional "$T/$1.yaml"
}

# try NODE CERT: the HTTP status curl gets from NODE presenting C/CERT (000 = refused in the handshake)
try() {
    curl -s --cacert "$PKI/ca.crt" -H "Host: $REGIONAL_HOST" --cert "$C/$2.crt" --key "$C/$2.key" -o /dev/null \
        -w '%{http_code}' "https://127.0.0.1:$(port_of "$1" https)/hello" || true
}

regional r1 "$C/now.crl" reject
assert_eq "$(try r1 good)" 200 "a good edge certificate with a current CRL"
assert_eq "$(try r1 revoked)" 000 "a revoked edge certificate"
out=$(timeout 10 openssl s_client -connect "127.0.0.1:$(port_of r1 https)" -CAfile "$PKI/ca.crt" -ign_eof \
    -cert "$C/revoked.crt" -key "$C/revoked.key" </dev/null 2>&1 || true)
assert_contains "$out" "alert certificate revoked" "s_client with the revoked certificate"
assert_eq "$(try r1 cacert)" 000 "a CA certificate presented as a client certificate"
log_has r1 "TLS handshake failed" || fail "r1 logged no refused handshake"

regional r2 "$C/expired.crl" reject
assert_eq "$(try r2 good)" 000 "an expired CRL with crl_expired: reject"
regional r3 "$C/expired.crl" warn
assert_eq "$(try r3 good)" 200 "an expired CRL with crl_expired: warn"
assert_eq "$(try r3 revoked)" 000 "a revoked certificate under an expired CRL with crl_expired: warn"
log_has r3 "expired CRL" || fail "r3 logged no warning about the expired CRL"

# a file without any CRL is refused at start with the file named
cp "$PKI/ca.crt" "$T/not-a-crl.pem"
sed "s|crl_file: .*|crl_file: $T/not-a-crl.pem|" "$T/r1.yaml" >"$T/bad.yaml"
rc=0
out=$("$CDN_NODE" check-config --config "$T/bad.yaml" 2>&1) || rc=$?
assert_eq "$rc" 1 "check-config exit status with a bad crl_file"
assert_contains "$out" "not-a-crl.pem: no PEM CRL" "check-config message"

stop_all
