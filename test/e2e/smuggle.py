#!/usr/bin/env python3
"""Raw-bytes request corpus for test/e2e/42_smuggling.sh.

usage: smuggle.py TLS_PORT PLAIN_PORT CA_FILE ORIGIN_LOG HOST

Every case is sent as raw bytes on a fresh connection, over TLS and over plain HTTP, to the edge. A case
says which status the FIRST response must have (or a set of acceptable ones), whether the edge must
close the connection after it, and exactly which requests ("METHOD TARGET" lines) the origin may log
because of it. Anything else that reaches the origin is a request the edge did not mean to send: a
smuggled request. Prints one line per failure and exits 1 if there was any.
"""
import re
import socket
import ssl
import sys
import time

TLS_PORT, PLAIN_PORT, CA, ORIGIN_LOG, HOST = sys.argv[1:6]
H = b"Host: " + HOST.encode() + b"\r\n"


def case(name, raw, status, close=True, origin=(), responses=None):
    return dict(name=name, raw=raw, status=status, close=close, origin=None if origin is None else list(origin), responses=responses)


BIG_LINE = b"GET /" + b"a" * (64 * 1024) + b" HTTP/1.1\r\n" + H + b"\r\n"
BIG_HEADERS = b"GET /hello HTTP/1.1\r\n" + H + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(1024)) + b"\r\n"
MANY_HEADERS = b"GET /hello HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(10000)) + b"\r\n"

