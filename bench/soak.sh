#!/usr/bin/env bash
# Load and slow clients against the edge (make soak; not part of make check):
#
#   1. idle keep-alive connections: SOAK_CONNS (10000) TLS connections each make one request and then
#      stay open; the edge's RSS before and after gives the bytes per idle connection, and every
#      connection must still be open (the node keeps what keep-alive allows);
#   2. slowloris: SOAK_SLOW (200) connections sending one header byte a second are all closed by the
#      request-head timeout (timeouts.request_header, 2 s here), and a normal request still works while
#      they try;
#   3. a slow reader: one client reads a 300 MB object at 2 MB/s for SOAK_SLOW_SECS (10) s; the edge's
#      RSS stays bounded (backpressure, not buffering).
#
# Prints a markdown table and writes it to build/soak.md. Uses build/cdn-node (release) and python3.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONNS=${SOAK_CONNS:-10000}
SLOW=${SOAK_SLOW:-200}
SLOW_SECS=${SOAK_SLOW_SECS:-10}
OUT=$SRC/build/soak.md
export T
T=$(mktemp -d "${TMPDIR:-/tmp}/cdn-soak.XXXXXX")
E2E_SRC=$SRC
CDN_NODE=${CDN_NODE:-$SRC/build/cdn-node}
ORIGIN=$SRC/build/origin
# shellcheck source=test/e2e/lib.sh
. "$SRC/test/e2e/lib.sh"
trap 'stop_all >/dev/null 2>&1 || true; rm -rf "$T"' EXIT

ulimit -n $((CONNS + 2048)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((CONNS + 100)) ] || { echo "soak: ulimit -n $(ulimit -n) is too low for $CONNS connections" >&2; exit 1; }

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
edge_config "$T/edge.yaml" "$(port_of regional https)"
cat >>"$T/edge.yaml" <<'YAML'
timeouts:
  request_header: 2s
  keepalive: 10m
YAML
sed -i 's/^workers: 2$/workers: 1/' "$T/edge.yaml"
start_node edge edge "$T/edge.yaml"
EP=$(port_of edge https)
EPID=$(pid_of edge)
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$1/status"; }

ecurl -o /dev/null "https://127.0.0.1:$EP/hello" # warm: the pool to the regional, TLS contexts
before=$(rss "$EPID")

# 1. idle keep-alive connections
python3 - "$EP" "$PKI/ca.crt" "$CONNS" "$T/idle.ready" "$T/idle.stop" "$T/idle.out" <<'PY' &
import asyncio, ssl, sys, os
port, ca, n, ready, stop, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
async def one(i, conns):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="cdn.test")
    w.write(b"GET /hello HTTP/1.1\r\nHost: cdn.test\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    await r.readexactly(n)
    conns.append((r, w))
async def main():
    conns, sem = [], asyncio.Semaphore(200)
    async def guarded(i):
        async with sem:
            await one(i, conns)
    await asyncio.gather(*(guarded(i) for i in range(n)))
    open(ready, "w").write("%d\n" % len(conns))
    while not os.path.exists(stop):
        await asyncio.sleep(0.2)
    alive = 0
    for r, w in conns:  # still open? a closed one reads EOF at once
        try:
            await asyncio.wait_for(r.read(1), 0.001)
        except asyncio.TimeoutError:
            alive += 1
    open(out, "w").write("%d\n" % alive)
asyncio.run(main())
PY
idle_pid=$!
for ((i = 0; i < 600; i++)); do [ -s "$T/idle.ready" ] && break; sleep 0.5; done
[ -s "$T/idle.ready" ] || { echo "soak: the idle connections were not all opened" >&2; exit 1; }
sleep 3
after=$(rss "$EPID")
if [ -n "${SOAK_TRIM_PROBE:-}" ] && command -v gdb >/dev/null; then # how much of it is malloc's free lists
    gdb -p "$EPID" -batch -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1 || true
    echo "after malloc_trim: $(($(rss "$EPID") / 1024)) KiB (was $((after / 1024)) KiB)" >&2
fi

touch "$T/idle.stop"
wait "$idle_pid"
alive=$(cat "$T/idle.out")
per_conn=$(((after - before) / CONNS))

# 2. slowloris
python3 - "$EP" "$PKI/ca.crt" "$SLOW" "$T/slow.out" <<'PY' &
import asyncio, ssl, sys, time
port, ca, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
req = b"GET /hello HTTP/1.1\r\nHost: cdn.test\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
async def one():
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="cdn.test")
    t0 = time.monotonic()
    try:
        for b in req:
            w.write(bytes([b])); await w.drain()
            try:
                data = await asyncio.wait_for(r.read(4096), 1.0)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    return time.monotonic() - t0
            except asyncio.TimeoutError:
                pass
    except (ConnectionError, ssl.SSLError):
        return time.monotonic() - t0
    return None  # never closed
async def main():
    res = await asyncio.gather(*(one() for _ in range(n)))
    closed = [x for x in res if x is not None]
    open(out, "w").write("%d %.1f\n" % (len(closed), max(closed) if closed else -1))
asyncio.run(main())
PY
slow_pid=$!
sleep 1
normal=$(ecurl -o /dev/null -w '%{http_code} %{time_total}' "https://127.0.0.1:$EP/hello")
wait "$slow_pid"
read -r slow_closed slow_max <"$T/slow.out"

# 3. a slow reader of a large object
hwm0=$(hwm "$EPID")
timeout "$SLOW_SECS" curl -sS --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" --limit-rate 2M -o /dev/null \
    "https://127.0.0.1:$EP/bytes/300000000" 2>/dev/null || true
reader_rss=$(rss "$EPID")
hwm1=$(hwm "$EPID")

{
    echo "| case | figure |"
    echo "|---|---|"
    echo "| idle keep-alive TLS connections held | $alive of $CONNS still open after the test |"
    echo "| edge RSS before / with them | $((before / 1024)) KiB / $((after / 1024)) KiB |"
    echo "| bytes per idle TLS connection | $per_conn |"
    echo "| slowloris connections closed by the head timeout (2 s) | $slow_closed of $SLOW, the last after ${slow_max} s |"
    echo "| a normal request during the slowloris | $normal (status, seconds) |"
    echo "| slow reader (2 MB/s of a 300 MB object, ${SLOW_SECS} s): edge peak RSS before / after | $((hwm0 / 1024)) KiB / $((hwm1 / 1024)) KiB (RSS now $((reader_rss / 1024)) KiB) |"
} | tee "$OUT"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo); written to $OUT"

