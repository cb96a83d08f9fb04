"""Bench clients in their own process (so they do not share the server's GIL): raw sockets, minimal parsing.

``fanout HOST PORT N_CONNS STREAMS EXPECTED``: N WebSocket connections subscribe, count frames
until each has EXPECTED; prints the elapsed seconds since the first frame.
``orders HOST PORT FILE CONNS PIPELINE``: send the pre-signed HTTP requests in FILE (NUL-separated
raw HTTP/1.1 requests) over CONNS keep-alive connections, PIPELINE in flight each, from one
thread on epoll; prints elapsed seconds, this process's CPU seconds and the count of 200 answers.
``rtt HOST PORT FILE``: over one WebSocket, send each pre-signed message in FILE (NUL-separated
JSON) and wait for its answer before the next; prints the round trips in µs and the first error.
"""

from __future__ import annotations

import base64
import os
import selectors
import socket
import sys
import threading
import time

import orjson


def handshake(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return sock


def masked(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as is


def count_frames(sock: socket.socket, expected: int, out: list[float]) -> None:
    buf = b""
    seen = 0
    first = 0.0
    while seen < expected:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        if not first:
            first = time.perf_counter()
        buf += chunk
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if len(buf) - pos < head + n:
                break
            if buf[pos] & 0x0F == 1:
                seen += 1
            pos += head + n
        buf = buf[pos:]
    out.append(first)
    out.append(time.perf_counter())
    out.append(seen)


def fanout(host: str, port: int, conns: int, streams: list[str], expected: int) -> None:
    socks = [handshake(host, port) for _ in range(conns)]
    for s in socks:
        s.sendall(masked(orjson.dumps({"method": "SUBSCRIBE", "params": streams})))
    print("subscribed", flush=True)
    results: list[list[float]] = [[] for _ in socks]
    threads = [threading.Thread(target=count_frames, args=(s, expected, r)) for s, r in zip(socks, results, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start = min(r[0] for r in results if r[0])
    end = max(r[1] for r in results)
    total = sum(int(r[2]) for r in results)
    print(orjson.dumps({"seconds": end - start, "frames": total}).decode(), flush=True)


def orders(host: str, port: int, path: str, conns: int, pipeline: int) -> None:
    """One thread, non-blocking sockets on epoll: each connection keeps ``pipeline`` requests in flight.

    One thread, not one per connection: 64 threads handing the GIL around cost the
    client ~2x the CPU per request, on the same two cores the server runs on. A
    connection's next requests go out in one ``send`` as soon as answers make room.
    """
    with open(path, "rb") as f:
        requests = [r for r in f.read().split(b"\0") if r]
    selector = selectors.DefaultSelector()
    state: dict[int, _Orders] = {}
    errors: list[str] = []
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(conns):
        mine = requests[i::conns]
        if not mine:
            continue
        sock = socket.create_connection((host, port))
        sock.setblocking(False)
        conn = state[sock.fileno()] = _Orders(sock, mine)
        conn.refill(pipeline)
        selector.register(sock, selectors.EVENT_READ)
    ok = 0
    while state:
        for key, _ in selector.select():
            conn = state[key.fd]
            ok += conn.read(errors)
            if conn.received == len(conn.requests):
                selector.unregister(conn.sock)
                conn.sock.close()
                del state[key.fd]
            else:
                conn.refill(pipeline)
    print(orjson.dumps({"seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, "ok": ok,
                        "sent": len(requests), "first_error": errors[0] if errors else None}).decode(), flush=True)


class _Orders:
    """One keep-alive connection of the ``orders`` client: its requests, what went out, what came back."""

    def __init__(self, sock: socket.socket, requests: list[bytes]) -> None:
        self.sock = sock
        self.requests = requests
        self.sent = self.received = 0
        self.buf = b""

    def refill(self, pipeline: int) -> None:
        """Send the next requests up to ``pipeline`` in flight (blocking briefly only if the kernel buffer is full)."""
        top = min(len(self.requests), self.received + pipeline)
        if top <= self.sent:
            return
        data = b"".join(self.requests[self.sent:top])
        self.sent = top
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.sock.setblocking(True)
            self.sock.sendall(data[sent:])
            self.sock.setblocking(False)

    def read(self, errors: list[str]) -> int:
        """Take what arrived; count the complete answers, return how many were 200."""
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return 0
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf = self.buf + chunk if self.buf else chunk
        ok = pos = 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            at = buf.find(b"content-length:", pos, end)
            length = int(buf[at + 15:buf.index(b"\r\n", at)])
            if len(buf) < end + 4 + length:
                break
            if buf.startswith(b"HTTP/1.1 200", pos):
                ok += 1
            elif not errors:
                errors.append(buf[end + 4:end + 4 + length].decode(errors="replace"))
            pos = end + 4 + length
            self.received += 1
        self.buf = buf[pos:]
        return ok


def next_frame(sock: socket.socket, buf: bytearray) -> bytes:
    """The payload of the next text frame (the server sends no other kind here), read into ``buf`` as needed."""
    while True:
        if len(buf) >= 2:
            n, head = buf[1] & 0x7F, 2
            if n == 126 and len(buf) >= 4:
                n, head = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127 and len(buf) >= 10:
                n, head = int.from_bytes(buf[2:10], "big"), 10
            if (n < 126 or head > 2) and len(buf) >= head + n:  # a complete frame (its length known and there)
                payload = bytes(buf[head:head + n])
                del buf[:head + n]
                return payload
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk


def rtt(host: str, port: int, path: str) -> None:
    with open(path, "rb") as f:
        messages = [m for m in f.read().split(b"\0") if m]
    sock = handshake(host, port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    rtts: list[float] = []
    error = None
    for message in messages:
        frame = masked(message)
        start = time.perf_counter()
        sock.sendall(frame)
        reply = next_frame(sock, buf)
        rtts.append((time.perf_counter() - start) * 1e6)
        if error is None and b'"result"' not in reply:
            error = reply.decode(errors="replace")
    sock.close()
    print(orjson.dumps({"rtts_us": rtts, "first_error": error}).decode(), flush=True)


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "fanout":
        fanout(host, port, int(sys.argv[4]), sys.argv[5].split(","), int(sys.argv[6]))
    elif mode == "rtt":
        rtt(host, port, sys.argv[4])
    else:
        orders(host, port, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
