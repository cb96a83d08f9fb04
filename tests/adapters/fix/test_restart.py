"""FIX across a daemon restart: orders are still found by their ClOrdID, histories by the rebuilt publisher."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.codec import Message, decode
from adapters.fix.store import FileStore
from tests.adapters import tls_certs
from tests.adapters.fix.client import RawClient
from tests.adapters.fix.venue import NOW, SOL, FixVenue, fields, order, signed_logon, start_venue


async def logon(venue: FixVenue, comp_id: str, account: int, seq: int) -> RawClient:
    """Log on continuing the client's sequence numbers (both sides keep them across the restart)."""
    client = await RawClient.connect(venue.address, sender=comp_id, target="SATCHEL")
    client.seq = seq
    await client.send_raw(signed_logon(client, venue.keys[account], venue.public_key(account)))
    await client.expect("A")
    return client


@pytest.mark.usefixtures("_close_clients")
async def test_orders_are_addressed_by_clordid_after_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            venue = await start_venue(nursery, tmp_path)
            maker_id = await venue.account(SOL="10")
            taker_id = await venue.account(USDC="1000")
            maker = await venue.logon("MAKER", maker_id)
            await maker.send("D", order("r1", "2", "1", "100"))
            await maker.send("D", order("r2", "2", "1", "105"))
            await maker.send("D", order("r3", "2", "1", "110"))
            for _ in range(3):
                assert (await maker.expect("8")).get(150) == "0"
            await maker.send("G", [(41, "r2"), (11, "r2b"), (55, SOL), (54, "2"), (60, NOW), (38, "1"), (40, "2"), (44, "106")])
            assert fields(await maker.expect("8"), 150, 11, 41) == ("5", "r2b", "r2")
            taker = await venue.logon("TAKER", taker_id)
            await taker.send("D", order("t1", "1", "1", "100"))  # fills r1
            assert (await maker.expect("8")).get(11) == "r1"
            maker_seq, taker_seq, keys = maker.seq, taker.seq, venue.keys
            venue.engine.stop()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            venue = await start_venue(nursery, tmp_path)
            venue.keys = keys
            maker = await logon(venue, "MAKER", maker_id, maker_seq)
            await maker.send("H", [(11, "r2b"), (55, SOL), (54, "2")])
            assert fields(await maker.expect("8"), 150, 39, 11, 44) == ("I", "0", "r2b", "106")
            await maker.send("H", [(11, "r1"), (55, SOL), (54, "2")])  # closed before the restart
            assert fields(await maker.expect("8"), 150, 39, 11, 14) == ("I", "2", "r1", "1")
            await maker.send("F", [(41, "r2b"), (11, "r2c"), (55, SOL), (54, "2"), (60, NOW), (38, "1")])
            assert fields(await maker.expect("8"), 150, 39, 11, 41) == ("4", "4", "r2c", "r2b")
            taker = await logon(venue, "TAKER", taker_id, taker_seq)
            await taker.send("D", order("t2", "1", "1", "110"))  # fills r3, placed before the restart
            assert fields(await maker.expect("8"), 150, 39, 11) == ("F", "2", "r3")
            venue.engine.stop()
            nursery.cancel_scope.cancel()


def test_clordid_file_survives_torn_lines_and_compacts(tmp_path: Path) -> None:
    path = tmp_path / "clordids.log"
    ids = ClOrdIds(path, per_account=3)
    ids.remember(1, "a b", 10)  # spaces are part of a ClOrdID
    ids.remember(1, "é", 11)
    ids.remember(1, "refused", 12)
    ids.forget(1, 12)
    ids.remember(1, "a2", 10)  # replaced: the order's current name
    ids.close()
    with open(path, "ab") as f:
        f.write(b"+ 1 13 torn-without-newline")
    again = ClOrdIds(path, per_account=3)
    assert again.order_id(1, "a b") == 10 and again.order_id(1, "é") == 11 and again.order_id(1, "a2") == 10
    assert again.order_id(1, "refused") is None and again.cl_ord_id(10) == "a2"
    assert again.order_id(1, "torn-without-newline") is None
    again.remember(1, "x", 14)  # the oldest name ("a b") goes; order 10 keeps its newer name
    assert again.order_id(1, "a b") is None and again.cl_ord_id(10) == "a2"
    again.close()
    last = ClOrdIds(path)
    assert last.order_id(1, "x") == 14
    last.close()


def test_clordids_past_the_bound_forget_the_oldest_tenth_at_once() -> None:
    ids = ClOrdIds(per_account=10)
    for n in range(11):
        ids.remember(1, f"n{n}", n)
    assert [ids.order_id(1, f"n{n}") for n in range(11)] == [None, None, *range(2, 11)]
    ids.remember(1, "n5", 5)  # named again: now the newest
    ids.remember(1, "n11", 11)
    ids.remember(1, "n12", 12)  # 11 names: n2 and n3 go, n5 (older than n4 by first use) stays
    assert [ids.order_id(1, f"n{n}") for n in (2, 3, 4, 5, 12)] == [None, None, 4, 5, 12]
    assert ids.cl_ord_id(2) is None and ids.cl_ord_id(5) == "n5"


