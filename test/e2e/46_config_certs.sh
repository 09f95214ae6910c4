#!/usr/bin/env bash
# The certificates a config names are judged when it is loaded (the ca-check rules): a leaf where a CA
# bundle belongs, or a client certificate used as a server certificate, is refused with file:line:col
# and the reason; `run` refuses to start the same way; the dev PKI passes.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
ORIGIN_PORT=1
regional_config "$T/good.yaml"
"$CDN_NODE" check-config --config "$T/good.yaml" >/dev/null 2>&1 || fail "the dev PKI config is refused"

sed 's|ca_file: pki/ca.crt|ca_file: pki/edge-client.crt|' "$T/good.yaml" >"$T/leaf-as-ca.yaml"
rc=0
out=$("$CDN_NODE" check-config --config "$T/leaf-as-ca.yaml" 2>&1) || rc=$?
assert_eq "$rc" 1 "check-config with a leaf as ca_file"
assert_contains "$out" "leaf-as-ca.yaml:4:5: listener ca_file:" "position of the bad ca_file"
assert_contains "$out" "not a CA certificate" "reason for the bad ca_file"

sed 's|certificate: pki/regional.crt|certificate: pki/edge-client.crt|; s|key: pki/regional.key|key: pki/edge-client.key|' \
    "$T/good.yaml" >"$T/client-as-server.yaml"
rc=0
out=$("$CDN_NODE" check-config --config "$T/client-as-server.yaml" 2>&1) || rc=$?
assert_eq "$rc" 1 "check-config with a client certificate on a listener"
assert_contains "$out" "lacks serverAuth" "reason for the client certificate on a listener"
rc=0
"$CDN_NODE" run --config "$T/client-as-server.yaml" --ports-file "$T/x.ports" >"$T/run.out" 2>&1 || rc=$?
assert_eq "$rc" 1 "run with a client certificate on a listener"
assert_contains "$(cat "$T/run.out")" "lacks serverAuth" "run's reason"
[ ! -e "$T/x.ports" ] || fail "a refused node must not announce ports"
