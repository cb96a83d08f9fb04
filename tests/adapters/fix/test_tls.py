"""FIX over TLS: the acceptor with ``tls_cert``/``tls_key``, against OpenSSL clients (Python's ssl) on real TCP."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from pathlib import Path

import pytest
import trio

from adapters.fix.connection import Acceptor, Connection
from adapters.fix.server import _TlsOutput, wall_clock_us
from adapters.fix.service import serve_fix
from adapters.tls import TlsSession, server_context
from engine.recovery import StartupError
from engine.runtime import Engine
from tests.adapters import tls_certs
from tests.adapters.fix.client import RawClient
from tests.adapters.fix.venue import FixVenue, fields, fix_config, order, signed_logon, start_venue

pytestmark = pytest.mark.usefixtures("_close_clients")


@pytest.fixture
def pki(tmp_path: Path) -> tls_certs.TestPki:
    (tmp_path / "pki").mkdir()
    return tls_certs.make_pki(tmp_path / "pki")


@pytest.fixture
async def venue(nursery: trio.Nursery, tmp_path: Path, pki: tls_certs.TestPki) -> FixVenue:
    return await start_venue(nursery, tmp_path, tls=pki)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
async def test_signed_logon_and_an_order_over_tls(venue: FixVenue, version: ssl.TLSVersion) -> None:
    with trio.fail_after(10):
        assert venue.tls is not None
        venue.tls.minimum_version = venue.tls.maximum_version = version
        account = await venue.account(USDC="1000")
        client = await venue.logon("MAKER", account)
        assert isinstance(client.stream, trio.SSLStream)
        assert client.stream.version() == version.name.replace("v1_", "v1.")  # the SSLObject's answer
        await client.send("D", order("tls1", "1", "2", "100"))
        report = await client.expect("8")
        assert fields(report, 150, 39, 11, 38, 44, 34) == ("0", "0", "tls1", "2", "100", "2")
        assert [str(o.order_id) for o in venue.engine.open_orders(account)] == [report.get(37)]
        await client.send("5", [])
        assert (await client.expect("5")).get(34) == "3"
        assert not client.pending
        # the acceptor closes after the Logout with a close_notify (without one, SSLStream raises BrokenResourceError)
        assert await client.stream.receive_some(65_536) == b""


async def test_a_plaintext_client_on_the_tls_port_is_dropped_and_the_next_tls_client_served(
    venue: FixVenue, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "satchel.fix")
    with trio.fail_after(10):
        account = await venue.account(USDC="1000")
        plain = await RawClient.connect(venue.address, sender="MAKER", target="SATCHEL")
        await plain.send_raw(signed_logon(plain, venue.keys[account], venue.public_key(account)))
        assert await plain.read() is None  # closed, and nothing FIX came back (at most a TLS alert)
        assert any(r.getMessage().startswith("FIX connection closed: TLS failed") for r in caplog.records)
        session = venue.info["server"].acceptor.find("MAKER", "SATCHEL")
        assert session.store.next_target == 1  # the Logon never reached the session
        client = await venue.connect("MAKER")
        await client.send_raw(signed_logon(client, venue.keys[account], venue.public_key(account)))
        assert (await client.expect("A")).get(34) == "1"
        await client.send("1", [(112, "still serving")])
        assert (await client.expect("0")).get(112) == "still serving"


async def test_a_handshake_that_never_completes_is_closed_after_the_logon_timeout(
    venue: FixVenue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("adapters.fix.connection.LOGON_TIMEOUT_S", 0.5)
    with trio.fail_after(10):
        assert venue.tls is not None
        hello = venue.tls.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            hello.do_handshake()
        client_hello = outgoing.read()
        stalled = await RawClient.connect(venue.address)
        await stalled.send_raw(client_hello[:len(client_hello) // 2])  # half a ClientHello, then nothing
        started = trio.current_time()
        assert await stalled.read() is None
        assert 0.4 < trio.current_time() - started < 3


async def test_a_large_answer_to_a_slow_reader_arrives_whole_and_in_order(venue: FixVenue) -> None:
    """Megabytes of answers to a client whose socket takes 4 KB at a time: the acceptor's writes are
    partial, the rest of the ciphertext waits in order, and the client decrypts every record."""
    with trio.fail_after(60):
        assert venue.tls is not None
        account = await venue.account(USDC="100000")
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(venue.address)
        client = await RawClient.connect_tls(venue.address, venue.tls, "MAKER", "SATCHEL", sock=sock)
        await client.send_raw(signed_logon(client, venue.keys[account], venue.public_key(account)))
        await client.expect("A")
        orders = 300
        await client.send_raw(b"".join(client.build("D", order(f"o{n}", "1", "1", "50")) for n in range(orders)))
        # read the acks first: they follow the journal's fsync, so a TestRequest sent meanwhile may be answered
        # ahead of some of them, and the mass status below must see every order
        acks = [await client.expect("8") for _ in range(orders)]
        assert [(r.get(11), r.get(150)) for r in acks] == [(f"o{n}", "0") for n in range(orders)]
        padding = "x" * 60_000
        for n in range(40):  # each answered by a 60 KB Heartbeat: 2.4 MB the client does not read yet
            await client.send("1", [(112, f"t{n}-{padding}")])
        await client.send("AF", [(584, "all"), (585, "7")])
        await trio.sleep(0.5)
        beats = [await client.expect("0") for _ in range(40)]
        assert [b.get(112) for b in beats] == [f"t{n}-{padding}" for n in range(40)]
        reports = [await client.expect("8") for _ in range(orders)]
        assert [(r.get(11), r.get(150), r.get(584)) for r in reports] == [(f"o{n}", "I", "all") for n in range(orders)]
        assert [int(m.get(34) or 0) for m in acks + beats + reports] == list(range(2, 2 + 2 * orders + 40))
        await client.send("1", [(112, "after")])
        assert (await client.expect("0")).get(112) == "after"


async def test_ciphertext_a_write_left_goes_out_first_and_is_never_encrypted_again(pki: tls_certs.TestPki) -> None:
    """The socket takes part of a burst: its rest waits for the writer; output queued meanwhile is neither
    written ahead of it nor encrypted until it is out, and the client reads every byte in order."""
    context = server_context("fix", str(pki.cert_file), str(pki.key_file))
    assert context is not None
    server_sock, client_sock = trio.socket.socketpair()
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tls = TlsSession(context)
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context(cafile=str(pki.ca_file)).wrap_bio(client_in, client_out,
                                                                          server_hostname="localhost")
    while not tls.handshaken:  # over memory: the socket carries only what the test is about
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        tls.receive(client_out.read())
        client_in.write(tls.outgoing())
    client.do_handshake()
    connection = Connection(Acceptor([]), trio.current_time(), wall_clock_us)
    woken: list[bool] = []
    connection.wakeup = lambda: woken.append(True)
    output = _TlsOutput(trio.SocketStream(server_sock), connection, tls)
    messages = [f"message {n};".encode() * 1000 for n in range(40)]
    for message in messages[:20]:
        connection.emit(message)
    output.write_now()
    left = len(output.backlog)
    assert left > 0 and woken and not connection.outbox  # the socket took part; the writer was woken for the rest
    for message in messages[20:]:
        connection.emit(message)
    output.write_now()
    assert len(output.backlog) == left and connection.outbox  # nothing written ahead, nothing encrypted yet
    received = bytearray()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(output.flush)
            while len(received) < sum(map(len, messages)):
                client_in.write(await client_sock.recv(65_536))
                with contextlib.suppress(ssl.SSLWantReadError):
                    while chunk := client.read(65_536):
                        received += chunk
    assert bytes(received) == b"".join(messages)
    assert not output.backlog and not connection.outbox
    server_sock.close()
    client_sock.close()


@pytest.mark.parametrize(("problem", "expected"), [
    ("missing", "adapters.fix.tls_key: cannot read"),
    ("mismatched", "adapters.fix: tls_cert"),
])
async def test_an_unusable_certificate_or_key_stops_start_up_naming_the_key(
    nursery: trio.Nursery, tmp_path: Path, pki: tls_certs.TestPki, problem: str, expected: str,
) -> None:
    if problem == "missing":
        pki = tls_certs.TestPki(pki.ca_file, pki.cert_file, tmp_path / "nope.key")
    else:
        pki = tls_certs.TestPki(pki.ca_file, pki.ca_file, pki.key_file)  # the CA's certificate with the server's key
    engine = Engine(fix_config(tls=pki), tmp_path / "journal")
    with trio.fail_after(10):
        await nursery.start(engine.run)
        with pytest.raises(StartupError, match=f"^{expected}"):
            await nursery.start(lambda task_status: serve_fix(engine, listen="127.0.0.1:0", task_status=task_status))