def test_clordid_file_compacts_while_running_and_keeps_what_follows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.fix import cl_ord_ids

    monkeypatch.setattr(cl_ord_ids, "COMPACT_MIN_RECORDS", 8)
    path = tmp_path / "clordids.log"
    ids = ClOrdIds(path, per_account=2)
    for n in range(12):  # many records, two live mappings (older names are forgotten)
        ids.remember(1, f"name{n}", 7)
    ids.flush()
    assert path.read_bytes().rstrip(b"\0") == b"+ 1 7 name10\n+ 1 7 name11\n"  # compacted to the live mappings
    for n in range(12, 24):
        ids.remember(1, f"name{n}", 8)
        ids.flush()  # every flush after the compaction still writes (or compacts again)
    ids.flush()
    again = ClOrdIds(path)
    assert again.order_id(1, "name23") == 8 and again.order_id(1, "name22") == 8 and again.order_id(1, "name11") is None
    again.close()
    ids.close()


def test_clordid_records_are_in_the_file_once_flushed_without_a_close(tmp_path: Path) -> None:
    """A crash of the process loses no ClOrdID the peer may have seen: every session store's flush (before each
    write to the socket) flushes this file too, and a flush puts the changes since the last in the mapped file."""
    path = tmp_path / "clordids.log"
    ids = ClOrdIds(path)
    for n in range(3000):  # past the first mapping (GROW_BYTES)
        ids.remember(2, f"order-{n}-" + "x" * 400, n)
    ids.forget(2, 5)
    assert ids.order_id(2, "order-2999-" + "x" * 400) == 2999  # in memory at once
    ids.flush()
    ids.remember(2, "after", 3000)  # not flushed: no report has named it yet
    crashed = tmp_path / "crashed.log"
    crashed.write_bytes(path.read_bytes())  # the file as a crash would leave it: no close
    assert crashed.read_bytes().endswith(b"\0")
    again = ClOrdIds(crashed)
    assert again.order_id(2, "order-2999-" + "x" * 400) == 2999 and again.order_id(2, "order-5-" + "x" * 400) is None
    again.close()
    ids.close()
    assert path.read_bytes().endswith(b"- 2 5\n+ 2 3000 after\n")  # close writes what is pending, trims the zeros


@pytest.mark.usefixtures("_close_clients")
@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
async def test_the_files_hold_what_a_report_names_when_it_arrives(tmp_path: Path, tls: bool) -> None:
    """The durability rule seen from the peer: when an ExecutionReport arrives, a crash of the daemon at that
    instant would keep its ClOrdID (new or replaced) and its MsgSeqNum; a drop copy session that is not
    connected has the report in its store for a resend."""
    pki = None
    if tls:
        (tmp_path / "pki").mkdir()
        pki = tls_certs.make_pki(tmp_path / "pki")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            venue = await start_venue(nursery, tmp_path, tls=pki)
            account = await venue.account(SOL="10")
            maker = await venue.logon("MAKER", account)
            await maker.send("D", order("k1", "2", "1", "100"))
            ack = await maker.expect("8")
            assert_survives_a_crash(tmp_path, "MAKER", ack, account, "k1")
            await maker.send("G", [(41, "k1"), (11, "k2"), (55, SOL), (54, "2"), (60, NOW), (38, "1"), (40, "2"), (44, "101")])
            replaced = await maker.expect("8")
            assert fields(replaced, 150, 11) == ("5", "k2")
            assert_survives_a_crash(tmp_path, "MAKER", replaced, account, "k2")
            assert_survives_a_crash(tmp_path, "MAKERDC", replaced, account, "k2")  # never logged on
            venue.engine.stop()
            nursery.cancel_scope.cancel()


def assert_survives_a_crash(directory: Path, target: str, report: Message, account: int, cl_ord_id: str) -> None:
    """Load copies of the FIX files as they are now (a crash leaves them so): ``report``'s facts are in them."""
    files = directory / "fix"
    crashed = directory / "crashed"
    crashed.mkdir(exist_ok=True)
    for name in ("clordids.log", f"SATCHEL-{target}.log"):
        (crashed / name).write_bytes((files / name).read_bytes())
    ids = ClOrdIds(crashed / "clordids.log")
    store = FileStore(crashed / f"SATCHEL-{target}.log")
    try:
        assert ids.order_id(account, cl_ord_id) == int(report.get(37) or "")
        kept = store.get(store.next_sender - 1)
        assert kept is not None and decode(kept).get(17) == report.get(17)  # the same report (ExecID)
    finally:
        ids.close()
        store.close()
