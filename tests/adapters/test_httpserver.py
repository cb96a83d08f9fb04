"""The lean HTTP/1.1 server over real sockets: keep-alive, pipelining, limits, timeouts, malformed input."""

from __future__ import annotations

import contextlib
import ssl
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio
import trio.lowlevel

from adapters.admission import Admission
from adapters.httpserver import MAX_HEAD_BYTES, HttpServer, Later, Limits, Request, Response
from adapters.rest import JSON_TYPE, error_response, serve_http
from adapters.tls import server_context
from tests.adapters import tls_certs
from tests.adapters.tls_certs import make_pki

WANTED = {b"x-api-key": "x-api-key"}
NUMBERS = b"".join(b"%08d\n" % i for i in range(500_000))  # 4.5 MB, every line different: a lost or repeated piece shows


async def echo(request: Request) -> Response:
    """Answers with what the server parsed, so tests can check it."""
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    if request.path == "/slow":
        await trio.sleep(0.05)
    if request.path == "/big":
        return 200, b"x" * 4_000_000, JSON_TYPE
    if request.path == "/numbers":
        return 200, NUMBERS, JSON_TYPE
    body = orjson.dumps({"method": request.method, "path": request.path, "query": request.query.decode(),
                         "headers": request.headers, "body": request.body.decode()})
    return 200, body, JSON_TYPE


async def start(nursery: trio.Nursery, limits: Limits | None = None, server: HttpServer | None = None) -> trio.SocketStream:
    server = server or HttpServer(echo, error_response, WANTED, limits or Limits(max_body_bytes=100))
    bound = await nursery.start(partial(serve_http, server, "127.0.0.1:0"))
    host, port = bound.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    nursery.start_soon(close_at_end, stream)
    return stream


async def close_at_end(stream: trio.SocketStream) -> None:
    """Closes the client's socket when the test cancels its nursery."""
    try:
        await trio.sleep_forever()
    finally:
        stream.socket.close()


