#!/bin/sh
# Development PKI for cdn-node: a CA and the certificates the two tiers need on loopback.
#
#   scripts/pki.sh [--test] DIR
#
# Writes into DIR (EC P-256 keys, SHA-256, 825 days; keys mode 600):
#   ca.crt/.key               the CA (CA:TRUE); regional and edge trust it
#   regional.crt/.key         serverAuth; SAN DNS:localhost, DNS:regional.cdn.test, IP:127.0.0.1
#   edge.crt/.key             serverAuth; SAN DNS:localhost, IP:127.0.0.1
#   edge-client.crt/.key      clientAuth, CN=edge-1: what the edge presents to the regional
# With --test, also the certificates the e2e tests use to check that bad peers are refused:
#   other-ca.crt/.key         a second, unrelated CA
#   other-client.crt/.key     clientAuth, signed by other-ca
#   regional-wrongname.crt/.key  signed by ca, SAN DNS:wrong.example only
#   regional-otherca.crt/.key    signed by other-ca, SANs as regional
# Idempotent: the base set is made only if DIR/ca.crt is missing, the test set only if
# DIR/other-ca.crt is missing. Files are generated in a scratch folder and moved into place with
# the marker file last, so an interrupted run leaves no half-made set behind.
set -eu

usage() {
    echo "usage: $0 [--test] DIR" >&2
    exit 2
}

test_set=0
dir=""
for a in "$@"; do
    case "$a" in
    --test) test_set=1 ;;
    -*) usage ;;
    *) [ -z "$dir" ] || usage; dir=$a ;;
    esac
done
[ -n "$dir" ] || usage
command -v openssl >/dev/null 2>&1 || { echo "pki.sh: openssl not found" >&2; exit 1; }

DAYS=825
mkdir -p "$dir"
work=$(mktemp -d "$dir/.pki.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# key NAME: a P-256 private key, readable by the owner only
key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key" 2>/dev/null)
}

# ca NAME CN
ca() {
    key "$1"
    openssl req -x509 -new -key "$work/$1.key" -sha256 -days "$DAYS" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$work/$1.crt" 2>/dev/null
}

# leaf NAME CN EKU SAN ISSUER_CRT ISSUER_KEY   (SAN may be empty)
leaf() {
    key "$1"
    {
        echo "[v3]"
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$3"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid,issuer"
        [ -z "$4" ] || echo "subjectAltName=$4"
    } >"$work/$1.ext"
    openssl req -new -key "$work/$1.key" -subj "/CN=$2" -out "$work/$1.csr" 2>/dev/null
    openssl x509 -req -in "$work/$1.csr" -CA "$5" -CAkey "$6" -set_serial "0x$(openssl rand -hex 12)" \
        -sha256 -days "$DAYS" -extfile "$work/$1.ext" -extensions v3 -out "$work/$1.crt" 2>/dev/null
    rm -f "$work/$1.csr" "$work/$1.ext"
}

# install NAME...: moves NAME.crt/.key from the scratch folder into DIR
install_set() {
    for n in "$@"; do
        chmod 600 "$work/$n.key"
        chmod 644 "$work/$n.crt"
        mv -f "$work/$n.key" "$dir/$n.key"
        mv -f "$work/$n.crt" "$dir/$n.crt"
    done
}

REGIONAL_SAN="DNS:localhost,DNS:regional.cdn.test,IP:127.0.0.1"

if [ ! -f "$dir/ca.crt" ]; then
    ca ca "cdn-node dev CA"
    leaf regional regional.cdn.test serverAuth "$REGIONAL_SAN" "$work/ca.crt" "$work/ca.key"
    leaf edge localhost serverAuth "DNS:localhost,IP:127.0.0.1" "$work/ca.crt" "$work/ca.key"
    leaf edge-client edge-1 clientAuth "" "$work/ca.crt" "$work/ca.key"
    install_set regional edge edge-client ca # ca last: it marks the set as complete
    echo "pki.sh: wrote the development PKI to $dir" >&2
fi

if [ "$test_set" = 1 ] && [ ! -f "$dir/other-ca.crt" ]; then
    ca other-ca "cdn-node other CA"
    leaf other-client other-1 clientAuth "" "$work/other-ca.crt" "$work/other-ca.key"
    leaf regional-wrongname wrong.example serverAuth "DNS:wrong.example" "$dir/ca.crt" "$dir/ca.key"
    leaf regional-otherca regional.cdn.test serverAuth "$REGIONAL_SAN" "$work/other-ca.crt" "$work/other-ca.key"
    install_set other-client regional-wrongname regional-otherca other-ca
    echo "pki.sh: wrote the test certificates to $dir" >&2
fi
