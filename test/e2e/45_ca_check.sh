#!/usr/bin/env bash
# cdn-node ca-check: good, warning-only and bad CA bundles, leaf mode, several files, unreadable files
# and usage errors give the documented exit status (0 no error, 1 error, 2 usage/unreadable) and
# name each certificate with its verdict. The certificates are made here with `openssl ca`, the only
# openssl command that sets arbitrary validity dates in OpenSSL 3.0.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

G=$T/gen
mkdir -p "$G/new"
: >"$G/index.txt"
echo 01 >"$G/serial"
cat >"$G/ca.cnf" <<'CNF'
[ca]
default_ca = tca
[tca]
database = ./index.txt
new_certs_dir = ./new
serial = ./serial
policy = pol
default_md = sha256
unique_subject = no
email_in_dn = no
[pol]
commonName = supplied
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_noca]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
CNF

# when DAYS: YYYYMMDDHHMMSSZ, DAYS from now
when() {
    date -u -d "$1 days" +%Y%m%d%H%M%SZ
}

# mkcert NAME KEY(ec|rsa1024|rsa2048) ISSUER(-: self-signed) EXT MD FROM_DAYS TO_DAYS
mkcert() {
    local name=$1 key=$2 issuer=$3 ext=$4 md=$5 from=$6 to=$7 keyopt sign
    case "$key" in
    ec) keyopt="-algorithm EC -pkeyopt ec_paramgen_curve:P-256" ;;
    rsa*) keyopt="-algorithm RSA -pkeyopt rsa_keygen_bits:${key#rsa}" ;;
    esac
    if [ "$issuer" = - ]; then sign="-selfsign -keyfile $name.key"; else sign="-cert $issuer.crt -keyfile $issuer.key"; fi
    (
        cd "$G"
        # shellcheck disable=SC2086
        openssl genpkey $keyopt -out "$name.key" &&
            openssl req -new -key "$name.key" -subj "/CN=e2e $name" -out "$name.csr" &&
            openssl ca -batch -config ca.cnf -notext -md "$md" -startdate "$(when "$from")" \
                -enddate "$(when "$to")" -extensions "$ext" $sign -in "$name.csr" -out "$name.crt"
    ) >>"$G/gen.log" 2>&1 || fail "making $name (see $G/gen.log)"
}

mkcert root ec - v3_ca sha256 -1 3650
mkcert inter ec root v3_ca sha256 -1 1825
mkcert soon ec - v3_ca sha256 -1 10
mkcert expired ec - v3_ca sha256 -400 -12
mkcert nonca ec root v3_noca sha256 -1 365
mkcert weak rsa1024 - v3_ca sha256 -1 3650
mkcert sha1inter ec root v3_ca sha1 -1 365
mkcert client ec root v3_client sha256 -1 365
mkcert server ec root v3_server sha256 -1 365
cat "$G/root.crt" "$G/inter.crt" >"$T/good.pem"
cat "$G/root.crt" "$G/soon.crt" >"$T/soon.pem"
cat "$G/root.crt" "$G/expired.crt" "$G/nonca.crt" "$G/weak.crt" "$G/sha1inter.crt" "$G/root.crt" >"$T/bad.pem"
{
    cat "$G/root.crt"
    printf 'pasted by hand\n'
    cat "$G/inter.crt"
} >"$T/garbage.pem"
root_lines=$(wc -l <"$G/root.crt")

# ca_check ARGS...: runs the binary; sets RC, OUT, ERR. A sanitizer report fails the test.
ca_check() {
    RC=0
    "$CDN_NODE" ca-check "$@" >"$T/out" 2>"$T/err" || RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
    assert_not_contains "$ERR" "ERROR: AddressSanitizer" "ca-check $* stderr"
    assert_not_contains "$ERR" "runtime error:" "ca-check $* stderr"
}

# a good bundle: one OK line per certificate, exit 0
ca_check "$T/good.pem"
assert_eq "$RC" 0 "good bundle exit status ($OUT $ERR)"
assert_contains "$OUT" "$T/good.pem: cert 1: OK (root CN=e2e root, SHA-256 " "good bundle"
assert_contains "$OUT" "$T/good.pem: cert 2: OK (intermediate CN=e2e inter, SHA-256 " "good bundle"
fp=$(openssl x509 -in "$G/root.crt" -noout -fingerprint -sha256 | sed 's/^.*=//')
assert_contains "$OUT" "SHA-256 $fp, notAfter " "good bundle fingerprint"
assert_contains "$OUT" "2 certificates: 2 OK, 0 WARN, 0 ERROR; 0 errors, 0 warnings" "good bundle summary"
assert_eq "$(grep -c ': cert ' "$T/out")" 2 "good bundle verdict lines"

# expiring in 10 days: a warning, still exit 0; --warn-days moves the threshold
ca_check "$T/soon.pem"
assert_eq "$RC" 0 "expiring bundle exit status ($OUT)"
assert_contains "$OUT" "cert 2: WARN (root CN=e2e soon" "expiring bundle"
assert_contains "$OUT" "warning: expires " "expiring bundle"
assert_contains "$OUT" "(in 10 days; warning at 30 days)" "expiring bundle"
ca_check --warn-days 5 "$T/soon.pem"
assert_eq "$RC" 0 "--warn-days 5 exit status"
assert_contains "$OUT" "cert 2: OK (root CN=e2e soon" "--warn-days 5"