CASES = [
    # framing: the edge must never guess where a body ends
    case("CL and TE together", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 400),
    case("two different Content-Lengths", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 400),
    case("Content-Length list 5, 5", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", {200, 400}, close=None, origin=None),
    case("Content-Length +5", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    case("Content-Length -1", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nhello", 400),
    case("Content-Length 5x", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\nhello", 400),
    case("Content-Length 0x5", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    case("Content-Length with inner space", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1 0\r\n\r\nhellohello", 400),
    case("Content-Length overflow", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\nhello", 400),
    case("TE chunked, identity", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", {400, 501}),
    case("TE xchunked", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}),
    case("TE chunked twice in one list", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    case("TE in two header lines", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    case("TE with a tab before the value", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, close=False, origin=["POST /echo"]),
    case("TE name with a leading space (continuation)", b"POST /echo HTTP/1.1\r\n" + H + b" Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    case("TE obs-fold", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    case("TE on HTTP/1.0", b"POST /echo HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    case("chunk size overflow", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, origin=None),
    case("chunk size junk", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, origin=None),
    case("chunk size with a sign", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400, origin=None),
    case("chunk without CRLF after data", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", None, origin=None),
    # line endings and bytes
    case("bare LF", b"GET /hello HTTP/1.1\n" + H + b"\r\n", 400),
    case("bare LF in headers", b"GET /hello HTTP/1.1\r\nHost: " + HOST.encode() + b"\nX: y\r\n\r\n", 400),
    case("bare CR", b"GET /hello HTTP/1.1\r" + H + b"\r\n", 400),
    case("NUL in a header value", b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    case("control byte in a header value", b"GET /hello HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    case("NUL in a header name", b"GET /hello HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n", 400),
    case("NUL in the target", b"GET /hel\x00lo HTTP/1.1\r\n" + H + b"\r\n", 400),
    case("space in the target", b"GET /hel lo HTTP/1.1\r\n" + H + b"\r\n", 400),
    case("DEL in the target", b"GET /hel\x7flo HTTP/1.1\r\n" + H + b"\r\n", 400),
    case("space before the colon", b"GET /hello HTTP/1.1\r\nHost : " + HOST.encode() + b"\r\n\r\n", 400),
    case("invalid method token", b"G(T /hello HTTP/1.1\r\n" + H + b"\r\n", 400),
    case("invalid header name token", b"GET /hello HTTP/1.1\r\n" + H + b"X[A]: b\r\n\r\n", 400),
    case("empty header name", b"GET /hello HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    # Host
    case("missing Host", b"GET /hello HTTP/1.1\r\n\r\n", 400),
    case("two Host headers", b"GET /hello HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", 400),
    case("Host with userinfo", b"GET /hello HTTP/1.1\r\nHost: a@" + HOST.encode() + b"\r\n\r\n", 400),
    # RFC 9112 3.2.2: the target's authority wins over Host; other.test is not mapped here
    case("absolute-form that disagrees with Host", b"GET http://other.test/hello HTTP/1.1\r\n" + H + b"\r\n", 404, close=None, origin=[]),
    case("absolute-form that agrees with Host", b"GET http://" + HOST.encode() + b"/hello HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n", 200, origin=["GET /hello"]),
    # versions
    case("HTTP/0.9", b"GET /hello\r\n\r\n", 400),
    case("HTTP/1.2", b"GET /hello HTTP/1.2\r\n" + H + b"\r\n", {400, 505}),
    case("HTTP/2.0 in an HTTP/1 request line", b"GET /hello HTTP/2.0\r\n" + H + b"\r\n", {400, 505}),
    case("HTTP/1.10", b"GET /hello HTTP/1.10\r\n" + H + b"\r\n", {400, 505}),
    case("lower-case http version", b"GET /hello http/1.1\r\n" + H + b"\r\n", 400),
    # sizes
    case("64 KiB request line", BIG_LINE, {414, 431}),
    case("1 MiB of headers", BIG_HEADERS, 431),
    case("10000 headers", MANY_HEADERS, 431),
    # pipelining and bodies
    case("GET with a body hiding a request", b"GET /hello HTTP/1.1\r\n" + H + b"Content-Length: 39\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: cdn.test\r\n\r\n", 200, close=None, origin=["GET /hello"]),
    case("a good request, then a smuggled one after a bad one", b"GET /hello HTTP/1.1\r\n" + H + b"\r\nGET /x HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 200, origin=["GET /hello"], responses=2),
    case("Expect: 100-continue", b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", {100, 200}, origin=["POST /echo"]),
    case("POST without a length has no body", b"POST /echo HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", 200, origin=["POST /echo"]),
    case("POST without a length, bytes after it", b"POST /echo HTTP/1.1\r\n" + H + b"\r\nhello world\r\n\r\n", 200, origin=["POST /echo"], responses=2),
]


def connect(tls):
    s = socket.create_connection(("127.0.0.1", int(TLS_PORT if tls else PLAIN_PORT)), timeout=10)
    if tls:
        ctx = ssl.create_default_context(cafile=CA)
        ctx.check_hostname = False
        s = ctx.wrap_socket(s, server_hostname=HOST)
    return s


def exchange(tls, raw):
    """Sends raw, reads until the server closes (closed=True) or 1.5 s pass without a byte."""
    s = connect(tls)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass  # the edge may answer and close before it read everything
    s.settimeout(1.5)
    data, closed = b"", False
    while True:
        try:
            k = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, ssl.SSLError):
            closed = True
            break
        if not k:
            closed = True
            break
        data += k
    s.close()
    return data, closed


def origin_lines():
    with open(ORIGIN_LOG, "rb") as f:
        return [l.decode("latin-1").split(" ")[:2] for l in f.read().splitlines()]


failures = []
for tls in (True, False):
    for c in CASES:
        where = "%s over %s" % (c["name"], "TLS" if tls else "plain HTTP")
        before = len(origin_lines())
        data, closed = exchange(tls, c["raw"])
        time.sleep(0.05)
        after = origin_lines()[before:]
        statuses = [int(m) for m in re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", data)]
        first = statuses[0] if statuses else None
        want = c["status"]
        if want is not None:
            ok = first in want if isinstance(want, set) else first == want
            if not ok:
                failures.append("%s: status %s, want %s; got %r" % (where, first, want, data[:200]))
        if c["close"] is True and not closed:
            failures.append("%s: the connection stayed open" % where)
        if c["close"] is False and closed:
            failures.append("%s: the connection was closed" % where)
        if c["responses"] is not None:
            finals = [x for x in statuses if x >= 200]
            if len(finals) != c["responses"]:
                failures.append("%s: %d final responses, want %d (%s)" % (where, len(finals), c["responses"], statuses))
        if c["origin"] is not None:
            got = [" ".join(x) for x in after]
            if got != c["origin"]:
                failures.append("%s: the origin received %s, want %s" % (where, got, c["origin"]))
        for x in after:  # whatever the case, a smuggled request never arrives
            if "/smuggled" in " ".join(x):
                failures.append("%s: SMUGGLED request reached the origin: %s" % (where, x))

for f in failures:
    print(f)
print("%d cases x 2 transports, %d failures" % (len(CASES), len(failures)))
sys.exit(1 if failures else 0)
