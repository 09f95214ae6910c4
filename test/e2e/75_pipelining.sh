#!/usr/bin/env bash
# HTTP/1.x connection handling at the edge, with a raw TLS client that parses every byte:
#   - pipelining: requests sent in one write are answered in order, each body framed correctly
#     (Content-Length, chunked, a request body between two GETs), and the connection stays usable
#   - HTTP/1.0: no keep-alive -> response then close; a chunked upstream body reaches a 1.0 client
#     close-delimited (no Transfer-Encoding); Connection: keep-alive keeps a 1.0 connection open
#   - Connection: close from a 1.1 client: the response says so, the server closes, and a request
#     pipelined behind it is not served
#   - Expect: 100-continue: "HTTP/1.1 100 Continue" arrives before the body is sent, then the echo
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

two_tiers
ep=${EDGE##*:}

cat >"$T/client.py" <<'PY'
import socket, ssl, sys, time

scenario, port, cafile, host = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz"

def die(msg):
    sys.exit("FAIL: %s: %s" % (scenario, msg))

def pattern(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]

class Conn:
    def __init__(self):
        ctx = ssl.create_default_context(cafile=cafile)
        raw = socket.create_connection(("127.0.0.1", port), timeout=8)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.s.settimeout(8)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.s.sendall(data)  # one sendall of one buffer: one write

    def fill(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
            d = b""
        except socket.timeout:
            die("no data within 8 s; buffered: %r" % self.buf[:300])
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def line(self):
        while b"\r\n" not in self.buf:
            if not self.fill():
                die("EOF before a line end; buffered: %r" % self.buf[:300])
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                die("EOF after %d of %d body bytes" % (len(self.buf), n))
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def to_eof(self):
        while self.fill():
            pass
        d, self.buf = self.buf, b""
        return d

    def expect_eof(self, what):
        """The server closes now: nothing more arrives, and EOF comes within 3 s."""
        self.s.settimeout(3)
        try:
            rest = self.to_eof()
        finally:
            self.s.settimeout(8)
        if rest:
            die("%s: bytes after the response: %r" % (what, rest[:300]))

    def response(self, method="GET"):
        """One response: (status, {lower name: [values]}, body, framing)."""
        status_line = self.line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            die("bad status line %r" % status_line)
        status = int(parts[1])
        headers = {}
        while True:
            l = self.line().decode("latin-1")
            if l == "":
                break
            k, sep, v = l.partition(":")
            if not sep:
                die("bad header line %r" % l)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if status < 200 or status in (204, 304) or method == "HEAD":
            return status, headers, b"", "none"
        if "chunked" in te:
            body = b""
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line() != b"":  # trailers
                        pass
                    return status, headers, body, "chunked"
                body += self.exact(size)
                if self.exact(2) != b"\r\n":
                    die("chunk data not followed by CRLF")
        if "content-length" in headers:
            if len(headers["content-length"]) != 1:
                die("several Content-Length headers: %r" % headers["content-length"])
            return status, headers, self.exact(int(headers["content-length"][0])), "length"
        return status, headers, self.to_eof(), "eof"

def hdr(headers, name):
    return ",".join(headers.get(name, [])).lower()

def check(what, got, status, body, framing=None):
    st, h, b, fr = got
    if st != status:
        die("%s: status %d, expected %d (headers %r)" % (what, st, status, h))
    if b != body:
        die("%s: body of %d bytes differs from the expected %d: %r..." % (what, len(b), len(body), b[:80]))
    if framing is not None and fr != framing:
        die("%s: framing %s, expected %s (headers %r)" % (what, fr, framing, h))
    print("%s: %d, %d body bytes, %s" % (what, st, len(b), fr))
    return h

def get(path, version="1.1", extra=""):
    return ("GET %s HTTP/%s\r\nHost: %s\r\n%s\r\n" % (path, version, host, extra)).encode()

if scenario == "pipeline":
    c = Conn()
    c.send(get("/a") + get("/bytes/70000") + get("/chunked/5000"))
    check("pipelined /a", c.response(), 200, b"origin: /a\n", "length")
    check("pipelined /bytes/70000", c.response(), 200, pattern(70000), "length")
    check("pipelined /chunked/5000", c.response(), 200, pattern(5000), "chunked")
    if c.buf:
        die("bytes after the third response: %r" % c.buf[:200])
    # a request body between two GETs, all in one write
    c.send(get("/x") + ("POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 11\r\n\r\nhello world" % host).encode()
           + get("/y"))
    check("pipelined /x", c.response(), 200, b"origin: /x\n")
    check("pipelined POST /echo", c.response(), 200, b"hello world")
    check("pipelined /y", c.response(), 200, b"origin: /y\n")
    # still open and usable
    c.send(get("/b"))
    check("after the pipeline /b", c.response(), 200, b"origin: /b\n")

elif scenario == "http10_close":
    c = Conn()
    c.send(get("/hello", "1.0"))
    check("HTTP/1.0 /hello", c.response(), 200, b"origin: /hello\n", "length")
    c.expect_eof("HTTP/1.0 without keep-alive")
    print("HTTP/1.0 /hello: closed after the response")

elif scenario == "http10_chunked":
    c = Conn()
    c.send(get("/chunked/5000", "1.0"))
    h = check("HTTP/1.0 /chunked/5000", c.response(), 200, pattern(5000), "eof")
    if hdr(h, "transfer-encoding"):
        die("Transfer-Encoding sent to an HTTP/1.0 client: %r" % h)

elif scenario == "http10_keepalive":
    c = Conn()
    c.send(get("/k1", "1.0", "Connection: keep-alive\r\n"))
    h = check("HTTP/1.0 keep-alive /k1", c.response(), 200, b"origin: /k1\n", "length")
    if "keep-alive" not in hdr(h, "connection"):
        die("no Connection: keep-alive in the answer to a 1.0 keep-alive request: %r" % h)
    c.send(get("/k2", "1.0", "Connection: keep-alive\r\n"))
    check("HTTP/1.0 keep-alive /k2 on the same connection", c.response(), 200, b"origin: /k2\n", "length")

elif scenario == "close11":
    c = Conn()
    # a request pipelined behind "Connection: close" must not be served
    c.send(get("/hello", "1.1", "Connection: close\r\n") + get("/never"))
    h = check("HTTP/1.1 Connection: close", c.response(), 200, b"origin: /hello\n", "length")
    if "close" not in hdr(h, "connection"):
        die("no Connection: close in the response: %r" % h)
    c.expect_eof("HTTP/1.1 Connection: close")
    print("HTTP/1.1 Connection: close: closed after the response")

elif scenario == "continue":
    body = bytes((i * 7 + 3) % 256 for i in range(3000))
    c = Conn()
    t0 = time.monotonic()
    c.send(("POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (host, len(body))).encode())
    st, h, b, fr = c.response()
    took = time.monotonic() - t0
    if st != 100:
        die("expected the interim 100 Continue before the body, got %d %r" % (st, h))
    if took > 2:
        die("100 Continue took %.2f s" % took)
    if c.buf:
        die("bytes after the 100 Continue before the body was sent: %r" % c.buf[:200])
    print("100 Continue after %.3f s, before the body" % took)
    c.send(body)
    check("POST /echo after 100 Continue", c.response(), 200, body, "length")
    # the connection stays usable
    c.send(get("/after-continue"))
    check("GET after the 100-continue exchange", c.response(), 200, b"origin: /after-continue\n")

else:
    die("unknown scenario")
PY

client() {
    python3 "$T/client.py" "$1" "$ep" "$PKI/ca.crt" "$EDGE_HOST" || fail "client scenario $1 (see above)"
}

client pipeline
# the origin saw them once each, in order (the edge forwards a pipeline one request at a time)
assert_eq "$(tr '\n' ' ' <"$T/origin.log")" \
    "GET /a GET /bytes/70000 GET /chunked/5000 GET /x POST /echo GET /y GET /b " "requests at the origin"

client http10_close
client http10_chunked
client http10_keepalive

before=$(origin_count)
client close11
assert_eq "$(origin_count)" $((before + 1)) "requests at the origin after Connection: close + a pipelined one"
if grep -q '/never' "$T/origin.log"; then fail "the request pipelined behind Connection: close was forwarded"; fi

client continue

# the same with curl: it waits for the 100 (up to 10 s here), so a quick answer proves it came
head -c 2048 /dev/urandom >"$T/up"
out=$(ecurl -v -o "$T/echo" -w '%{http_code} %{time_total}' --expect100-timeout 10 \
    -H 'Expect: 100-continue' --data-binary @"$T/up" "$EDGE/echo" 2>"$T/curl.err") ||
    fail "curl POST /echo with Expect: 100-continue: exit $?; $(tail -n 5 "$T/curl.err")"
assert_eq "${out% *}" 200 "curl: status of POST /echo with Expect: 100-continue"
awk -v s="${out#* }" 'BEGIN { exit !(s < 5) }' || fail "curl: POST /echo took ${out#* }s (waited for the 100?)"
assert_contains "$(tr -d '\r' <"$T/curl.err")" "< HTTP/1.1 100 Continue" "curl -v output"
assert_eq "$(sha256_of "$T/echo")" "$(sha256_of "$T/up")" "curl: echo of the 100-continue upload"

stop_all
