#!/usr/bin/env bash
# The client-certificate matrix of the certificate-policy issue, table-driven: certificates made at test
# time (test/e2e/pki_matrix.sh), each tried with curl against the listener's require and request levels
# and the per-SNI STRICT, MODERATE, NONE, wildcard and empty-SNI rules of one regional. Every cell asserts
# the verdict (200, or a refused handshake: curl exit 35/56 and no HTTP status) and, for a refusal, that
# exactly the expected tls_handshake_failures{reason} counter moved (admin /metrics). Then the rows about
# pins (allowed_sans, allowed_fingerprints), log_only, an expired CRL, the leaf via an intermediate sent
# with and without it, and the TLS-failure log file (log.tls_failures, reopened on SIGUSR1).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

M=$T/m
sh "$E2E_SRC/test/e2e/pki_matrix.sh" "$M" || fail "pki_matrix.sh failed: $(tail -n 5 "$M/openssl.log")"
printf '%s\n' 'openssl_conf = c' '[c]' 'ssl_conf = s' '[s]' 'system_default = d' '[d]' \
    'CipherString = DEFAULT@SECLEVEL=0' >"$T/client-seclevel0.cnf"
start_origin
fp_of() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//'; }
ECDSA_FP=$(fp_of "$M/ecdsa.crt")
cat >"$T/regional.yaml" <<YAML
role: regional
workers: 1
admin: {port: 0}
log:
  tls_failures: tls.log
  access: access.log
listeners:
  - name: require
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: m/server.crt
    key: m/server.key
    client_auth: require
    ca_file: m/ca.crt
    crl_file: m/crls.pem
  - name: request
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: m/server.crt
    key: m/server.key
    client_auth: request
    ca_file: m/ca.crt
    crl_file: m/crls.pem
sni:
  - fqdn: strict.example
    verify_client: STRICT
  - fqdn: moderate.example
    verify_client: MODERATE
  - fqdn: none.example
    verify_client: NONE
  - fqdn: '*.wild.example'
    verify_client: STRICT
  - fqdn: ''
    verify_client: STRICT
  - fqdn: pins.example
    verify_client: STRICT
    allowed_sans: [EDGE-1.edges.example, 'spiffe://cdn/edge/3']
  - fqdn: pins-wild.example
    verify_client: STRICT
    allowed_sans: ['*.edges.example']
  - fqdn: fp.example
    verify_client: STRICT
    allowed_fingerprints: ['$ECDSA_FP']
  - fqdn: logonly.example
    verify_client: STRICT
    allowed_sans: [edge-1.edges.example]
    log_only: true
  - fqdn: stale-crl.example
    verify_client: STRICT
    crl_file: m/expired.crl
identity:
  headers: true
remap:
YAML
# each request's Host is its SNI (else host_sni_policy would answer 421)
for h in plain.test strict.example moderate.example none.example a.b.wild.example 127.0.0.1 pins.example pins-wild.example \
    fp.example logonly.example stale-crl.example; do
    echo "  - \"map https://$h/ http://127.0.0.1:$ORIGIN_PORT/\"" >>"$T/regional.yaml"
done
start_node regional regional "$T/regional.yaml"
P_REQUIRE=$(port_of regional require)
P_REQUEST=$(port_of regional request)
ADMIN=$(port_of regional admin)

# metrics: the admin's /metrics into $T/metrics.txt; metric REASON: a tls_handshake_failures_total value
metrics() {
    curl -sS "http://127.0.0.1:$ADMIN/metrics" >"$T/metrics.txt" || fail "GET /metrics: curl exit $?"
}
metric() {
    awk -v r="reason=\"$1\"}" 'index($1, "cdn_tls_handshake_failures_total{") == 1 && index($1, r) { print $2; f = 1 }
        END { if (!f) print "missing" }' "$T/metrics.txt"
}
REASONS="no_certificate unknown_ca expired not_yet_valid revoked bad_eku pin_mismatch weak_crypto ca_as_leaf crl protocol other"
declare -A SNAP=()
snapshot() {
    local r
    metrics
    for r in $REASONS; do SNAP[$r]=$(metric "$r"); done
}

