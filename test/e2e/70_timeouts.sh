#!/usr/bin/env bash
# Timeouts, each on its own node with only that timeout short (the others keep their 10 s+ defaults,
# so a node that used the wrong timer fails the time bounds):
#   request_header 1s  -> a half-sent head gets 408 and the connection closes ~1 s after its first
#                         byte, also when the client trickles header lines, also on a reused connection
#   keepalive 1s       -> an idle keep-alive connection is closed ~1 s after the last response,
#                         with no 408; the timer restarts after every response
#   handshake 1s       -> a TCP client that never starts TLS is disconnected after ~1 s
#   upstream_response  -> 504: the regional's 504 passes through the edge, and the edge's own timer
#                         gives 504 when it is the shorter one
#   upstream connect   -> refused port: 502 at once; a TLS upstream that never answers: 504 after
#                         upstream_connect
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki
start_origin

# regional_with NAME EXTRA_YAML: a regional (lib.sh config) with EXTRA_YAML appended, started
regional_with() {
    regional_config "$T/$1.yaml"
    printf '%s\n' "$2" >>"$T/$1.yaml"
    start_node "$1" regional "$T/$1.yaml"
}

# edge_with NAME UPSTREAM_PORT EXTRA_YAML: an edge (lib.sh config) with EXTRA_YAML appended, started
edge_with() {
    edge_config "$T/$1.yaml" "$2"
    printf '%s\n' "$3" >>"$T/$1.yaml"
    start_node "$1" edge "$T/$1.yaml"
}

regional_with reg_short $'via: cdn-regional\ntimeouts: {upstream_response: 1s}'
regional_with reg_long $'via: cdn-regional\ntimeouts: {upstream_response: 10s}'
rs=$(port_of reg_short https)
rl=$(port_of reg_long https)
edge_with edge_rh "$rl" 'timeouts: {request_header: 1s}'
edge_with edge_ka "$rl" 'timeouts: {keepalive: 1s}'
edge_with edge_hs "$rl" 'timeouts: {handshake: 1s}'
edge_with edge_pass "$rs" $'via: cdn-edge\ntimeouts: {upstream_response: 10s}'
edge_with edge_short "$rl" $'via: cdn-edge\ntimeouts: {upstream_response: 1s}'
start_dead_upstream refuser closed
start_dead_upstream silent silent
edge_with edge_refused "$(port_of refuser tcp)" 'timeouts: {upstream_connect: 2s}'
edge_with edge_silent "$(port_of silent tcp)" 'timeouts: {upstream_connect: 1s}'

# client.py SCENARIO PORT CAFILE HOST: the raw-socket scenarios; exits non-zero with a FAIL line on failure
cat >"$T/client.py" <<'PY'
import os, socket, ssl, sys, time

scenario, port, cafile, host = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def die(msg):
    sys.exit("FAIL: %s: %s" % (scenario, msg))

def tls():
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=8)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.settimeout(8)
    return s

def recv(s):
    """Bytes, or b'' on EOF (close_notify, FIN or reset). Raises socket.timeout."""
    try:
        return s.recv(65536)
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
        return b""

def until_eof(s, limit):
    """Everything received until EOF and the seconds it took; fails after limit seconds."""
    t0, data = time.monotonic(), b""
    s.settimeout(limit)
    while True:
        try:
            d = recv(s)
        except socket.timeout:
            die("no EOF within %.1f s; received so far: %r" % (limit, data[:300]))
        if not d:
            return data, time.monotonic() - t0
        data += d