async def read_answer(stream: trio.abc.ReceiveStream, buffer: bytearray) -> tuple[bytes, bytes]:
    """One answer (head, body) from ``buffer`` plus whatever the stream sends."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, f"connection closed with {bytes(buffer)!r} buffered"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        assert chunk
        rest += chunk
    buffer[:] = rest[length:]
    return head, rest[:length]


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async with trio.open_nursery() as nursery:
        stream = await start(nursery)
        requests = b"".join(
            f"POST /slow?i={i} HTTP/1.1\r\nHost: x\r\nX-API-Key: k{i}\r\nx-api-key: dup\r\nContent-Length: 2\r\n\r\n{i:02d}".encode()
            for i in range(5)
        )
        await stream.send_all(requests[:37])  # a request split anywhere still parses
        await stream.send_all(requests[37:])
        buffer = bytearray()
        for i in range(5):
            head, body = await read_answer(stream, buffer)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"date: " in head and b"connection: close" not in head
            assert orjson.loads(body) == {"method": "POST", "path": "/slow", "query": f"i={i}",
                                          "headers": {"x-api-key": f"k{i}", "content-length": "2"}, "body": f"{i:02d}"}
        await stream.send_all(b"GET /a%20b%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await read_to_eof(stream)
        assert b"connection: close" in data and orjson.loads(data.partition(b"\r\n\r\n")[2])["path"] == "/a b\u00e9"
        nursery.cancel_scope.cancel()


async def test_chunked_body_and_http_1_0() -> None:
    async with trio.open_nursery() as nursery:
        stream = await start(nursery)
        await stream.send_all(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        _, body = await read_answer(stream, bytearray())
        assert orjson.loads(body)["body"] == "abcde"
        await stream.send_all(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"connection: close" in await read_to_eof(stream)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("request_bytes", "status", "reason"), [
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413, b"Body too large: limit is 100 bytes"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"a" * 64 + b"\r\n40\r\n" + b"a" * 64,
     413, b"Body too large"),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10), 431, b"Request head too large"),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400, b"Malformed HTTP request"),
    (b"NOT HTTP AT ALL\r\n\r\n", 400, b"Malformed HTTP request"),
    (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 400, b"upgrades are not supported"),
])
async def test_refusals_answer_then_close(request_bytes: bytes, status: int, reason: bytes) -> None:
    """Complete requests before the bad one are answered first; the refusal is JSON and closes."""
    async with trio.open_nursery() as nursery:
        stream = await start(nursery)
        await stream.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + request_bytes)
        buffer = bytearray()
        _, first = await read_answer(stream, buffer)
        assert orjson.loads(first)["path"] == "/first"
        refusal = bytes(buffer) + await read_to_eof(stream)
        assert refusal.startswith(b"HTTP/1.1 %d " % status) and b"connection: close" in refusal
        answer = orjson.loads(refusal.partition(b"\r\n\r\n")[2])
        assert answer["code"] == "INVALID_CLIENT_REQUEST" and reason in answer["message"].encode()
        nursery.cancel_scope.cancel()


async def test_handler_failure_is_a_500_and_the_connection_lives() -> None:
    async with trio.open_nursery() as nursery:
        stream = await start(nursery)
        await stream.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nHEAD /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        head, body = await read_answer(stream, buffer)
        assert head.startswith(b"HTTP/1.1 500") and orjson.loads(body)["code"] == "SERVER_ERROR"
        while b"\r\n\r\n" not in buffer:  # HEAD: the length of the body, but no body
            buffer += await stream.receive_some(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and not rest.startswith(b"{")
        _, body = await read_answer(stream, bytearray(rest))
        assert orjson.loads(body)["path"] == "/ok"
        nursery.cancel_scope.cancel()


async def test_idle_and_slow_clients_are_cut_off() -> None:
    limits = Limits(max_body_bytes=100, keep_alive_s=0.2, request_timeout_s=0.2)
    async with trio.open_nursery() as nursery:
        idle = await start(nursery, limits)
        assert await read_to_eof(idle) == b""  # idle keep-alive: closed without a word
        slow = await start(nursery, limits)
        await slow.send_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        data = await read_to_eof(slow)
        assert data.startswith(b"HTTP/1.1 408") and b"Request not completed in time" in data
        nursery.cancel_scope.cancel()


async def test_a_request_that_trickles_in_gets_408_counted_from_its_first_byte() -> None:
    """A slowloris sends a byte well within every gap: the deadline still falls where the first byte set it."""
    limits = Limits(request_timeout_s=1.5)
    async with trio.open_nursery() as nursery:
        slow = await start(nursery, limits)
        head = b"GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40
        started = trio.current_time()

        async def trickle() -> None:
            for byte in head:
                await slow.send_all(bytes([byte]))
                await trio.sleep(0.3)

        nursery.start_soon(trickle)
        with trio.fail_after(10):
            data = await read_to_eof(slow)
        assert data.startswith(b"HTTP/1.1 408") and trio.current_time() - started < 3.5
        nursery.cancel_scope.cancel()


async def test_one_address_cannot_take_every_connection_slot() -> None:
    server = HttpServer(echo, error_response, WANTED, Limits())
    server.admission = Admission(total=100, per_peer=2)
    async with trio.open_nursery() as nursery:
        first = await start(nursery, server=server)
        second = await trio.open_tcp_stream(*server_address(first))
        third = await trio.open_tcp_stream(*server_address(first))
        nursery.start_soon(close_at_end, third)
        with trio.fail_after(5):
            data = await read_to_eof(third)
        assert data.startswith(b"HTTP/1.1 503") and b"too many connections from 127.0.0.1 (at most 2)" in data
        await second.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")  # the two it holds still work
        head, _ = await read_answer(second, bytearray())
        assert head.startswith(b"HTTP/1.1 200")
        await second.aclose()
        with trio.fail_after(5):
            while server.connections > 1:  # noqa: ASYNC110 - polling the server's own count
                await trio.sleep(0.02)
        fourth = await trio.open_tcp_stream(*server_address(first))  # a freed slot is taken again
        nursery.start_soon(close_at_end, fourth)
        await fourth.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = await read_answer(fourth, bytearray())
        assert head.startswith(b"HTTP/1.1 200")
        assert server.admission.by_peer == {"127.0.0.1": 2}
        nursery.cancel_scope.cancel()


def server_address(client: trio.SocketStream) -> tuple[str, int]:
    host, port = client.socket.getpeername()[:2]
    return host, port


async def test_chunk_extensions_count_toward_the_body_limit() -> None:
    """One-byte chunks carrying 60 KB extensions: the body stays tiny, the bytes read do not."""
    async with trio.open_nursery() as nursery:
        stream = await start(nursery)  # max_body_bytes 100
        await stream.send_all(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"1;e=" + b"v" * 60_000 + b"\r\nx\r\n"

        async def flood() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for _ in range(200):  # 12 MB, if nothing stops it
                    await stream.send_all(chunk)

        nursery.start_soon(flood)
        with trio.fail_after(10):
            data = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 413") and b"with its framing" in data
        nursery.cancel_scope.cancel()


async def test_a_client_that_does_not_read_is_disconnected() -> None:
    server = HttpServer(echo, error_response, WANTED, Limits(send_timeout_s=0.2))
    async with trio.open_nursery() as nursery:
        stream = await start(nursery, server=server)
        await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 8)  # 32 MB of answers, never read
        await stream.receive_some(1)  # the server is answering
        assert server.connections == 1
        with trio.fail_after(5):
            while server.connections:  # noqa: ASYNC110 - polling the server's own count
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with trio.open_nursery() as nursery:
        stream = await start(nursery)
        await stream.send_all(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        with trio.fail_after(5):
            assert await stream.receive_some(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        await stream.send_all(b"abc")
        _, body = await read_answer(stream, bytearray())
        assert orjson.loads(body)["body"] == "abc"
        nursery.cancel_scope.cancel()


class Orders:
    """A begin hook: ``POST /order`` is begun (answered later, in reverse order), ``POST /bad`` is refused at once,
    a run starting with ``POST /bug`` raises; it records the runs it was offered."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self.later: list[tuple[Later, bytes]] = []

    async def begin(self, requests: list[Request]) -> list[Response | Later]:
        self.runs.append([r.path + "?" + r.query.decode() for r in requests])
        out: list[Response | Later] = []
        if requests[0].path == "/bug":
            raise RuntimeError("begin bug")
        for request in requests:
            if request.method != "POST" or request.path not in ("/order", "/bad"):
                break
            if request.path == "/bad":
                out.append((400, b'{"bad":true}', JSON_TYPE))
                continue
            later = Later()
            self.later.append((later, request.query))
            out.append(later)
        if self.later:
            await trio.lowlevel.checkpoint()
        return out

    async def fill_all(self) -> None:
        """Answer every begun order, newest first (the server must still send them in request order)."""
        while True:
            await trio.sleep(0.01)
            while self.later:
                later, query = self.later.pop()
                later.fill((200, b'{"order":"' + query + b'"}', JSON_TYPE))


