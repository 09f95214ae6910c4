#!/usr/bin/env python3
"""Helpers for 97_tunnel.sh (not a test by itself: run.sh runs only NN_*.sh).

  tunnel_helpers.py echo PORTFILE
      plain TCP service: reads until EOF, then answers "got N bytes sha256 HEX\\n" followed by the
      bytes it got, and closes; so an answer arrives only if the client's half-close got through.
  tunnel_helpers.py peer PORTFILE CERT KEY
      a fake tunnel peer (TLS, no client certificate asked): answers CONNECT split200.test:443 with a
      200 head cut into three writes followed by "banner-from-peer\\n" and a close, and CONNECT
      slow.test:443 with "429 Slow Down" cut into three writes, and CONNECT speak.test:443 with a 200
      and "banner-from-peer\\n" in one write, keeping the connection open until the client closes.
  tunnel_helpers.py client PROXY_PORT TARGET MODE
      a CONNECT client through a proxy. MODE halfclose: sends 1 MiB, shuts its write side, prints
      what came back (checked against the echo service's answer). MODE raw: prints everything
      received until EOF. MODE banner: waits (5 s at most) for "banner-from-peer\\n" without sending
      anything. MODE idle: after the 200, sends nothing and prints how long until the proxy closed.
"""
import hashlib
import os
import socket
import ssl
import sys
import threading
import time


def listen(portfile):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("tcp %d\n" % s.getsockname()[1])
    os.rename(tmp, portfile)
    return s


def echo_conn(c):
    data = bytearray()
    while True:
        b = c.recv(65536)
        if not b:
            break
        data += b
    c.sendall(b"got %d bytes sha256 %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()))
    c.sendall(bytes(data))
    c.close()


def read_head(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = c.recv(4096)
        if not b:
            return None
        buf += b
    return buf


def peer_conn(ctx, raw):
    try:
        c = ctx.wrap_socket(raw, server_side=True)
        head = read_head(c)
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"CONNECT split200.test:443 "):
            parts = [b"HTTP/1.1 200 Conn", b"ection Established\r\n", b"\r\nbanner-from-peer\n"]
        elif line.startswith(b"CONNECT speak.test:443 "):
            # the service's first bytes come with the answer head: nothing else will arrive to push them
            c.sendall(b"HTTP/1.1 200 OK\r\n\r\nbanner-from-peer\n")
            while c.recv(4096):
                pass
            c.close()
            return
        elif line.startswith(b"CONNECT slow.test:443 "):
            parts = [b"HTTP/1.1 42", b"9 Slow Down\r\nContent-Le", b"ngth: 0\r\n\r\n"]
        else:
            parts = [b"HTTP/1.1 500 Unexpected\r\nContent-Length: 0\r\n\r\n"]
        for p in parts:
            c.sendall(p)
            time.sleep(0.1)
        try:
            c.unwrap()
        except (OSError, ssl.SSLError):
            pass
        c.close()
    except (OSError, ssl.SSLError):
        pass


def serve(s, handler):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def client(port, target, mode):
    c = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    c.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
    if mode == "raw":
        out = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            out += b
        sys.stdout.buffer.write(out)
        return 0
    if mode == "banner":
        c.settimeout(5)
        out = b""
        try:
            while b"banner-from-peer\n" not in out:
                b = c.recv(4096)
                if not b:
                    break
                out += b
        except socket.timeout:
            pass
        sys.stdout.buffer.write(out)
        return 0 if b"banner-from-peer\n" in out else 1
    head = read_head(c)
    if mode == "idle":
        t0 = time.monotonic()
        while c.recv(4096):
            pass
        print("closed after %.1f s; head %r" % (time.monotonic() - t0, head.split(b"\r\n", 1)[0]))
        return 0
    if head is None or not head.startswith(b"HTTP/1.1 200 "):
        print("no 200 to CONNECT: %r" % head)
        return 1
    rest = head.split(b"\r\n\r\n", 1)[1]
    payload = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)  # half-close: the service answers only after it sees our EOF
    out = rest
    while True:
        b = c.recv(65536)
        if not b:
            break
        out += b
    want = b"got %d bytes sha256 %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
    if out != want + payload:
        print("half-close: got %d bytes back, first line %r; want %r + the payload" %
              (len(out), out.split(b"\n", 1)[0], want))
        return 1
    print("half-close ok: %d bytes back" % len(out))
    return 0


def main():
    mode = sys.argv[1]
    if mode == "echo":
        serve(listen(sys.argv[2]), echo_conn)
    elif mode == "peer":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        serve(listen(sys.argv[2]), lambda raw: peer_conn(ctx, raw))
    elif mode == "client":
        sys.exit(client(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
