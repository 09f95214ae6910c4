#!/usr/bin/env bash
# RFC 9440: the regional tells the origin which edge asked (Client-Cert with the edge's certificate,
# DER in an sf-binary), and identity headers sent by a customer never get through either tier.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

two_tiers

# a customer spoofing the header: the origin sees the edge's certificate, not "Zm9v"
seen=$(ecurl -H 'Client-Cert: :Zm9v:' -H 'Client-Cert-Chain: :Zm9v:' "$EDGE/headers") || fail "GET /headers: curl exit $?"
seen=$(printf '%s\n' "$seen" | tr -d '\r')
assert_not_contains "$seen" "Zm9v" "identity headers at the origin"
assert_not_contains "$(printf '%s' "$seen" | tr '[:upper:]' '[:lower:]')" "client-cert-chain:" "headers at the origin"
cert=$(printf '%s\n' "$seen" | sed -n 's/^[Cc]lient-[Cc]ert: :\(.*\):$/\1/p')
[ -n "$cert" ] || fail "no Client-Cert header at the origin: $seen"
# it is exactly the edge's client certificate
want=$(openssl x509 -in "$PKI/edge-client.crt" -outform DER | base64 -w0)
assert_eq "$cert" "$want" "Client-Cert value"

stop_all