async def test_begun_requests_are_offered_together_and_answered_in_order() -> None:
    orders = Orders()
    server = HttpServer(echo, error_response, WANTED, Limits(max_body_bytes=100), begin=orders.begin)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(orders.fill_all)
        stream = await start(nursery, server=server)
        requests = [b"POST /order?1", b"POST /bad?2", b"POST /order?3", b"GET /read?4", b"POST /order?5", b"POST /bug?6",
                    b"POST /order?7"]
        await stream.send_all(b"".join(r + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" for r in requests))
        buffer = bytearray()
        with trio.fail_after(5):
            answers = [await read_answer(stream, buffer) for _ in requests]
        assert [int(head.split(b" ")[1]) for head, _ in answers] == [200, 400, 200, 200, 200, 500, 200]
        assert [orjson.loads(body).get("order") for _, body in answers] == ["1", None, "3", None, "5", None, "7"]
        assert orjson.loads(answers[3][1])["path"] == "/read"  # run by the handler, after the orders before it
        assert orders.runs[0][:4] == ["/order?1", "/bad?2", "/order?3", "/read?4"]  # offered together, up to the GET
        nursery.cancel_scope.cancel()


# --- https -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tls_certs.TestPki:
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


def https_server(pki: tls_certs.TestPki, limits: Limits | None = None) -> HttpServer:
    tls = server_context("rest", str(pki.cert_file), str(pki.key_file))
    return HttpServer(echo, error_response, WANTED, limits or Limits(max_body_bytes=100), tls=tls)


async def start_https(nursery: trio.Nursery, server: HttpServer) -> tuple[str, int]:
    bound = await nursery.start(partial(serve_http, server, "127.0.0.1:0"))
    host, port = bound.rsplit(":", 1)
    return host, int(port)


async def tls_client(nursery: trio.Nursery, address: tuple[str, int], pki: tls_certs.TestPki) -> trio.SSLStream[trio.SocketStream]:
    """Python's TLS client trusting the test CA; it insists on close_notify at the end (https_compatible off)."""
    stream = await trio.open_tcp_stream(*address)
    nursery.start_soon(close_at_end, stream)
    return trio.SSLStream(stream, ssl.create_default_context(cafile=str(pki.ca_file)), server_hostname="localhost")


async def test_https_answers_in_order_and_a_large_answer_to_a_slow_reader_arrives_intact(pki: tls_certs.TestPki) -> None:
    async with trio.open_nursery() as nursery:
        address = await start_https(nursery, https_server(pki))
        client = await tls_client(nursery, address, pki)
        with trio.fail_after(20):
            await client.send_all(b"GET /numbers HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"POST /after?i=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
            await trio.sleep(0.5)  # not reading: the server's writes fill the socket buffers and wait
            buffer = bytearray()
            head, body = await read_answer(client, buffer)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == NUMBERS
            _, after = await read_answer(client, buffer)
            assert orjson.loads(after) == {"method": "POST", "path": "/after", "query": "i=1",
                                           "headers": {"content-length": "2"}, "body": "ok"}
            await client.send_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await read_to_eof(client)  # ends with the server's close_notify, or trio raises BrokenResourceError
        assert b"connection: close" in data and orjson.loads(data.partition(b"\r\n\r\n")[2])["path"] == "/last"
        assert client.selected_alpn_protocol() is None and client.version() in ("TLSv1.2", "TLSv1.3")
        nursery.cancel_scope.cancel()


async def test_plaintext_or_broken_tls_closes_that_connection_and_the_next_client_is_served(pki: tls_certs.TestPki) -> None:
    server = https_server(pki)
    async with trio.open_nursery() as nursery:
        address = await start_https(nursery, server)
        with trio.fail_after(10):
            plain = await trio.open_tcp_stream(*address)
            nursery.start_soon(close_at_end, plain)
            await plain.send_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(trio.BrokenResourceError):  # a reset is as good as an end
                assert b"HTTP/1.1" not in await read_to_eof(plain)
            broken = await tls_client(nursery, address, pki)
            await broken.do_handshake()
            await broken.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # a record that fails its MAC
            with pytest.raises(trio.BrokenResourceError):
                await read_to_eof(broken)
            client = await tls_client(nursery, address, pki)
            await client.send_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            _, body = await read_answer(client, bytearray())
            assert orjson.loads(body)["path"] == "/next"
            assert server.connections == 1
        nursery.cancel_scope.cancel()


async def test_a_tls_handshake_that_trickles_in_is_cut_off_at_the_request_timeout(pki: tls_certs.TestPki) -> None:
    """Without a complete handshake, the deadline falls at accept + request_timeout_s, not at each byte's keep-alive."""
    server = https_server(pki, Limits(keep_alive_s=60, request_timeout_s=1.0))
    async with trio.open_nursery() as nursery:
        address = await start_https(nursery, server)
        stream = await trio.open_tcp_stream(*address)
        nursery.start_soon(close_at_end, stream)
        started = trio.current_time()

        async def trickle() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for byte in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 30:  # a ClientHello's start
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(0.2)

        nursery.start_soon(trickle)
        with trio.fail_after(10):
            with contextlib.suppress(trio.BrokenResourceError):
                assert await read_to_eof(stream) == b""
            assert trio.current_time() - started < 3
            while server.connections:  # noqa: ASYNC110 - polling the server's own count
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_https_admission_counts_the_real_peer_and_closes_the_excess_without_a_handshake(pki: tls_certs.TestPki) -> None:
    server = https_server(pki)
    server.admission = Admission(total=100, per_peer=2)
    async with trio.open_nursery() as nursery:
        address = await start_https(nursery, server)
        with trio.fail_after(10):
            first, second = await tls_client(nursery, address, pki), await tls_client(nursery, address, pki)
            await first.do_handshake()
            await second.do_handshake()
            third = await trio.open_tcp_stream(*address)
            nursery.start_soon(close_at_end, third)
            with contextlib.suppress(trio.BrokenResourceError):
                assert await read_to_eof(third) == b""  # no 503 in plaintext on a TLS port: closed
            assert server.admission.by_peer == {"127.0.0.1": 2}
            for client in (first, second):
                await client.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
                head, _ = await read_answer(client, bytearray())
                assert head.startswith(b"HTTP/1.1 200")
        nursery.cancel_scope.cancel()