# try PORT SNI CERT: one request (CERT: a row name, or - for no certificate; SNI '' = none); prints the
# HTTP status, "refused" for a failed handshake, or "client" when curl could not use the certificate
try() {
    local port=$1 sni=$2 cert=$3 rc=0 code args=() res=() url
    if [ "$cert" != - ]; then
        local crt=$M/$cert.crt
        [ -f "$M/$cert.chain.crt" ] && [ "${CHAIN:-1}" = 1 ] && crt=$M/$cert.chain.crt
        args=(--cert "$crt" --key "$M/$cert.key")
    fi
    if [ -n "$sni" ]; then
        url="https://$sni:$port/hello"
        res=(--resolve "$sni:$port:127.0.0.1" -H "Host: $sni")
    else
        url="https://127.0.0.1:$port/hello"
        res=(-H "Host: 127.0.0.1")
    fi
    # curl at security level 0 (its own OpenSSL config), so that it sends SHA-1 and RSA-1024 certificates
    code=$(OPENSSL_CONF=$T/client-seclevel0.cnf curl -sS -k "${res[@]}" "${args[@]}" -o "$T/body" -w '%{http_code}' \
        "$url" 2>"$T/curl.err") || rc=$?
    case $rc in
    0) echo "$code" ;;
    35 | 56) echo refused ;;
    58) echo client ;;
    *) echo "curl-exit-$rc" ;;
    esac
}

# cell COLUMN PORT SNI CERT WANT [REASON]: asserts the verdict; a refusal must move REASON by exactly 1
# and no other reason, anything else must move none
VERDICTS=""
cell() {
    local what=$1 port=$2 sni=$3 cert=$4 want=$5 reason=${6:-} got r i v
    snapshot
    got=$(try "$port" "$sni" "$cert")
    [ "$got" = "$want" ] || fail "$what: cert $cert, SNI '$sni': got $got, want $want ($(cat "$T/curl.err"))"
    for ((i = 0; i < 20; i++)); do # the counter may trail the alert by an instant
        metrics
        [ -z "$reason" ] || [ "$(metric "$reason")" = $((SNAP[$reason] + 1)) ] && break
        sleep 0.1
    done
    for r in $REASONS; do
        v=$(metric "$r")
        if [ "$r" = "$reason" ]; then
            [ "$v" = $((SNAP[$r] + 1)) ] || fail "$what: cert $cert: reason $r went ${SNAP[$r]} -> $v, want +1"
        else
            [ "$v" = "${SNAP[$r]}" ] ||
                fail "$what: cert $cert: reason $r went ${SNAP[$r]} -> $v, want unchanged (expected '$reason')"
        fi
    done
    VERDICTS+="$(printf '%-11s %-10s %-8s %s' "$cert" "$what" "$got" "$reason")"$'\n'
}

# The columns: the listener's require (no rule matches SNI plain.test), the listener's request, the
# STRICT, MODERATE, NONE, wildcard (STRICT; two labels deep) and empty-SNI (STRICT) rules.
COLS="require:$P_REQUIRE:plain.test:S request:$P_REQUEST:plain.test:M strict:$P_REQUIRE:strict.example:S
moderate:$P_REQUIRE:moderate.example:M none:$P_REQUIRE:none.example:N wildcard:$P_REQUIRE:a.b.wild.example:S
empty-sni:$P_REQUEST::S"

# The rows: certificate and the reason it is refused with ("" = accepted); "-" is no certificate at all.
# SHA-1 and RSA-1024 are refused: they are below OpenSSL 3's security level 2 (weak_crypto).
ROWS="good: ecdsa: rsa2048: via-inter: other:unknown_ca selfsigned:unknown_ca expired:expired
notyet:not_yet_valid revoked:revoked sha1:weak_crypto rsa1024:weak_crypto ca-leaf:ca_as_leaf
serverauth:bad_eku -:no_certificate"

