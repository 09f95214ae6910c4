#!/usr/bin/env bash
# Logs: the access log gets a line per request (written by the access log thread); after logrotate's
# "rename, then SIGUSR1" the node creates new access and error log files and writes there, and the
# renamed files keep what they had.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
edge_config "$T/edge.yaml" "$(port_of regional https)"
cat >>"$T/edge.yaml" <<'YAML'
log:
  access: edge.access
  error: edge.log
YAML
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)

# wait_for FILE TEXT: FILE contains TEXT (fixed string) within 3 s
wait_for() {
    local i
    for ((i = 0; i < 60; i++)); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "$1 does not contain '$2' after 3 s: $(tail -n 5 "$1" 2>/dev/null)"
}

code=$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/slow/1?first")
assert_eq "$code" 200 "first request"
wait_for "$T/edge.access" '/slow/1?first HTTP/1.1" 200'
wait_for "$T/edge.log" "starting as edge"

# logrotate: rename, then SIGUSR1
mv "$T/edge.access" "$T/edge.access.1"
mv "$T/edge.log" "$T/edge.log.1"
kill -USR1 "$(pid_of edge)"
wait_for "$T/edge.log" "log files reopened"
[ -f "$T/edge.access" ] || fail "SIGUSR1 did not create a new access log"

code=$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/slow/1?second")
assert_eq "$code" 200 "second request"
wait_for "$T/edge.access" '/slow/1?second HTTP/1.1" 200'
grep -qF '?first' "$T/edge.access" && fail "the new access log has the line of before the rotation"
grep -qF '?second' "$T/edge.access.1" && fail "the renamed access log got a line after SIGUSR1"
grep -qF '?first' "$T/edge.access.1" || fail "the renamed access log lost its line"
assert_eq "$(wc -l <"$T/edge.access")" 1 "lines in the new access log"

# the node keeps running and stops cleanly; its stop is logged in the new error log
stop edge
grep -qF "drained" "$T/edge.log" || fail "no 'drained' line in the new error log: $(tail -n 5 "$T/edge.log")"
grep -qF "stopped" "$T/edge.log" || fail "no 'stopped' line in the new error log"
echo "ok"
