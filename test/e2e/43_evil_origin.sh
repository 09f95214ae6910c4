#!/usr/bin/env bash
# A malicious or broken origin behind the regional: responses with CR/LF tricks in header values, two
# Content-Lengths, Content-Length with Transfer-Encoding, a bad length, a bad chunk size, an oversized
# head, and a body cut short. Each gets a clean 502 from the regional (or, for the cut body, a truncated
# answer the client can see), nothing is cached on either tier (asking again reaches the origin
# again), and nothing of the bad response is passed through.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin
# the evil origin: canned raw responses by path, each request logged to $T/evil.log
: >"$T/evil.log"
python3 - "$T/evil.ports" "$T/evil.log" <<'PY' >"$T/evil.out" 2>"$T/evil.err" &
import socket, sys, threading
ports, log = sys.argv[1], sys.argv[2]
CC = b"Cache-Control: max-age=600\r\n"
R = {
    "/cr-in-value": b"HTTP/1.1 200 OK\r\n" + CC + b"X-A: a\rInjected: 1\r\nContent-Length: 2\r\n\r\nok",
    "/lf-in-value": b"HTTP/1.1 200 OK\r\n" + CC + b"X-A: a\nInjected: 1\r\nContent-Length: 2\r\n\r\nok",
    "/nul-in-value": b"HTTP/1.1 200 OK\r\n" + CC + b"X-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "/two-cl": b"HTTP/1.1 200 OK\r\n" + CC + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
    "/cl-te": b"HTTP/1.1 200 OK\r\n" + CC + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/bad-cl": b"HTTP/1.1 200 OK\r\n" + CC + b"Content-Length: 2x\r\n\r\nok",
    "/bad-chunk": b"HTTP/1.1 200 OK\r\n" + CC + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "/huge-head": b"HTTP/1.1 200 OK\r\n" + CC + b"X-Big: " + b"a" * 200000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "/bad-status": b"HTTP/1.1 2000 OK\r\n" + CC + b"Content-Length: 2\r\n\r\nok",
    "/space-colon": b"HTTP/1.1 200 OK\r\n" + CC + b"X-A : b\r\nContent-Length: 2\r\n\r\nok",
    "/short-body": b"HTTP/1.1 200 OK\r\n" + CC + b"Content-Length: 100\r\n\r\n0123456789",
}
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
open(ports + ".tmp", "w").write("http %d\n" % s.getsockname()[1])
import os; os.rename(ports + ".tmp", ports)
def serve(c):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            k = c.recv(65536)
            if not k: return
            buf += k
        path = buf.split(b" ")[1].decode()
        with open(log, "a") as f: f.write("GET %s\n" % path)
        c.sendall(R.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    finally:
        c.close()  # one response per connection; a cut body ends here too
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
_PID[evil]=$!
_wait_ready evil
EVIL_PORT=$(port_of evil http)

regional_config "$T/regional.yaml"
sed -i "s|^remap:|remap:\n  - \"map https://$REGIONAL_HOST/evil/ http://127.0.0.1:$EVIL_PORT/\"|" "$T/regional.yaml"
cache_config "$T/regional.yaml" regional
start_node regional regional "$T/regional.yaml"
REGIONAL_PORT=$(port_of regional https)
cache_edge edge

evil_count() { grep -c "^GET $1\$" "$T/evil.log" || true; }

for p in /cr-in-value /lf-in-value /nul-in-value /two-cl /cl-te /bad-cl /bad-chunk /huge-head /bad-status /space-colon; do
    for round in 1 2; do
        code=$(ecurl -o "$T/body" -D "$T/head" -w '%{http_code}' "$EDGE/evil$p") || fail "GET $p: curl exit $?"
        assert_eq "$code" 502 "$p (round $round): status"
        grep -qi '^injected' "$T/head" && fail "$p: an injected header reached the client"
        grep -q 'ok' "$T/body" && fail "$p: the bad response's body reached the client"
    done
    # nothing cached: both rounds went to the origin (a retry of an idempotent GET may add one)
    n=$(evil_count "$p")
    [ "$n" -ge 2 ] && [ "$n" -le 4 ] || fail "$p: $n requests at the evil origin, want 2 (up to 4 with retries)"
done

# a body cut short: the client can tell (curl: transfer closed with bytes remaining), twice, and
# the partial object is cached nowhere
for round in 1 2; do
    rc=0
    ecurl -o "$T/body" "$EDGE/evil/short-body" 2>/dev/null || rc=$?
    case $rc in 18 | 56 | 92) ;; *) fail "short body (round $round): curl exit $rc, want 18, 56 or 92 (an incomplete transfer)" ;; esac
done
n=$(evil_count /short-body)
[ "$n" -ge 2 ] || fail "short body: $n requests at the evil origin: the partial object was cached"

# and the good origin still works through the same nodes
assert_eq "$(ecurl -o /dev/null -w '%{http_code}' "$EDGE/hello")" 200 "a good request afterwards"
stop_all