for row in $ROWS; do
    cert=${row%%:*}
    reason=${row#*:}
    for col in $COLS; do
        IFS=: read -r name port sni level <<<"$col"
        if [ -z "$reason" ] || [ "$level" = N ] || { [ "$level" = M ] && [ "$cert" = - ]; }; then
            cell "$name" "$port" "$sni" "$cert" 200
        else
            cell "$name" "$port" "$sni" "$cert" refused "$reason"
        fi
    done
done

# the same refusals seen by openssl s_client: an alert, never an HTTP answer
for row in $ROWS; do
    cert=${row%%:*}
    reason=${row#*:}
    [ -n "$reason" ] || continue
    args=()
    [ "$cert" = - ] || args=(-cert "$M/$cert.crt" -key "$M/$cert.key")
    out=$(printf 'GET /hello HTTP/1.1\r\nHost: strict.example\r\nConnection: close\r\n\r\n' |
        OPENSSL_CONF=$T/client-seclevel0.cnf timeout 10 openssl s_client -connect "127.0.0.1:$P_REQUIRE" \
            -servername strict.example "${args[@]}" -ign_eof 2>&1 || true)
    assert_contains "$out" "alert" "s_client, cert $cert, SNI strict.example"
    assert_not_contains "$out" "HTTP/1.1 " "s_client, cert $cert, SNI strict.example"
done

# mismatched key: curl itself refuses to use it after connecting, so the node sees a connection closed
# before its ClientHello (reason other)
for col in $COLS; do
    IFS=: read -r name port sni level <<<"$col"
    cell "$name" "$port" "$sni" mismatch client other
done

# the leaf via the intermediate, without the intermediate: the node trusts only the root
for col in $COLS; do
    IFS=: read -r name port sni level <<<"$col"
    if [ "$level" = N ]; then
        CHAIN=0 cell "$name" "$port" "$sni" via-inter 200
    else
        CHAIN=0 cell "$name" "$port" "$sni" via-inter refused unknown_ca
    fi
done

# an expired CRL (crl_expired: reject, the default) refuses even a good certificate
cell stale-crl "$P_REQUIRE" stale-crl.example good refused crl

# pins: SANs (exact DNS, case-insensitive; a URI; a one-label DNS wildcard), a fingerprint; the CA
# checks come first
cell pins-san "$P_REQUIRE" pins.example good 200
cell pins-san "$P_REQUIRE" pins.example rsa2048 200
cell pins-san "$P_REQUIRE" pins.example ecdsa refused pin_mismatch
cell pins-san "$P_REQUIRE" pins.example via-inter refused pin_mismatch
cell pins-san "$P_REQUIRE" pins.example expired refused expired
cell pins-san "$P_REQUIRE" pins.example other refused unknown_ca
cell pins-wild "$P_REQUIRE" pins-wild.example ecdsa 200
cell pins-wild "$P_REQUIRE" pins-wild.example via-inter 200
cell pins-wild "$P_REQUIRE" pins-wild.example rsa2048 refused pin_mismatch
cell pins-fp "$P_REQUIRE" fp.example ecdsa 200
cell pins-fp "$P_REQUIRE" fp.example good refused pin_mismatch
cell pins-fp "$P_REQUIRE" fp.example rsa2048 refused pin_mismatch
grep -q 'reason=pin_mismatch alert="handshake failure" detail="pin mismatch: fingerprint not in allowed_fingerprints" subject="CN=edge-3"' \
    "$T/tls.log" || fail "no pin mismatch line in the TLS-failure log: $(tail -n 3 "$T/tls.log")"
out=$(printf 'GET /hello HTTP/1.1\r\nHost: fp.example\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$P_REQUIRE" -servername fp.example -cert "$M/good.crt" \
        -key "$M/good.key" -ign_eof 2>&1 || true)
assert_contains "$out" "alert" "s_client with a pinned-out certificate (an alert, not an HTTP answer)"
assert_not_contains "$out" "HTTP/1.1 " "s_client with a pinned-out certificate"

# log_only: refusals are let through, counted as log_only, marked to the origin
lo() {
    curl -sS "http://127.0.0.1:$ADMIN/metrics" |
        awk 'index($1, "cdn_client_certificates_total{") == 1 && index($1, "result=\"log_only\"}") { print $2 }'
}
n0=$(lo)
for c in other:unknown_ca ecdsa:pin_mismatch -:no_certificate expired:expired; do
    cert=${c%%:*}
    args=()
    [ "$cert" = - ] || args=(--cert "$M/$cert.crt" --key "$M/$cert.key")
    seen=$(curl -sS -k --resolve "logonly.example:$P_REQUIRE:127.0.0.1" -H "Client-Cert-Status: SUCCESS" -H "Host: logonly.example" \
        "${args[@]}" "https://logonly.example:$P_REQUIRE/headers" | tr -d '\r') ||
        fail "log_only with $cert: curl exit $?"
    assert_contains "$seen" "Client-Cert-Status: FAILED:${c#*:}" "origin headers (log_only, $cert)"
    assert_not_contains "$seen" "Client-Cert-Status: SUCCESS" "origin headers (log_only, $cert): the client's copy"
    assert_not_contains "$seen" "Client-Cert-Subject" "origin headers (log_only, $cert)"
done
seen=$(curl -sS -k --resolve "logonly.example:$P_REQUIRE:127.0.0.1" -H "Host: logonly.example" \
    --cert "$M/good.crt" --key "$M/good.key" "https://logonly.example:$P_REQUIRE/headers" | tr -d '\r')
assert_contains "$seen" "Client-Cert-Status: SUCCESS" "origin headers (log_only, a good certificate)"
assert_contains "$seen" "Client-Cert-Subject: CN=edge-1" "origin headers (log_only, a good certificate)"
assert_contains "$seen" "Client-Cert-SANs: DNS:edge-1.edges.example" "origin headers (log_only, good)"
assert_contains "$seen" "Client-Cert-SHA256: $(fp_of "$M/good.crt")" "origin headers (log_only, good)"
assert_eq "$(lo)" $((n0 + 4)) "client_certificates{result=log_only}"
# a resumed session keeps its mark (it is not verified again)
req='GET /headers HTTP/1.1\r\nHost: logonly.example\r\nConnection: close\r\n\r\n'
for v in -tls1_3 -tls1_2; do
    printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$P_REQUIRE" -servername logonly.example \
        -cert "$M/other.crt" -key "$M/other.key" -sess_out "$T/lo$v.pem" $v -ign_eof >/dev/null 2>&1 || true
    out=$(printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$P_REQUIRE" -servername logonly.example \
        -cert "$M/other.crt" -key "$M/other.key" -sess_in "$T/lo$v.pem" $v -ign_eof 2>&1 | tr -d '\r' || true)
    assert_contains "$out" "Reused," "log_only session resumed ($v)"
    assert_contains "$out" "Client-Cert-Status: FAILED:unknown_ca" "origin headers, resumed log_only session ($v)"
done
grep -q "rule='logonly.example' client_auth=require: TLS handshake let through (log_only): reason=unknown_ca" \
    "$T/tls.log" || fail "no log_only line in the TLS-failure log: $(tail -n 3 "$T/tls.log")"
# the first refusal is the one reported (expired, though it is not pinned either)
grep -q 'let through (log_only): reason=expired alert="-" detail="certificate verify failed: certificate has expired" subject="CN=edge-7"' \
    "$T/tls.log" || fail "no log_only line for the expired certificate: $(grep edge-7 "$T/tls.log" | tail -n 2)"
for ((i = 0; i < 50; i++)); do # the access log has a writer thread
    grep -q '"GET /headers HTTP/1.1" 200 .* host=logonly.example sni=logonly.example .* cert=FAILED:pin_mismatch$' \
        "$T/access.log" && break
    sleep 0.1
done
grep -q '"GET /headers HTTP/1.1" 200 .* host=logonly.example .* cert=FAILED:pin_mismatch$' "$T/access.log" ||
    fail "no cert=FAILED:pin_mismatch in the access log: $(grep logonly "$T/access.log" | head -n 3)"
grep -q '"GET /headers HTTP/1.1" 200 .* host=logonly.example .* cert=SUCCESS$' "$T/access.log" ||
    fail "no cert=SUCCESS in the access log: $(grep logonly "$T/access.log" | head -n 3)"

# the TLS-failure log: a structured line per refusal, subject and fingerprint; no key material, and
# nothing of it in the error log
grep -q "sni=strict.example rule='strict.example' client_auth=require: TLS handshake failed: reason=revoked alert=\"certificate revoked\" detail=\"certificate verify failed: certificate revoked\" subject=\"CN=edge-9\" sha256=$(fp_of "$M/revoked.crt")" \
    "$T/tls.log" || fail "no revoked line in the TLS-failure log: $(grep revoked "$T/tls.log" | head -n 2)"
grep -q 'reason=no_certificate alert="certificate required" detail=.* subject="-" sha256=-' "$T/tls.log" ||
    fail "no no_certificate line"
if grep -q "PRIVATE KEY\|BEGIN" "$T/tls.log"; then fail "key or PEM material in the TLS-failure log"; fi
if log_has regional "TLS handshake failed" || log_has regional "handshake refused"; then
    fail "refusals in the error log too (log.tls_failures is set)"
fi
# SIGUSR1 reopens it
mv "$T/tls.log" "$T/tls.log.1"
kill -USR1 "$(pid_of regional)"
for ((i = 0; i < 50; i++)); do
    [ -e "$T/tls.log" ] && break
    sleep 0.1
done
try "$P_REQUIRE" strict.example other >/dev/null
for ((i = 0; i < 20; i++)); do
    grep -q "reason=unknown_ca" "$T/tls.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "reason=unknown_ca" "$T/tls.log" || fail "no line in the reopened TLS-failure log"

printf '%s' "$VERDICTS" >"$T/verdicts.txt"
stop_all
