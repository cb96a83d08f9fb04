"""Session layer over real TCP: garbage, bad frames, wrong CompIDs, gaps, persisted sequence numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from adapters.fix.connection import Acceptor
from adapters.fix.echo import EchoApplication
from adapters.fix.server import FixServer, wall_clock_us
from adapters.fix.session import Session, SessionConfig
from adapters.fix.store import FileStore
from tests.adapters.fix.client import RawClient

pytestmark = pytest.mark.usefixtures("_close_clients")


async def start(nursery: trio.Nursery, store_dir: Path | None = None, reset: bool = False) -> tuple[str, int]:
    app = EchoApplication()
    config = SessionConfig("ISLD", "TW44", reset_on_logon=reset)
    store = FileStore(store_dir / "ISLD-TW44.log") if store_dir is not None else None
    session = Session(config, app, store=store, wall_us=wall_clock_us, monotonic=trio.current_time)
    server = FixServer(Acceptor([session]), "127.0.0.1", 0)
    address: tuple[str, int] = await nursery.start(server.serve)
    return address


async def test_garbage_before_logon_closes_and_the_acceptor_keeps_serving(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        bad = await RawClient.connect(address)
        await bad.send_raw(b"\x00\xffGET / HTTP/1.1\r\n\r\n8=FIX.4.4\x019=abc\x01")
        await bad.send_raw(b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01")
        assert await bad.read() is None
        client = await RawClient.connect(address)
        reply = await client.logon()
        assert reply.get(34) == "1" and reply.get(108) == "30"


async def test_bad_checksum_and_bad_body_length_are_ignored_and_consume_no_sequence_number(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address)
        await client.logon()
        good = client.build("1", [(112, "A")])
        bad_checksum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
        await client.send_raw(bad_checksum)
        length_at = good.index(b"\x019=") + 3
        bad_length = good[:length_at] + b"5" + good[good.index(b"\x01", length_at):]
        await client.send_raw(bad_length)
        await client.send("1", [(112, "B")], seq=2)
        heartbeat = await client.expect("0")
        assert heartbeat.get(112) == "B" and heartbeat.get(34) == "2"


async def test_wrong_comp_id_after_logon_is_rejected_then_logged_out(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address)
        await client.logon()
        client.sender = "EVIL"
        await client.send("0")
        rejected = await client.expect("3")
        assert (rejected.get(373), rejected.get(58)) == ("9", "CompID problem")
        await client.expect("5")
        assert await client.read() is None  # no Logout reply from us within 2 s: disconnected


async def test_unknown_comp_ids_at_logon_disconnect_without_reply(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address, sender="NOBODY")
        await client.send("A", [(98, "0"), (108, "30")])
        assert await client.read() is None


async def test_sequence_gap_is_resent_and_queued_messages_processed_in_order(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address)
        await client.logon()
        await client.send("1", [(112, "later")], seq=4)
        resend = await client.expect("2")
        assert (resend.get(7), resend.get(16)) == ("2", "0")
        await client.send("1", [(112, "first")], seq=2, header=[])
        await client.send("0", seq=3)
        assert (await client.expect("0")).get(112) == "first"
        assert (await client.expect("0")).get(112) == "later"


async def test_sequence_numbers_persist_across_reconnects_and_restarts(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await start(nursery, tmp_path)
            client = await RawClient.connect(address)
            await client.logon()
            await client.send("1", [(112, "x")])
            await client.expect("0")
            await client.send("5")
            await client.expect("5")
            assert await client.read() is None
            client = await RawClient.connect(address)
            client.seq = 4
            reply = await client.logon()
            assert reply.get(34) == "4"  # logon(1), heartbeat(2), logout(3) went before
            await client.send("5")
            await client.expect("5")
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:  # a new acceptor on the same store: a daemon restart
            address = await start(nursery, tmp_path)
            client = await RawClient.connect(address)
            client.seq = 6
            reply = await client.logon()
            assert reply.get(34) == "6"
            await client.send("2", [(7, "1"), (16, "0")])
            gap = await client.expect("4")
            assert (gap.get(34), gap.get(36), gap.get(123), gap.get(43)) == ("1", "7", "Y", "Y")
            nursery.cancel_scope.cancel()


async def test_silent_peer_gets_heartbeat_test_request_then_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    address = await start(nursery, reset=True)
    client = await RawClient.connect(address)
    await client.logon(heartbeat=5)
    start_time = trio.current_time()
    assert (await client.expect("0", wait_s=60)) is not None
    assert trio.current_time() - start_time == 5
    test_request = await client.expect("1", wait_s=60)
    assert test_request.get(112) == "TEST"
    assert await client.read(wait_s=60) is None
    assert trio.current_time() - start_time == 12
