#!/usr/bin/env bash
# cdn-node's command line: check-config accepts the shipped configs (with their certificates) and
# reports problems with their position; run refuses to start without a role; --version and --help work.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# the shipped configs: check-config also loads the certificates they name, so with the development
# PKI next to them they pass, and without it the missing file is reported with a position
for f in edge regional; do
    mkdir -p "$T/bare" "$T/with-pki"
    cp "$E2E_SRC/etc/$f.yaml" "$T/bare/$f.yaml"
    cp "$E2E_SRC/etc/$f.yaml" "$T/with-pki/$f.yaml"
done
sh "$E2E_SRC/scripts/pki.sh" "$T/with-pki/pki" 2>/dev/null
for f in edge regional; do
    rc=0
    "$CDN_NODE" check-config --config "$T/with-pki/$f.yaml" >"$T/out" 2>"$T/err" || rc=$?
    assert_eq "$rc" 0 "check-config etc/$f.yaml with pki/ exit status ($(cat "$T/err"))"
    rc=0
    "$CDN_NODE" check-config --config "$T/bare/$f.yaml" >"$T/out" 2>"$T/err" || rc=$?
    assert_eq "$rc" 1 "check-config etc/$f.yaml without pki/ exit status"
    grep -qE "^$T/bare/$f.yaml:[0-9]+:[0-9]+: " "$T/err" ||
        fail "check-config etc/$f.yaml without pki/: no file:line:col: position in: $(cat "$T/err")"
    assert_contains "$(cat "$T/err")" "pki/$f.crt" "check-config etc/$f.yaml without pki/"
done

# an unknown key on line 3
cat >"$T/unknown.yaml" <<YAML
role: edge
workers: 2
no_such_key: 1
listeners:
  - name: http
    address: 127.0.0.1
    port: 0
YAML
rc=0
"$CDN_NODE" check-config --config "$T/unknown.yaml" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "check-config exit status for an unknown key"
assert_contains "$(cat "$T/err")" "$T/unknown.yaml:3:1:" "check-config stderr"
assert_contains "$(cat "$T/err")" "no_such_key" "check-config stderr"

# two problems are both reported
cat >"$T/two.yaml" <<YAML
role: edge
workers: many
listeners:
  - name: http
    address: 127.0.0.1
    port: 70000
YAML
rc=0
"$CDN_NODE" check-config --config "$T/two.yaml" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 1 "check-config exit status for two bad values"
assert_contains "$(cat "$T/err")" "$T/two.yaml:2:" "check-config stderr"
assert_contains "$(cat "$T/err")" "$T/two.yaml:6:" "check-config stderr"

# run with no role in the file and no --role
cat >"$T/norole.yaml" <<YAML
workers: 2
listeners:
  - name: http
    address: 127.0.0.1
    port: 0
YAML
rc=0
timeout 10 "$CDN_NODE" run --config "$T/norole.yaml" --ports-file "$T/norole.ports" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "run without a role exited 0"
[ "$rc" -ne 124 ] || fail "run without a role did not exit (it should refuse to start)"
assert_contains "$(tr '[:upper:]' '[:lower:]' <"$T/err")" "role" "run without a role: stderr"
[ ! -e "$T/norole.ports" ] || fail "run without a role wrote a ports file"

# --version, --help
rc=0
v=$("$CDN_NODE" --version 2>&1) || rc=$?
assert_eq "$rc" 0 "--version exit status"
assert_contains "$v" "$(cat "$E2E_SRC/VERSION")" "--version output"
rc=0
h=$("$CDN_NODE" --help 2>&1) || rc=$?
assert_eq "$rc" 0 "--help exit status"
assert_contains "$h" "check-config" "--help output"