def response(s):
    """One complete response with a Content-Length body (the node's and the origin's small ones)."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = recv(s)
        if not d:
            die("EOF inside a response head: %r" % data[:300])
        data += d
    head, body = data.split(b"\r\n\r\n", 1)
    n = None
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    if n is None:
        die("no Content-Length in %r" % head)
    while len(body) < n:
        d = recv(s)
        if not d:
            die("EOF inside a response body")
        body += d
    if len(body) != n:
        die("more bytes than the Content-Length: %r" % body[n:][:200])
    return head.decode("latin-1"), body

def expect_408(s, t0, what):
    data, _ = until_eof(s, 5)
    took = time.monotonic() - t0
    text = data.decode("latin-1")
    if not text.startswith("HTTP/1.1 408 "):
        die("%s: expected HTTP/1.1 408, got %r" % (what, text[:300]))
    if "connection: close" not in text.lower():
        die("%s: the 408 has no Connection: close: %r" % (what, text[:300]))
    if text.count("HTTP/1.") != 1:
        die("%s: more than one response: %r" % (what, text[:500]))
    # request_header is 1s, counted from the first byte of the head
    if not 0.8 <= took <= 3.0 * float(os.environ.get("E2E_SLOW", "1")):  # room for a loaded CI machine
        die("%s: 408 + close took %.2f s after the first byte, expected 1..3 s" % (what, took))
    print("%s: 408 and close after %.2f s" % (what, took))

get = "GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n" % host

if scenario == "half_head":
    s = tls()
    t0 = time.monotonic()
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n" % host).encode())
    expect_408(s, t0, "half a head")

elif scenario == "trickle":
    # a new header line every 200 ms: each completes a line, none completes the head
    s = tls()
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\n")
    s.settimeout(0.2)
    got = b""
    for i in range(15):
        try:
            d = recv(s)
            if not d:
                break
            got += d
            break
        except socket.timeout:
            pass
        try:
            s.sendall(b"X-Trickle-%d: 1\r\n" % i)
        except OSError:
            break
    # whatever arrived already is the start of the answer
    rest, _ = until_eof(s, 5)
    took = time.monotonic() - t0
    text = (got + rest).decode("latin-1")
    if not text.startswith("HTTP/1.1 408 "):
        die("expected HTTP/1.1 408, got %r" % text[:300])
    if not 0.8 <= took <= 3.0 * float(os.environ.get("E2E_SLOW", "1")):  # room for a loaded CI machine
        die("408 + close took %.2f s after the first byte, expected 1..3 s (trickling must not "
            "extend request_header)" % took)
    print("trickled head: 408 and close after %.2f s" % took)

elif scenario == "second_head":
    # the timer also runs for the second request on a kept-alive connection
    s = tls()
    s.sendall(get.encode())
    head, body = response(s)
    if not head.startswith("HTTP/1.1 200 ") or body != b"origin: /hello\n":
        die("first request: %r %r" % (head, body))
    time.sleep(0.3)
    t0 = time.monotonic()
    s.sendall(("GET /again HTTP/1.1\r\nHost: %s\r\n" % host).encode())
    expect_408(s, t0, "half a second head")

elif scenario == "keepalive":
    s = tls()
    s.sendall(get.encode())
    head, body = response(s)
    if not head.startswith("HTTP/1.1 200 ") or body != b"origin: /hello\n":
        die("first request: %r %r" % (head, body))
    if "connection: close" in head.lower():
        die("first response closes the connection: %r" % head)
    # a second request inside the 1 s window: the connection is reused and the timer restarts
    time.sleep(0.6)
    s.sendall(get.encode())
    head, body = response(s)
    if not head.startswith("HTTP/1.1 200 ") or body != b"origin: /hello\n":
        die("second request after 0.6 s idle: %r %r" % (head, body))
    t0 = time.monotonic()
    data, took = until_eof(s, 5)
    if data:
        die("the idle connection got bytes before it was closed (no 408 for idle): %r" % data[:300])
    if not 0.8 <= took <= 3.0 * float(os.environ.get("E2E_SLOW", "1")):  # room for a loaded CI machine
        die("idle connection closed %.2f s after the last response, expected 1..3 s" % took)
    print("idle keep-alive connection closed after %.2f s, nothing sent" % took)

elif scenario == "handshake":
    raw = socket.create_connection(("127.0.0.1", port), timeout=8)
    t0 = time.monotonic()
    raw.settimeout(5)
    try:
        d = raw.recv(4096)
    except socket.timeout:
        die("not disconnected within 5 s")
    except ConnectionResetError:
        d = b""
    took = time.monotonic() - t0
    if d:
        die("got bytes from the server: %r" % d[:100])
    if not 0.8 <= took <= 3.0 * float(os.environ.get("E2E_SLOW", "1")):  # room for a loaded CI machine
        die("disconnected after %.2f s, expected 1..3 s" % took)
    print("silent TCP client disconnected after %.2f s" % took)

else:
    die("unknown scenario")
PY
# The client scenarios take about a second each; they run side by side (each on its own
# connection), in the background while the upstream checks below run.
declare -A _SC=()
client_bg() {
    python3 "$T/client.py" "$1" "$2" "$PKI/ca.crt" "$EDGE_HOST" >"$T/sc.$1.out" 2>&1 &
    _SC[$1]=$!
}
rh=$(port_of edge_rh https)
client_bg half_head "$rh"     # request_header
client_bg trickle "$rh"       # request_header
client_bg second_head "$rh"   # request_header
client_bg keepalive "$(port_of edge_ka https)"
client_bg handshake "$(port_of edge_hs https)"

# timed_get NAME PATH: GET through edge NAME; sets CODE and SECS, headers in $T/h, body in $T/b
timed_get() {
    local out
    out=$(ecurl -o "$T/b" -D "$T/h" -w '%{http_code} %{time_total}' \
        "https://127.0.0.1:$(port_of "$1" https)$2") || fail "GET $2 via $1: curl exit $?"
    CODE=${out% *}
    SECS=${out#* }
}

# between SECS LOW HIGH WHAT
between() {
    # E2E_SLOW (make valgrind) stretches the upper bound: under memcheck everything is slower
    awk -v s="$1" -v lo="$2" -v hi="$3" -v k="${E2E_SLOW:-1}" 'BEGIN { exit !(s >= lo && s <= hi * k) }' ||
        fail "$4: took ${1}s, expected ${2}..${3}s (x${E2E_SLOW:-1})"
}

# --- upstream_response: the regional's 504 passes through the edge ---
timed_get edge_pass /slow/3000
assert_eq "$CODE" 504 "status of /slow/3000 with the regional's upstream_response 1s"
between "$SECS" 0.8 3.5 "504 from the regional"
assert_contains "$(cat "$T/b")" "504" "body of the regional's 504"
# forwarded by the edge: it carries the edge's Via; and the regional is the one that timed out
assert_contains "$(tr -d '\r' <"$T/h" | tr '[:upper:]' '[:lower:]')" "via: 1.1 cdn-edge" \
    "headers of the 504 passed through the edge"
log_has reg_short "timed out while waiting for the upstream response" ||
    fail "reg_short logged no upstream timeout: $(tail -n 5 "$T/reg_short.err")"
if log_has edge_pass "timed out"; then fail "edge_pass timed out itself: $(tail -n 5 "$T/edge_pass.err")"; fi
assert_eq "$(grep -c '^GET /slow/3000$' "$T/origin.log")" 1 "/slow/3000 requests at the origin"

# --- upstream_response: the edge's own, shorter timer ---
timed_get edge_short /slow/3000
assert_eq "$CODE" 504 "status of /slow/3000 with the edge's upstream_response 1s"
between "$SECS" 0.8 3.5 "504 from the edge"
assert_contains "$(cat "$T/b")" "504" "body of the edge's 504"
log_has edge_short "timed out while waiting for the upstream response" ||
    fail "edge_short logged no upstream timeout: $(tail -n 5 "$T/edge_short.err")"
if log_has reg_long "timed out"; then fail "reg_long timed out: $(tail -n 5 "$T/reg_long.err")"; fi

# the same edges answer a fast request normally: the 504s came from the timers, not a broken path
timed_get edge_pass /hello
assert_eq "$CODE" 200 "status of /hello via edge_pass"
timed_get edge_short /hello
assert_eq "$CODE" 200 "status of /hello via edge_short"

# --- upstream connect: refused -> 502 at once (well before upstream_connect 2s) ---
timed_get edge_refused /hello
assert_eq "$CODE" 502 "status with a refused upstream port"
between "$SECS" 0 1.0 "502 for a refused upstream"
log_has edge_refused "connection refused" ||
    fail "edge_refused logged no refused connect: $(tail -n 5 "$T/edge_refused.err")"

# --- upstream connect: TCP accepted, TLS never answered -> 504 after upstream_connect 1s ---
timed_get edge_silent /hello
assert_eq "$CODE" 504 "status with an upstream that never answers the TLS handshake"
between "$SECS" 0.8 3.5 "504 for a silent upstream"
log_has edge_silent "connect timed out" ||
    fail "edge_silent logged no connect timeout: $(tail -n 5 "$T/edge_silent.err")"

# --- the client scenarios started above ---
for sc in half_head trickle second_head keepalive handshake; do
    rc=0
    wait "${_SC[$sc]}" || rc=$?
    cat "$T/sc.$sc.out"
    [ "$rc" -eq 0 ] || fail "client scenario $sc exited with $rc: $(tail -n 3 "$T/sc.$sc.out")"
done
log_has edge_hs "timed out while TLS handshaking" ||
    fail "edge_hs logged no handshake timeout: $(tail -n 5 "$T/edge_hs.err")"

stop_all
