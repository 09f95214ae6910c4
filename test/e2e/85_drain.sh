#!/usr/bin/env bash
# Graceful drain (SIGTERM): a slow response in flight when the edge gets SIGTERM still arrives whole
# (with Connection: close), new connections are refused once draining, /readyz answers 503 meanwhile,
# an idle keep-alive client is closed at once, and the edge exits 0 soon after the last response.
# Then a second SIGTERM during a drain stops at once, and timeouts.drain bounds a drain.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
RP=$(port_of regional https)

# start_edge NAME: an edge with an admin listener; sets EP (its port), AP (admin port)
start_edge() {
    edge_config "$T/$1.yaml" "$RP"
    echo 'admin: {port: 0}' >>"$T/$1.yaml"
    start_node "$1" edge "$T/$1.yaml"
    EP=$(port_of "$1" https)
    AP=$(port_of "$1" admin)
}

# idle_client PORT READY OUT: one keep-alive exchange over TLS, then touches READY and waits for the
# server to close; writes the epoch time of the close (or "timeout") to OUT
cat >"$T/idle.py" <<'PY'
import socket, ssl, sys, time
port, ca, ready, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="cdn.test")
s.sendall(b"GET /slow/1 HTTP/1.1\r\nHost: cdn.test\r\n\r\n")
data = b""
while not data.endswith(b"slow\n"):
    d = s.recv(4096)
    if not d:
        sys.exit("closed before the response: %r" % data)
    data += d
if b"connection: close" in data.lower():
    sys.exit("the first response closed the connection: %r" % data)
open(ready, "w").write("ok\n")
s.settimeout(20)
res = "timeout"
try:
    while True:
        d = s.recv(4096)
        if not d:
            res = "%.3f" % time.time()
            break
except (ssl.SSLError, ConnectionError) as e:
    res = "%.3f" % time.time()
except socket.timeout:
    pass
open(out, "w").write(res + "\n")
PY

now() { date +%s.%N; }
# secs_between A B: B - A, 3 decimals
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# lt A B: A < B (decimals)
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# --- first SIGTERM: drain ---
start_edge edge
EDGE=https://127.0.0.1:$EP

python3 "$T/idle.py" "$EP" "$PKI/ca.crt" "$T/idle.ready" "$T/idle.out" 2>"$T/idle.err" &
idle_pid=$!
for ((i = 0; i < 100; i++)); do
    [ -f "$T/idle.ready" ] && break
    sleep 0.1
done
[ -f "$T/idle.ready" ] || fail "the idle keep-alive client got no response: $(cat "$T/idle.err")"

ecurl -D "$T/slow.head" -o "$T/slow.body" -w '%{http_code}' "$EDGE/slow/3000" >"$T/slow.code" 2>"$T/slow.err" &
slow_pid=$!
for ((i = 0; i < 100; i++)); do
    grep -q '/slow/3000' "$T/origin.log" && break
    sleep 0.05
done
grep -q '/slow/3000' "$T/origin.log" || fail "the slow request did not reach the origin"

pid=$(pid_of edge)
t0=$(now)
kill -TERM "$pid"

# new connections are refused once draining (the listeners are closed)
refused=0
for ((i = 0; i < 40; i++)); do
    rc=0
    ecurl -o /dev/null --max-time 2 "$EDGE/slow/1" 2>/dev/null || rc=$?
    if [ "$rc" -eq 7 ]; then
        refused=1
        break
    fi
    sleep 0.05
done
assert_eq "$refused" 1 "a new connection to a draining edge is refused (curl exit 7)"
# /readyz: not ready while draining (the admin listener stays up until the end)
rcode=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$AP/readyz" || true)
assert_eq "$rcode" 503 "/readyz while draining"
kill -0 "$slow_pid" 2>/dev/null || fail "the slow request ended before its response was due"

# the idle keep-alive client was closed at once
wait "$idle_pid" || fail "idle client: $(cat "$T/idle.err")"
closed=$(cat "$T/idle.out")
[ "$closed" != timeout ] || fail "the idle keep-alive connection was not closed by the drain"
d=$(secs_between "$t0" "$closed")
lt "$d" 1.5 || fail "the idle keep-alive connection was closed ${d}s after SIGTERM (expected at once)"

