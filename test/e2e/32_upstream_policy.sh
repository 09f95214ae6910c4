#!/usr/bin/env bash
# Outbound verification knobs (ATS names): PERMISSIVE lets a failing regional certificate through
# but logs and counts it; SIGNATURE skips the name; NAME skips the chain; DISABLED checks nothing;
# ENFORCED (the default, tested in 30_upstream_verify) refuses with 502.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
for cert in regional-wrongname regional-otherca; do
    regional_config "$T/$cert.yaml" "$cert"
    start_node "$cert" regional "$T/$cert.yaml"
done

# status EDGE_NAME REGIONAL_CERT POLICY_LINES: sets STATUS to what a customer gets through a new edge
# whose upstream block has POLICY_LINES, in front of the regional serving REGIONAL_CERT. (Not run in
# a $(...) subshell: the node it starts must be known to stop_all.)
status() {
    edge_config "$T/$1.yaml" "$(port_of "$2" https)"
    printf '%b\n' "$3" >>"$T/$1.yaml"
    printf 'admin:\n  port: 0\n' >>"$T/$1.yaml"
    start_node "$1" edge "$T/$1.yaml"
    STATUS=$(curl -s --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -o /dev/null -w '%{http_code}' \
        "https://127.0.0.1:$(port_of "$1" https)/hello" || true)
}

status e-perm-name regional-wrongname '  verify_server_policy: PERMISSIVE'
assert_eq "$STATUS" 200 "PERMISSIVE, wrong name"
log_has e-perm-name "certificate not verified" || fail "PERMISSIVE logged nothing"
errs=$(curl -s "http://127.0.0.1:$(port_of e-perm-name admin)/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["upstream_errors_tls"])')
assert_eq "$errs" 1 "upstream_errors_tls under PERMISSIVE"
status e-perm-ca regional-otherca '  verify_server_policy: PERMISSIVE'
assert_eq "$STATUS" 200 "PERMISSIVE, unknown CA"
status e-sig-name regional-wrongname '  verify_server_properties: SIGNATURE'
assert_eq "$STATUS" 200 "SIGNATURE, wrong name"
status e-sig-ca regional-otherca '  verify_server_properties: SIGNATURE'
assert_eq "$STATUS" 502 "SIGNATURE, unknown CA"
status e-name-ca regional-otherca '  verify_server_properties: NAME'
assert_eq "$STATUS" 200 "NAME, unknown CA"
status e-name-name regional-wrongname '  verify_server_properties: NAME'
assert_eq "$STATUS" 502 "NAME, wrong name"
status e-off regional-otherca '  verify_server_policy: DISABLED'
assert_eq "$STATUS" 200 "DISABLED"
log_has e-off "certificate not verified" && fail "DISABLED must not log verification failures"

# both spellings at once are refused with the position
edge_config "$T/both.yaml" 1
printf '  verify: false\n  verify_server_policy: ENFORCED\n' >>"$T/both.yaml"
rc=0
out=$("$CDN_NODE" check-config --config "$T/both.yaml" 2>&1) || rc=$?
assert_eq "$rc" 1 "check-config with verify and verify_server_policy"
assert_contains "$out" "verify_server_policy: give either verify or verify_server_policy" "message"

stop_all
