#!/usr/bin/env bash
# Faults: an origin that resets in the middle of a body while collapsed requests wait for it (every
# client gets an error or a truncated body, nobody hangs, nothing is cached); clients that vanish in the
# middle of large responses (no connection or fill left behind: the gauges return to zero and the object
# is fetched and cached whole afterwards); a storm of 100 reloads under load (no failed request); the
# regional down (the edge answers 502 at once); a store much smaller than the traffic (evicts, serves
# every response whole).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
# an origin that sends half of a cacheable 4 MiB body and then resets the connection
: >"$T/reset.log"
python3 - "$T/reset.ports" "$T/reset.log" <<'PY' >"$T/reset.out" 2>"$T/reset.err" &
import os, socket, struct, sys, threading, time
ports, log = sys.argv[1], sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
open(ports + ".tmp", "w").write("http %d\n" % s.getsockname()[1]); os.rename(ports + ".tmp", ports)
def serve(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        k = c.recv(65536)
        if not k: c.close(); return
        buf += k
    with open(log, "a") as f: f.write("GET %s\n" % buf.split(b" ")[1].decode())
    c.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 4194304\r\n\r\n")
    for _ in range(32):
        c.sendall(b"x" * 65536)
        time.sleep(0.01)
    time.sleep(0.3)  # collapsed requests pile up behind this one
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
_PID[reset]=$!
_wait_ready reset

regional_config "$T/regional.yaml"
sed -i "s|^remap:|remap:\n  - \"map https://$REGIONAL_HOST/reset/ http://127.0.0.1:$(port_of reset http)/\"|" "$T/regional.yaml"
printf 'admin:\n  port: 0\n' >>"$T/regional.yaml"
cache_config "$T/regional.yaml" regional
start_node regional regional "$T/regional.yaml"
REGIONAL_PORT=$(port_of regional https)
NODE_YAML=$'admin:\n  port: 0' cache_edge edge
rap=$(port_of regional admin)
eap=$(port_of edge admin)
st() { curl -sS "http://127.0.0.1:$1/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($2)"; }
# wait_zero ADMIN_PORT: connections_active drops to 0 within 5 s
wait_zero() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(st "$1" 'd["connections_active"]')" = 0 ] && return 0
        sleep 0.1
    done
    fail "connections_active of :$1 stays at $(st "$1" 'd["connections_active"]')"
}

# 1. a reset mid-body with 5 collapsed requests: each ends (error or short body) within the timeout
pids=()
for i in 1 2 3 4 5; do
    (rc=0; ecurl --max-time 20 -o "$T/reset.$i" "$EDGE/reset/big" 2>/dev/null || rc=$?; echo "$rc" >"$T/reset.$i.rc") &
    pids+=($!)
done
wait "${pids[@]}"
for i in 1 2 3 4 5; do
    rc=$(cat "$T/reset.$i.rc")
    [ "$rc" != 28 ] || fail "request $i hung until curl's --max-time"
    size=$(stat -c %s "$T/reset.$i" 2>/dev/null || echo 0)
    [ "$rc" != 0 ] || [ "$size" -lt 4194304 ] || fail "request $i got the whole body from an origin that never sent it"
    [ "$rc" != 0 ] || fail "request $i: curl exit 0 with $size bytes: a truncation the client cannot see"
done
first=$(grep -c . "$T/reset.log")
rc=0
ecurl --max-time 20 -o /dev/null "$EDGE/reset/big" 2>/dev/null || rc=$?
[ "$rc" != 0 ] || fail "the reset object was served whole afterwards"
[ "$(grep -c . "$T/reset.log")" -gt "$first" ] || fail "the partial object was served from a cache"

# 2. clients that vanish mid-response: 5 downloads of a large cacheable object, killed after 0.3 s
for i in 1 2 3 4 5; do
    # curl itself (not the ecurl function, whose subshell would survive the kill)
    curl -sS --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -o /dev/null --limit-rate 1M \
        "$EDGE/bytes/10000000?hdr=Cache-Control:max-age%3D600&v=$i" 2>/dev/null &
    p=$!
    sleep 0.3
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
done
wait_zero "$eap"
wait_zero "$rap"
# the object is still fetched whole, and then a hit
ecurl -o "$T/whole" "$EDGE/bytes/10000000?hdr=Cache-Control:max-age%3D600&v=1" || fail "GET after the vanished clients"
assert_eq "$(stat -c %s "$T/whole")" 10000000 "size after the vanished clients"
for ((i = 0; i < 30; i++)); do # the store commits a 10 MB fill a moment after the response ends
    ecurl -o /dev/null -D "$T/head" "$EDGE/bytes/10000000?hdr=Cache-Control:max-age%3D600&v=1"
    grep -qi '^cache-status: .*cdn-node-edge; hit' "$T/head" && break
    sleep 0.1
done
grep -qi '^cache-status: .*cdn-node-edge; hit' "$T/head" || fail "not a hit afterwards: $(grep -i cache-status "$T/head")"

