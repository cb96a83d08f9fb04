"""The FIX load generator for ``bench.fix_bench`` (a separate process: the acceptor keeps its core).

``python -m bench.fix_client MODE HOST PORT SENDER TARGET KEY_HEX API_KEY N`` logs on
with a signed Logon, then:

* ``pipelined``: N non-crossing limit orders, at most ``WINDOW`` without their
  ExecutionReport; prints ``{"orders": N, "seconds": s, "cpu_s": this process's CPU time}``;
* ``rtt``: N orders one at a time; prints ``{"rtt_us": [...]}``.

Plain blocking sockets and pre-encoded messages, so the client costs little.
"""

from __future__ import annotations

import socket
import sys
import time

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.fix.auth import sign_logon
from adapters.fix.codec import Timestamps, encode_body, frame_message

WINDOW = 100
ER = b"\x0135=8\x01"
REJECTED = b"\x01150=8\x01"  # no order here may be refused (the rate limit, the open-order cap): it would count


def main(argv: list[str]) -> None:
    mode, host, port, sender, target, key_hex, api_key, n = argv
    count = int(n)
    times = Timestamps()
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    now = times.millis(time.time_ns() // 1000)
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex))
    signature = sign_logon(key, sender, target, 1, now)
    header = [(34, "1"), (49, sender), (52, now), (56, target)]
    sock.sendall(frame_message("A", header, encode_body(
        [(98, "0"), (108, "30"), (95, str(len(signature))), (96, signature), (141, "Y"), (553, api_key)])))
    buffer = b""
    while b"\x0135=A\x01" not in buffer:
        buffer += sock.recv(65536)
    orders = []
    for i in range(count):
        seq = i + 2
        body = [(11, f"c{i}"), (38, "0.02"), (40, "2"), (44, "90" if i % 2 else "110"), (54, "1" if i % 2 else "2"),
                (55, "SOL_USDC"), (59, "1"), (60, now)]
        orders.append(frame_message("D", [(34, str(seq)), (49, sender), (52, now), (56, target)], encode_body(body)))
    if mode == "pipelined":
        cpu_started = time.process_time()
        result = pipelined(sock, orders)
        print(orjson.dumps({**result, "cpu_s": time.process_time() - cpu_started}).decode(), flush=True)
    else:
        print(orjson.dumps(rtt(sock, orders)).decode(), flush=True)
    sock.close()


def pipelined(sock: socket.socket, orders: list[bytes]) -> dict[str, float]:
    sent = acked = 0
    tail = b""
    started = time.perf_counter()
    while acked < len(orders):
        if sent < len(orders) and sent - acked < WINDOW:
            batch = orders[sent:min(len(orders), acked + WINDOW)]
            sock.sendall(b"".join(batch))
            sent += len(batch)
        data = sock.recv(1 << 20)
        if not data:
            raise SystemExit("acceptor closed the connection")
        chunk = tail + data
        if REJECTED in chunk:
            raise SystemExit(f"an order was rejected: {chunk[-400:]!r}")
        acked += chunk.count(ER)
        tail = chunk[-8:]
        acked -= tail.count(ER)  # counted again with the next chunk
    return {"orders": len(orders), "seconds": time.perf_counter() - started}


def rtt(sock: socket.socket, orders: list[bytes]) -> dict[str, list[float]]:
    out = []
    for order in orders:
        started = time.perf_counter_ns()
        sock.sendall(order)
        data = b""
        while ER not in data:
            chunk = sock.recv(65536)
            if not chunk:  # else this loop spins on a closed socket forever
                raise SystemExit(f"acceptor closed the connection: {data[-200:]!r}")
            data += chunk
        if REJECTED in data:
            raise SystemExit(f"an order was rejected: {data[-400:]!r}")
        out.append((time.perf_counter_ns() - started) / 1000)
    return {"rtt_us": out}


if __name__ == "__main__":
    main(sys.argv[1:])
