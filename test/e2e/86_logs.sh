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
cat >>"$T/regional.yaml" <<'YAML'
log:
  access: regional.access
cache:
  path: cache-regional
  size: 64MiB
YAML
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

# the default format: every field of docs/CONFIG.md's log.access_format, here on the regional (which
# sees the edge's client certificate): a miss, then a hit
code=$(ecurl -o /dev/null -w '%{http_code}' -A 'agent "quoted"' "$EDGE/bytes/10?hdr=Cache-Control:max-age%3D60")
assert_eq "$code" 200 "cacheable request"
# (the miss's fill commits a moment after its response: until then a request is "collapsed" onto it)
for ((i = 0; i < 30; i++)); do
    ecurl -o /dev/null "$EDGE/bytes/10?hdr=Cache-Control:max-age%3D60"
    sleep 0.1
    grep -qF "cache=hit" "$T/regional.access" && break
done
wait_for "$T/regional.access" "cache=hit"
fp=$(openssl x509 -in "$PKI/edge-client.crt" -outform DER | sha256sum | cut -d' ' -f1)
line=$(grep -F "cache=miss" "$T/regional.access" | head -1)
assert_match "$line" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z 127\.0\.0\.1:[0-9]+ "GET /bytes/10\?hdr=Cache-Control:max-age%3D60 HTTP/1\.1" 200 10 [0-9]+ms cache=miss host=regional\.cdn\.test sni=regional\.cdn\.test tls=TLSv1\.3 up=127\.0\.0\.1:[0-9]+ client="CN=edge-1" client_sha256='"$fp"' cert=SUCCESS$' \
    "regional access log line (miss)"
line=$(grep -F "cache=hit" "$T/regional.access" | head -1)
assert_match "$line" '.* 200 10 [0-9]+ms cache=hit .* up=- client="CN=edge-1" client_sha256='"$fp"' cert=SUCCESS$' "regional access log line (hit)"
# a format of one's own; values are escaped
sed -i 's/^  access: regional.access$/  access: regional.access\n  access_format: '"'"'$method $status ua="$user_agent" gen=$generation'"'"'/' "$T/regional.yaml"
kill -HUP "$(pid_of regional)"
for ((i = 0; i < 50; i++)); do
    grep -qF "generation 2 in service" "$T/regional.err" && break
    sleep 0.1
done
ecurl -o /dev/null -A 'agent "quoted"' "$EDGE/nocache/x"
wait_for "$T/regional.access" 'GET 200 ua="agent \x22quoted\x22" gen=2'

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