# 3. a storm of 100 reloads (50 on each tier) under load: no failed request
python3 - "$EDGE" "$PKI/ca.crt" "$T/stop" "$T/load.out" <<'PY' &
import http.client, ssl, sys, threading, os
base, ca, stop, out = sys.argv[1:5]
host, port = base.split("//")[1].split(":")
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
ok, bad = [0], []
def run(n):
    while not os.path.exists(stop):
        try:
            c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
            for i in range(5):
                c.request("GET", "/bytes/1000?n=%d&i=%d" % (n, ok[0]), headers={"Host": "cdn.test"})
                r = c.getresponse(); body = r.read()
                if r.status != 200 or len(body) != 1000: bad.append("status %d" % r.status)
                else: ok[0] += 1
            c.close()
        except Exception as e:
            bad.append(repr(e))
ts = [threading.Thread(target=run, args=(i,)) for i in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
open(out, "w").write("%d %d %s\n" % (ok[0], len(bad), bad[:3]))
PY
load=$!
for i in $(seq 1 50); do
    kill -HUP "$(pid_of edge)"
    kill -HUP "$(pid_of regional)"
    sleep 0.05
done
for ((i = 0; i < 100; i++)); do # every reload done
    [ "$(st "$eap" 'd["reloads_ok"]+d["reloads_failed"]')" -ge 50 ] &&
        [ "$(st "$rap" 'd["reloads_ok"]+d["reloads_failed"]')" -ge 50 ] && break
    sleep 0.1
done
sleep 0.5
touch "$T/stop"
wait "$load"
read -r nok nbad rest <"$T/load.out"
[ "$nok" -gt 100 ] || fail "only $nok requests during the reload storm"
assert_eq "$nbad" 0 "failed requests during the reload storm ($rest)"
assert_eq "$(st "$eap" 'd["reloads_failed"]')" 0 "edge reloads failed"
[ "$(st "$eap" 'd["reloads_ok"]')" -ge 50 ] || fail "edge reloads: $(st "$eap" 'd["reloads_ok"]')"

# 4. a store far smaller than what goes through it (1 MiB, 40 objects of 100 KB): every response is
#    served whole, the store evicts instead of failing, and stays within its size; once it is full, an
#    object asked for once is not admitted over objects asked for as often, and its second request
#    stores it (cache/evict.h, admission)
main_edge=$EDGE
NODE_YAML=$'admin:\n  port: 0' cache_edge tiny "size: 1MiB" # sets EDGE to the tiny one
tap=$(port_of tiny admin)
for i in $(seq 1 40); do
    FETCH_BASE=https://127.0.0.1:$(port_of tiny https) fetch "/bytes/100000?hdr=Cache-Control:max-age%3D600&t=$i"
    assert_eq "$CODE" 200 "tiny store: object $i"
    assert_eq "$(stat -c %s "$T/body")" 100000 "tiny store: size of object $i"
done
for ((i = 0; i < 30; i++)); do
    [ "$(st "$tap" 'd["cache_evictions"]')" -gt 0 ] && break
    sleep 0.1
done
[ "$(st "$tap" 'd["cache_evictions"]')" -gt 0 ] || fail "the tiny store evicted nothing"
[ "$(st "$tap" 'd["cache_bytes"] <= d["cache_capacity_bytes"]')" = True ] || fail "the tiny store is over its size"
[ "$(st "$tap" 'd["cache_not_admitted"]')" -gt 0 ] || fail "a full store admitted every object asked for once"
FETCH_BASE=https://127.0.0.1:$(port_of tiny https) fetch "/bytes/100000?hdr=Cache-Control:max-age%3D600&t=41"
assert_match "$LAST_CS" ".*fwd=uri-miss.*detail=not-admitted.*" "a new object asked for once, the store full"
FETCH_BASE=https://127.0.0.1:$(port_of tiny https) fetch "/bytes/100000?hdr=Cache-Control:max-age%3D600&t=41"
assert_match "$LAST_CS" ".*fwd=uri-miss.*stored.*" "its second request"
for ((i = 0; i < 30; i++)); do
    FETCH_BASE=https://127.0.0.1:$(port_of tiny https) fetch "/bytes/100000?hdr=Cache-Control:max-age%3D600&t=41"
    case $LAST_CS in *hit*) break ;; esac
    sleep 0.1 # the writer commits in the background
done
assert_match "$LAST_CS" ".*hit.*" "its third request"
assert_eq "$(stat -c %s "$T/body")" 100000 "the admitted object, served from the store"
stop tiny
EDGE=$main_edge

# 5. the regional down: the edge answers 502 at once (not after a timeout)
stop regional
start=$(date +%s%N)
code=$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/nocache/after-stop?x=1")
ms=$((($(date +%s%N) - start) / 1000000))
assert_eq "$code" 502 "with the regional down"
[ "$ms" -lt 2000 ] || fail "502 took $ms ms"
stop_all