# a bad bundle: every problem named on its certificate's line, exit 1
ca_check "$T/bad.pem"
assert_eq "$RC" 1 "bad bundle exit status ($OUT $ERR)"
line() { grep "^$T/bad.pem: cert $1: " "$T/out" || fail "no verdict line for cert $1 in: $OUT"; }
assert_contains "$(line 1)" "OK (root CN=e2e root"
assert_contains "$(line 2)" "ERROR (root CN=e2e expired"
assert_contains "$(line 2)" "error: expired "
assert_contains "$(line 2)" "(12 days ago)"
assert_contains "$(line 3)" "ERROR (non-CA CN=e2e nonca"
assert_contains "$(line 3)" "error: basicConstraints CA:FALSE: not a CA certificate"
assert_contains "$(line 4)" "error: RSA key of 1024 bits"
assert_contains "$(line 5)" "error: signed with ecdsa-with-SHA1 (SHA-1)"
assert_contains "$(line 6)" "WARN (root CN=e2e root"
assert_contains "$(line 6)" "warning: duplicate of cert 1 (line 1)"
assert_contains "$OUT" "6 certificates: 1 OK, 1 WARN, 4 ERROR; 4 errors, 1 warning" "bad bundle summary"

# text between blocks: a warning with its line, the certificates still judged
ca_check "$T/garbage.pem"
assert_eq "$RC" 0 "garbage bundle exit status ($OUT)"
assert_contains "$OUT" "$T/garbage.pem: line $((root_lines + 1)): warning: text outside PEM blocks, ignored: \"pasted by hand\"" "garbage bundle"
assert_contains "$OUT" "cert 2: OK (intermediate CN=e2e inter" "garbage bundle"

# several files: the worst wins; an unreadable file is exit 2, but the others are still judged
ca_check "$T/good.pem" "$T/bad.pem"
assert_eq "$RC" 1 "good + bad exit status"
assert_contains "$OUT" "summary: 2 files checked as CA bundles, 8 certificates" "good + bad summary"
ca_check "$T/good.pem" "$T/missing.pem"
assert_eq "$RC" 2 "good + missing exit status"
assert_contains "$ERR" "cannot read $T/missing.pem" "missing file stderr"
assert_contains "$OUT" "$T/good.pem: cert 2: OK" "good + missing"
assert_contains "$OUT" "1 unreadable" "good + missing summary"
printf 'not a certificate\n' >"$T/text.pem"
ca_check "$T/text.pem"
assert_eq "$RC" 1 "a file without certificates: exit status"
assert_contains "$OUT" "$T/text.pem: error: no PEM certificate in it" "a file without certificates"

# leaf mode: EKU and CA:TRUE are judged for the side the certificate is used on
ca_check --leaf client "$G/client.crt"
assert_eq "$RC" 0 "--leaf client on a clientAuth leaf ($OUT)"
assert_contains "$OUT" "cert 1: OK (leaf CN=e2e client" "--leaf client"
ca_check --leaf client "$G/server.crt"
assert_eq "$RC" 1 "--leaf client on a serverAuth leaf"
assert_contains "$OUT" "error: extendedKeyUsage lacks clientAuth" "--leaf client on a serverAuth leaf"
ca_check --leaf server "$G/server.crt"
assert_eq "$RC" 0 "--leaf server on a serverAuth leaf ($OUT)"
ca_check --leaf client "$G/root.crt"
assert_eq "$RC" 1 "--leaf client on a CA"
assert_contains "$OUT" "error: basicConstraints CA:TRUE" "--leaf client on a CA"

# the development PKI the shipped configs use passes as it is
pki
ca_check "$PKI/ca.crt" "$PKI/other-ca.crt"
assert_eq "$RC" 0 "ca-check on the dev CAs ($OUT)"
ca_check --leaf client "$PKI/edge-client.crt"
assert_eq "$RC" 0 "ca-check --leaf client on edge-client.crt ($OUT)"
ca_check --leaf server "$PKI/regional.crt" "$PKI/edge.crt"
assert_eq "$RC" 0 "ca-check --leaf server on the dev server certificates ($OUT)"

# usage errors: exit 2
ca_check
assert_eq "$RC" 2 "no FILE exit status"
assert_contains "$ERR" "usage: cdn-node ca-check" "no FILE stderr"
ca_check --warn-days soon "$T/good.pem"
assert_eq "$RC" 2 "--warn-days soon exit status"
assert_contains "$ERR" "--warn-days soon" "--warn-days soon stderr"
ca_check --leaf both "$T/good.pem"
assert_eq "$RC" 2 "--leaf both exit status"
ca_check --no-such-option "$T/good.pem"
assert_eq "$RC" 2 "unknown option exit status"
ca_check --help
assert_eq "$RC" 0 "--help exit status"
assert_contains "$OUT" "usage: cdn-node ca-check" "--help"
h=$("$CDN_NODE" --help 2>&1)
assert_contains "$h" "ca-check" "cdn-node --help"