# the in-flight response arrives whole, and says the connection closes
rc=0
wait "$slow_pid" || rc=$?
assert_eq "$rc" 0 "curl exit status of the in-flight slow request ($(cat "$T/slow.err"))"
assert_eq "$(cat "$T/slow.code")" 200 "status of the in-flight slow request"
assert_eq "$(cat "$T/slow.body")" slow "body of the in-flight slow request"
conn=$(tr -d '\r' <"$T/slow.head" | awk -F': ' 'tolower($1) == "connection" { print tolower($2) }')
assert_eq "$conn" close "Connection header of the response finished while draining"

# the edge exits 0, well before the harness's 5 s, once the response is done
st=0
for ((i = 0; i < 60 * ${E2E_SLOW:-1}; i++)); do
    _alive "$pid" || break
    sleep 0.1
done
_alive "$pid" && fail "the edge still runs $(secs_between "$t0" "$(now)")s after SIGTERM"
t1=$(now)
wait "$pid" || st=$?
unset "_PID[edge]"
assert_eq "$st" 0 "exit status of the drained edge"
d=$(secs_between "$t0" "$t1")
lt "$d" "$(awk -v k="${E2E_SLOW:-1}" 'BEGIN { print 4.5 * k }')" || fail "the edge exited ${d}s after SIGTERM"
log_has edge "draining: " || fail "no 'draining: N connections' line in the edge's log"
log_has edge "drained" || fail "no 'drained' line in the edge's log"
grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/edge.err" && fail "sanitizer report: $(cat "$T/edge.err")"

# --- a second SIGTERM during a drain stops at once ---
start_edge edge2
ecurl -o /dev/null "https://127.0.0.1:$EP/slow/5000" 2>/dev/null &
slow_pid=$!
for ((i = 0; i < 100; i++)); do
    [ "$(grep -c '/slow/5000' "$T/origin.log")" -ge 1 ] && break
    sleep 0.05
done
pid=$(pid_of edge2)
t0=$(now)
kill -TERM "$pid"
sleep 0.3
_alive "$pid" || fail "edge2 did not drain (it exited at the first SIGTERM with a response in flight)"
kill -TERM "$pid"
for ((i = 0; i < 30; i++)); do
    _alive "$pid" || break
    sleep 0.1
done
_alive "$pid" && fail "edge2 still runs after a second SIGTERM"
st=0
wait "$pid" || st=$?
unset "_PID[edge2]"
assert_eq "$st" 0 "exit status after a second SIGTERM"
d=$(secs_between "$t0" "$(now)")
lt "$d" 2.5 || fail "edge2 took ${d}s to stop after two SIGTERMs"
log_has edge2 "stopping now" || fail "no 'stopping now' line in edge2's log"
wait "$slow_pid" 2>/dev/null || true
grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/edge2.err" && fail "sanitizer report: $(cat "$T/edge2.err")"

# --- timeouts.drain: what is still in flight when it expires is closed, and the exit is still 0 ---
edge_config "$T/edge3.yaml" "$RP"
printf 'timeouts:\n  drain: 1s\n' >>"$T/edge3.yaml"
start_node edge3 edge "$T/edge3.yaml"
ecurl -o /dev/null "https://127.0.0.1:$(port_of edge3 https)/slow/6000" 2>/dev/null &
slow_pid=$!
for ((i = 0; i < 100; i++)); do
    grep -q '/slow/6000' "$T/origin.log" && break
    sleep 0.05
done
pid=$(pid_of edge3)
t0=$(now)
kill -TERM "$pid"
for ((i = 0; i < 40; i++)); do
    _alive "$pid" || break
    sleep 0.1
done
_alive "$pid" && fail "edge3 still runs 4 s after SIGTERM with timeouts.drain 1s"
st=0
wait "$pid" || st=$?
unset "_PID[edge3]"
assert_eq "$st" 0 "exit status after timeouts.drain expired"
d=$(secs_between "$t0" "$(now)")
lt 0.9 "$d" || fail "edge3 exited ${d}s after SIGTERM, before timeouts.drain (1s)"
log_has edge3 "timeouts.drain (1000ms) expired" || fail "no drain timeout line in edge3's log"
rc=0
wait "$slow_pid" || rc=$?
[ "$rc" -ne 0 ] || fail "the request cut by the drain timeout looked complete to curl"
grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T/edge3.err" && fail "sanitizer report: $(cat "$T/edge3.err")"
echo "ok"
