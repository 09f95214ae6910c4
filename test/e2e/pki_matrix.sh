#!/bin/sh
# pki_matrix.sh DIR: the client certificates of the certificate matrix (test/e2e/29_cert_matrix.sh),
# made with openssl at test time. Everything is signed with "openssl ca" so that validity dates can be
# set in the past or the future and CRLs can be issued. Keys are EC P-256 (fast) unless the row is about
# the key; the CAs are RSA-2048.
#
#   ca.crt            root CA (the listener's ca_file);   inter.crt  intermediate signed by ca
#   other-ca.crt      an unrelated root
#   server.crt/.key   the regional's server certificate (signed by ca; SAN DNS:regional.cdn.test)
#   NAME.crt/.key     one client per row; NAME.chain.crt = the leaf followed by its intermediate
#     good            clientAuth, SAN DNS:edge-1.edges.example          (signed by ca)
#     ecdsa           ECDSA P-256 leaf, SAN DNS:edge-2.edges.example      (signed by ca)
#     rsa2048         RSA-2048 leaf, SAN URI:spiffe://cdn/edge/3         (signed by ca)
#     via-inter       signed by inter (send via-inter.chain.crt to include the intermediate)
#     other           signed by other-ca;  selfsigned: its own issuer
#     expired         notAfter in the past;  notyet: notBefore in the future
#     revoked         revoked in ca.crl;  sha1: SHA-1 signature;  rsa1024: RSA-1024 key
#     ca-leaf         basicConstraints CA:TRUE;  serverauth: EKU serverAuth only
#     mismatch        good's certificate with another key (mismatch.key)
#   ca.crl            CRL of ca revoking revoked.crt, plus inter.crl (empty): crls.pem = both
#   expired.crl       CRL of ca whose nextUpdate is in the past
set -eu
d=$1
mkdir -p "$d"
cd "$d"
exec 2>openssl.log

cnf() { # cnf NAME: an "openssl ca" config for CA NAME in ./NAME.db/
    mkdir -p "$1.db"
    : >"$1.db/index.txt"
    echo 1000 >"$1.db/crlnumber"
    cat >"$1.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $1.db/index.txt
new_certs_dir = $1.db
serial = $1.db/serial
crlnumber = $1.db/crlnumber
certificate = $1.crt
private_key = $1.key
default_md = sha256
default_days = 30
default_crl_days = 30
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
[server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:regional.cdn.test, DNS:localhost, IP:127.0.0.1
[serveronly]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
[caleaf]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = clientAuth
CNF
    openssl rand -hex 8 >"$1.db/serial"
}

eckey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
rsakey() { openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1"; }

root() { # root NAME CN
    rsakey "$1.key" 2048
    cnf "$1"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    openssl ca -batch -config "$1.cnf" -selfsign -extensions v3_ca -days 3650 -in "$1.csr" -out "$1.crt" -notext
}

# sign CA NAME CN EXT [SAN] [openssl ca options...]: NAME.key must exist
sign() {
    local ca=$1 name=$2 cn=$3 ext=$4 san=${5:-}
    shift 4
    [ $# -gt 0 ] && shift
    local extfile=$name.ext
    sed -n "/^\[$ext\]/,/^\[/p" "$ca.cnf" | sed '1d;/^\[/d' >"$extfile"
    [ -z "$san" ] || echo "subjectAltName = $san" >>"$extfile"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
    openssl ca -batch -config "$ca.cnf" -extfile "$extfile" -in "$name.csr" -out "$name.crt" -notext "$@"
}

root ca "Matrix Root"
root other-ca "Other Root"
rsakey inter.key 2048
openssl req -new -key inter.key -subj "/CN=Matrix Intermediate" -out inter.csr
openssl ca -batch -config ca.cnf -extensions v3_ca -days 3650 -in inter.csr -out inter.crt -notext
cnf inter

eckey server.key
sign ca server regional.cdn.test server
eckey good.key
sign ca good edge-1 client "DNS:edge-1.edges.example"
eckey ecdsa.key
sign ca ecdsa edge-2 client "DNS:edge-2.edges.example"
rsakey rsa2048.key 2048
sign ca rsa2048 edge-3 client "URI:spiffe://cdn/edge/3"
eckey via-inter.key
sign inter via-inter edge-4 client "DNS:edge-4.edges.example"
cat via-inter.crt inter.crt >via-inter.chain.crt
eckey other.key
sign other-ca other edge-5 client "DNS:edge-5.edges.example"
eckey selfsigned.key
openssl req -new -x509 -key selfsigned.key -subj "/CN=edge-6" -days 30 -addext "extendedKeyUsage=clientAuth" \
    -out selfsigned.crt
eckey expired.key
sign ca expired edge-7 client "" -startdate 20200101000000Z -enddate 20200201000000Z
eckey notyet.key
sign ca notyet edge-8 client "" -startdate 20350101000000Z -enddate 20360101000000Z
eckey revoked.key
sign ca revoked edge-9 client ""
eckey sha1.key
sign ca sha1 edge-10 client "" -md sha1
rsakey rsa1024.key 1024
sign ca rsa1024 edge-11 client ""
eckey ca-leaf.key
sign ca ca-leaf edge-12 caleaf ""
eckey serverauth.key
sign ca serverauth edge-13 serveronly ""
eckey mismatch.key
cp good.crt mismatch.crt

openssl ca -batch -config ca.cnf -revoke revoked.crt
openssl ca -batch -config ca.cnf -gencrl -out ca.crl
openssl ca -batch -config inter.cnf -gencrl -out inter.crl
cat ca.crl inter.crl >crls.pem
# a CRL that is already past its nextUpdate (one second of validity, and we wait it out)
openssl ca -batch -config ca.cnf -gencrl -crlsec 1 -out expired.crl
sleep 1.1
