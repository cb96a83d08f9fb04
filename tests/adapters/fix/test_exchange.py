"""The exchange application over real TCP: signed logon, orders, execution reports, market data."""

from __future__ import annotations

import socket

import pytest
import trio

from adapters.fix.status import MAX_STATUS_REPORTS
from tests.adapters.fix.client import RawClient
from tests.adapters.fix.venue import NOW, SOL, FixVenue, fields, order, signed_logon

pytestmark = pytest.mark.usefixtures("_close_clients")


async def test_logon_needs_a_valid_signature_of_the_accounts_key(venue: FixVenue) -> None:
    with trio.fail_after(10):
        maker = await venue.account(SOL="10")
        other = await venue.account()
        client = await RawClient.connect(venue.address, sender="MAKER", target="SATCHEL")
        await client.send("A", [(98, "0"), (108, "30")])
        logout = await client.expect("5")
        assert "553" in (logout.get(58) or "")
        assert await client.read() is None
        client = await RawClient.connect(venue.address, sender="MAKER", target="SATCHEL")
        await client.send_raw(signed_logon(client, venue.keys[other], venue.public_key(other)))
        assert "does not belong" in ((await client.expect("5")).get(58) or "")
        client = await RawClient.connect(venue.address, sender="MAKER", target="SATCHEL")
        forged = signed_logon(client, venue.keys[other], venue.public_key(maker))
        await client.send_raw(forged)
        assert (await client.expect("5")).get(58) == "Invalid signature in RawData (96)"
        session = venue.info["server"].acceptor.find("MAKER", "SATCHEL")
        assert session.store.next_sender == 1 and session.store.next_target == 1  # nothing happened
        good = await venue.logon("MAKER", maker)
        assert good.seq == 2


async def test_order_lifecycle_with_maker_fills_from_another_session(venue: FixVenue) -> None:
    with trio.fail_after(20):
        maker_id = await venue.account(SOL="10")
        taker_id = await venue.account(USDC="1000")
        maker = await venue.logon("MAKER", maker_id)
        drop = await venue.logon("MAKERDC", maker_id)
        taker = await venue.logon("TAKER", taker_id)
        await maker.send("D", order("m1", "2", "2", "100", t18="6"))
        new = await maker.expect("8")
        assert fields(new, 150, 39, 11, 14, 151, 6, 38, 44, 18) == ("0", "0", "m1", "0", "2", "0", "2", "100", "6")
        assert fields(await drop.expect("8"), 150, 11) == ("0", "m1")
        await taker.send("D", order("t1", "1", "1.5", "101", t59="3"))
        assert fields(await taker.expect("8"), 150, 39) == ("0", "0")
        fill = await taker.expect("8")
        assert fields(fill, 150, 39, 31, 32, 14, 151, 6) == ("F", "2", "100", "1.5", "1.5", "0", "100")
        maker_fill = await maker.expect("8")
        assert fields(maker_fill, 150, 39, 11, 31, 32, 14, 151, 6) == ("F", "1", "m1", "100", "1.5", "1.5", "0.5", "100")
        assert maker_fill.get(17) != fill.get(17)
        assert (await drop.expect("8")).get(17) == maker_fill.get(17)
        await drop.send("D", order("dc", "2", "1", "100"))
        assert fields(await drop.expect("j"), 372, 380) == ("D", "6")
        await maker.send("G", [(41, "m1"), (11, "m2"), (55, SOL), (54, "2"), (60, NOW), (38, "3"), (40, "2"), (44, "102")])
        replaced = await maker.expect("8")
        assert fields(replaced, 150, 39, 11, 41, 38, 44, 14, 151) == ("5", "1", "m2", "m1", "3", "102", "1.5", "1.5")
        await maker.send("H", [(11, "m2"), (55, SOL), (54, "2")])
        assert fields(await maker.expect("8"), 150, 39, 11, 151) == ("I", "1", "m2", "1.5")
        await maker.send("F", [(41, "m2"), (11, "m3"), (55, SOL), (54, "2"), (60, NOW), (38, "3")])
        cancelled = await maker.expect("8")
        assert fields(cancelled, 150, 39, 11, 41, 151, 14) == ("4", "4", "m3", "m2", "0", "1.5")
        await maker.send("F", [(41, "m2"), (11, "m4"), (55, SOL), (54, "2"), (60, NOW), (38, "3")])
        reject = await maker.expect("9")  # the order is cancelled: too late, with its status
        assert fields(reject, 11, 41, 37, 39, 434, 102) == ("m4", "m2", new.get(37), "4", "1", "0")
        await maker.send("H", [(11, "m3"), (55, SOL), (54, "2")])
        assert fields(await maker.expect("8"), 150, 39, 14, 151) == ("I", "4", "1.5", "0")


async def test_acknowledgements_of_one_read_keep_sequence_order_with_a_reject_among_them(venue: FixVenue) -> None:
    """The acknowledgements of one durable batch go out as one burst (``Session.queue_report``): a rejection
    answered during the read takes the MsgSeqNum it was given, and the drop copy gets the same reports in order."""
    with trio.fail_after(10):
        account = await venue.account(USDC="1000")
        maker = await venue.logon("MAKER", account)
        drop = await venue.logon("MAKERDC", account)
        orders = [order(f"b{n}", "1", "0.1", str(90 + n)) for n in range(6)]
        orders[2] = order("bad", "3", "0.1", "90")  # no such side: rejected while the read is handled
        await maker.send_raw(b"".join(maker.build("D", body) for body in orders))
        got = [await maker.expect("8") for _ in orders]
        assert [(m.get(11), m.get(150)) for m in got] == [
            ("bad", "8"), ("b0", "0"), ("b1", "0"), ("b3", "0"), ("b4", "0"), ("b5", "0")]
        seqs = [int(m.get(34) or "0") for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(orders)))
        stamps = [m.get(52) or "" for m in got]
        assert stamps == sorted(stamps)
        copies = [await drop.expect("8") for _ in range(5)]
        assert [m.get(11) for m in copies] == ["b0", "b1", "b3", "b4", "b5"]
        assert [m.get(17) for m in copies] == [m.get(17) for m in got[1:]]


async def test_rejections_carry_satchels_reason(venue: FixVenue) -> None:
    with trio.fail_after(10):
        account = await venue.account(USDC="10")
        client = await venue.logon("MAKER", account)
        await client.send("D", order("big", "1", "5", "100"))
        rejected = await client.expect("8")
        assert fields(rejected, 150, 39, 11, 103) == ("8", "8", "big", "0")
        assert "nsufficient" in (rejected.get(58) or "")
        await client.send("D", order("tick", "1", "0.1", "100.001"))
        assert "100.001" in ((await client.expect("8")).get(58) or "")
        await client.send("D", [(55, "DOGE_USDC") if tag == 55 else (tag, v) for tag, v in order("sym", "1", "1", "1")])
        assert (await client.expect("8")).get(103) == "1"
        await client.send("E", [(66, "list")])
        assert fields(await client.expect("j"), 372, 380) == ("E", "3")


async def test_mass_status_mass_cancel_and_cancel_on_disconnect(venue: FixVenue) -> None:
    with trio.fail_after(10):
        await venue.account()
        account = await venue.account(USDC="1000")
        client = await venue.logon("TAKER", account)
        for n in range(3):
            await client.send("D", order(f"o{n}", "1", "1", str(90 + n)))
            await client.expect("8")
        await client.send("AF", [(584, "ms"), (585, "7")])
        reports = [await client.expect("8") for _ in range(3)]
        assert [r.get(11) for r in reports] == ["o0", "o1", "o2"] and reports[-1].get(912) == "Y"
        await client.send("q", [(11, "mc"), (530, "1"), (55, SOL), (60, NOW)])
        got = [await client.read() for _ in range(4)]
        report = next(m for m in got if m is not None and m.msg_type == "r")
        assert fields(report, 530, 531, 533) == ("1", "1", "3")
        await client.send("D", order("left", "1", "1", "95"))
        await client.expect("8")
        await client.aclose()
        await trio.sleep(0.2)
        await venue.engine.wait_idle()
        assert venue.engine.open_orders(account) == []


async def test_security_list_and_market_data(venue: FixVenue) -> None:
    with trio.fail_after(10):
        maker_id = await venue.account(SOL="10")
        taker_id = await venue.account(USDC="1000")
        maker = await venue.logon("MAKER", maker_id)
        taker = await venue.logon("TAKER", taker_id)
        await taker.send("x", [(320, "sl"), (559, "4")])
        securities = await taker.expect("y")
        assert securities.get(146) == "3" and securities.get(560) == "0"
        await maker.send("D", order("a", "2", "2", "100"))
        await maker.expect("8")
        await taker.send("V", [(262, "md"), (263, "1"), (264, "0"), (267, [[(269, "0")], [(269, "1")], [(269, "2")]]),
                               (146, [[(55, SOL)]])])
        snapshot = await taker.expect("W")
        assert "269=1\x01270=100\x01271=2\x01" in snapshot.raw.decode()
        await taker.send("D", order("b", "1", "0.5", "100"))
        messages = [await taker.expect("8"), await taker.expect("8")]
        incremental = await taker.expect("X")
        text = incremental.raw.decode()
        assert "279=1\x01269=1\x0155=SOL_USDC\x01270=100\x01271=1.5\x01" in text
        assert "279=0\x01269=2\x0155=SOL_USDC\x01270=100\x01271=0.5\x01" in text
        assert messages[1].get(150) == "F"
        await taker.send("V", [(262, "bad"), (263, "0"), (264, "0"), (267, [[(269, "0")]]), (146, [[(55, "NOPE")]])])
        assert (await taker.expect("Y")).get(281) == "0"


async def test_market_order_sized_by_quote_ends_filled(venue: FixVenue) -> None:
    with trio.fail_after(10):
        maker_id = await venue.account(SOL="10")
        taker_id = await venue.account(USDC="1000")
        maker = await venue.logon("MAKER", maker_id)
        taker = await venue.logon("TAKER", taker_id)
        for n, price in enumerate(("100", "101")):
            await maker.send("D", order(f"a{n}", "2", "1", price))
            await maker.expect("8")
        await taker.send("D", [(11, "mq"), (55, SOL), (54, "1"), (60, NOW), (152, "150.5"), (40, "1")])
        reports = [await taker.expect("8") for _ in range(3)]
        assert [fields(r, 150, 39) for r in reports] == [("0", "0"), ("F", "1"), ("F", "2")]
        last = reports[-1]
        assert fields(last, 14, 151, 152, 31, 32, 6) == ("1.5", "0", "150.5", "101", "0.5", "100.333333")


async def test_requests_read_before_the_publisher_has_an_acknowledged_order_wait_for_it(
    venue: FixVenue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A placement is acknowledged from the engine's Result, a task switch before the publisher applies
    the batch. A cancel read in that gap waits for the publisher (it would find no order), a repeated
    ClOrdID is still a duplicate, and the publisher's copy of the acknowledgement is not sent again."""
    with trio.fail_after(10):
        account = await venue.account(SOL="10")
        client = await venue.logon("MAKER", account)
        app = venue.info["application"]
        publisher = app.publisher
        held: list[object] = []
        monkeypatch.setattr(publisher, "apply_batch", held.append)  # durable batches arrive, none is applied yet
        await client.send("D", order("h1", "2", "1", "100"))
        ack = await client.expect("8")
        assert fields(ack, 150, 39, 11, 151) == ("0", "0", "h1", "1")
        assert publisher.open_order(account, SOL, int(ack.get(37) or 0), None) is None
        await client.send("D", order("h1", "2", "1", "101"))
        duplicate = await client.expect("8")
        assert fields(duplicate, 150, 11, 103) == ("8", "h1", "6")
        await client.send("F", [(41, "h1"), (11, "h2"), (55, SOL), (54, "2"), (60, NOW), (38, "1")])
        while not app.deferred:  # noqa: ASYNC110 - a test probe of sans-IO state, which has no event to wait on
            await trio.sleep(0.001)
        monkeypatch.undo()
        for events in held:
            publisher.apply_batch(events)
        cancelled = await client.expect("8")
        assert fields(cancelled, 150, 39, 11, 41, 37) == ("4", "4", "h2", "h1", ack.get(37))
        assert not app.acked and not app.deferred


async def test_a_failing_acknowledgement_leaves_it_to_the_publisher_and_the_engine_running(
    venue: FixVenue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The acknowledgement from the Result runs inside the journal actor: a bug there is logged, the
    engine goes on, and the publisher's copy of the report is sent instead (once)."""
    with trio.fail_after(10):
        account = await venue.account(SOL="10")
        client = await venue.logon("MAKER", account)
        app = venue.info["application"]

        def broken(result: object) -> None:
            raise RuntimeError("a bug in the acknowledgement")

        monkeypatch.setattr(app, "_accepted", broken)
        await client.send("D", order("b1", "2", "1", "100"))
        assert fields(await client.expect("8"), 150, 11) == ("0", "b1")
        monkeypatch.undo()
        await client.send("D", order("b2", "2", "1", "100"))
        assert fields(await client.expect("8"), 150, 11) == ("0", "b2")
        await client.send("H", [(11, "b1"), (55, SOL), (54, "2")])
        assert fields(await client.expect("8"), 150, 11, 39) == ("I", "b1", "0")
        assert not app.acked and app.acks_published == app.acks_sent


async def test_requests_in_the_same_read_as_the_order_they_name_find_it(venue: FixVenue) -> None:
    """Regression: a replace, a mass status or a duplicate sent in the same write as the order it names
    was answered from the state before that order (Unknown order / not listed / accepted twice)."""
    with trio.fail_after(10):
        account = await venue.account(SOL="10")
        client = await venue.logon("MAKER", account)
        burst = b"".join([
            client.build("D", order("s1", "2", "1", "100")),
            client.build("D", order("s1", "2", "1", "100")),  # the same ClOrdID while s1 is live
            client.build("G", [(41, "s1"), (11, "s2"), (55, SOL), (54, "2"), (60, NOW), (38, "2"), (40, "2"),
                               (44, "100")]),
            client.build("AF", [(584, "m1"), (585, "7")]),
        ])
        await client.send_raw(burst)
        reports = {r.get(150): r for r in [await client.expect("8") for _ in range(4)]}
        assert sorted(reports) == ["0", "5", "8", "I"]  # the duplicate's reject goes first, at once
        assert fields(reports["0"], 11) == ("s1",)
        assert fields(reports["8"], 11, 103) == ("s1", "6")
        assert fields(reports["5"], 11, 41, 38, 39) == ("s2", "s1", "2", "0")
        assert fields(reports["I"], 584, 37) == ("m1", reports["0"].get(37))  # the mass status lists the order
        await client.send("F", [(41, "s2"), (11, "s3"), (55, SOL), (54, "2"), (60, NOW), (38, "2")])
        assert fields(await client.expect("8"), 150, 39, 11, 41) == ("4", "4", "s3", "s2")


async def test_a_replace_that_changes_side_time_in_force_or_symbol_is_refused(venue: FixVenue) -> None:
    """Regression: a G with another Side (54) or TimeInForce (59) was accepted with the order's old values,
    so the client and the venue disagreed about what the replace did. FIX lets a replace change price and
    quantity only: the others get an OrderCancelReject 102=99 naming the field, and nothing changes."""
    with trio.fail_after(10):
        client = await venue.logon("MAKER", await venue.account(USDC="1000"))
        await client.send("D", order("i1", "1", "1", "90"))
        ack = await client.expect("8")

        def replace(cl_ord_id: str, **changed: str) -> list[tuple[int, str]]:
            body = {11: cl_ord_id, 41: "i1", 55: SOL, 54: "1", 60: NOW, 38: "2", 40: "2", 44: "91"}
            body.update({int(k[1:]): v for k, v in changed.items()})
            return list(body.items())

        for cl_ord_id, changed, field in [("i2", {"t54": "2"}, "Side (54)"), ("i3", {"t59": "3"}, "TimeInForce (59)"),
                                          ("i4", {"t55": "BTC_USDC"}, "Symbol (55)")]:
            await client.send("G", replace(cl_ord_id, **changed))
            reject = await client.expect("9")
            assert fields(reject, 11, 41, 37, 39, 434, 102) == (cl_ord_id, "i1", ack.get(37), "0", "2", "99")
            assert (reject.get(58) or "").startswith(field)
        await client.send("G", replace("i5", t59="1"))  # the order's own TimeInForce (GTC) may be repeated
        assert fields(await client.expect("8"), 150, 11, 41, 54, 38, 44) == ("5", "i5", "i1", "1", "2", "91")


async def test_cancel_or_replace_of_a_closed_order_is_too_late_with_its_status(venue: FixVenue) -> None:
    """Regression: an F or G for a filled (or cancelled, expired) order answered "Unknown order" with 37=NONE
    39=8 102=1, so a client whose cancel raced a fill marked its order rejected. The answer names the order
    (37), its current OrdStatus and CxlRejReason 0 (too late); an order never seen keeps 102=1."""
    with trio.fail_after(10):
        maker = await venue.logon("MAKER", await venue.account(SOL="10"))
        taker = await venue.account(USDC="1000")
        await maker.send("D", order("c1", "2", "1", "100"))
        order_id = (await maker.expect("8")).get(37)
        assert (await venue.engine.place_order(taker, SOL, "Bid", "Limit", price="100", quantity="1")).ok
        assert fields(await maker.expect("8"), 150, 39) == ("F", "2")
        await maker.send("F", [(41, "c1"), (11, "c2"), (55, SOL), (54, "2"), (60, NOW), (38, "1")])
        reject = await maker.expect("9")
        assert fields(reject, 11, 41, 37, 39, 434, 102, 58) == (
            "c2", "c1", order_id, "2", "1", "0", "Too late to cancel: the order is filled")
        await maker.send("G", [(41, "c1"), (11, "c3"), (37, order_id or ""), (55, SOL), (54, "2"), (60, NOW),
                               (38, "2"), (40, "2"), (44, "100")])
        assert fields(await maker.expect("9"), 11, 37, 39, 434, 102) == ("c3", order_id, "2", "2", "0")
        await maker.send("F", [(41, "never"), (11, "c4"), (55, SOL), (54, "2"), (60, NOW), (38, "1")])
        assert fields(await maker.expect("9"), 11, 37, 39, 102, 58) == ("c4", "NONE", "8", "1", "Unknown order")


async def test_a_cancel_the_engine_finds_filled_meanwhile_is_too_late_after_the_fill_report(
    venue: FixVenue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a cancel of an order that was open when read but filled before the engine reached it was
    answered 102=1 "Order not found" with the status from before. The engine's refusal can come before the
    publisher has the fill: the answer waits for it, then says too late with OrdStatus 2, after the fill."""
    with trio.fail_after(10):
        maker = await venue.logon("MAKER", await venue.account(SOL="10"))
        taker = await venue.account(USDC="1000")
        app = venue.info["application"]
        publisher = app.publisher
        await maker.send("D", order("r1", "2", "1", "100"))
        order_id = (await maker.expect("8")).get(37)
        while app.acks_published < app.acks_sent:  # noqa: ASYNC110 - the publisher has the order too
            await trio.sleep(0.001)
        held: list[object] = []
        monkeypatch.setattr(publisher, "apply_batch", held.append)  # the fill is durable, not yet published
        assert (await venue.engine.place_order(taker, SOL, "Bid", "Limit", price="100", quantity="1")).ok
        await maker.send("F", [(41, "r1"), (11, "r2"), (55, SOL), (54, "2"), (60, NOW), (38, "1")])
        while not app.closing:  # noqa: ASYNC110 - a test probe of sans-IO state, which has no event to wait on
            await trio.sleep(0.001)
        monkeypatch.undo()
        for events in held:
            publisher.apply_batch(events)
        assert fields(await maker.expect("8"), 150, 39) == ("F", "2")
        reject = await maker.expect("9")
        assert fields(reject, 11, 41, 37, 39, 434, 102) == ("r2", "r1", order_id, "2", "1", "0")
        assert not app.closing


def _g(cl_ord_id: str, orig: str, qty: str, price: str) -> list[tuple[int, str]]:
    return [(41, orig), (11, cl_ord_id), (55, SOL), (54, "2"), (60, NOW), (38, qty), (40, "2"), (44, price)]


def _f(cl_ord_id: str, orig: str) -> list[tuple[int, str]]:
    return [(41, orig), (11, cl_ord_id), (55, SOL), (54, "2"), (60, NOW), (38, "1")]


async def test_replaces_and_a_cancel_chained_on_replaces_in_flight_keep_the_clordid_chain(venue: FixVenue) -> None:
    """Regression: a replace or cancel naming (41) the ClOrdID of a replace not yet answered got "Unknown order",
    and one order held one request slot, so its reports lost their ClOrdIDs. FIX's OrigClOrdID is the last
    non-rejected ClOrdID: each request of the chain takes effect in order and is reported under its own 11."""
    with trio.fail_after(10):
        client = await venue.logon("MAKER", await venue.account(SOL="10"))
        await client.send_raw(b"".join([
            client.build("D", order("B1", "2", "1", "100")),
            client.build("G", _g("B2", "B1", "2", "100")),
            client.build("G", _g("B3", "B2", "2", "101")),
            client.build("F", _f("B4", "B3")),
        ]))
        reports = [await client.expect("8") for _ in range(4)]
        assert [fields(r, 150, 11, 41, 38, 44, 39) for r in reports] == [
            ("0", "B1", None, "1", "100", "0"), ("5", "B2", "B1", "2", "100", "0"),
            ("5", "B3", "B2", "2", "101", "0"), ("4", "B4", "B3", "2", "101", "4")]
        assert len({r.get(17) for r in reports}) == 4
        await client.send("H", [(11, "B4"), (55, SOL), (54, "2")])
        assert fields(await client.expect("8"), 150, 39, 11) == ("I", "4", "B4")


async def test_a_second_request_not_chained_on_the_one_in_flight_is_refused_as_pending(venue: FixVenue) -> None:
    """Regression: two replaces of one order naming the same 41 (or a replace and a cancel) overwrote each
    other: the first was reported under the second's ClOrdID and the second never. A request that does not
    name the replace in flight gets OrderCancelReject 102=3 and changes nothing; one refused by the engine
    drops out of the chain, and the next one replaces what it would have."""
    with trio.fail_after(10):
        client = await venue.logon("MAKER", await venue.account(SOL="10"))
        await client.send("D", order("P1", "2", "1", "100"))
        order_id = (await client.expect("8")).get(37)
        await client.send_raw(client.build("G", _g("P2", "P1", "2", "100")) + client.build("G", _g("P3", "P1", "3", "100"))
                              + client.build("F", _f("P4", "P1")))
        got = [await client.read() for _ in range(3)]
        rejects = [m for m in got if m is not None and m.msg_type == "9"]
        assert [fields(r, 11, 41, 37, 39, 434, 102) for r in rejects] == [
            ("P3", "P1", order_id, "0", "2", "3"), ("P4", "P1", order_id, "0", "1", "3")]
        assert "must be its ClOrdID 'P2'" in (rejects[0].get(58) or "")
        replaced = next(m for m in got if m is not None and m.msg_type == "8")
        assert fields(replaced, 150, 11, 41, 38) == ("5", "P2", "P1", "2")
        assert (await venue.engine.place_order(await venue.account(USDC="1000"), SOL, "Bid", "Limit", price="99",
                                               quantity="1")).ok
        await client.send_raw(client.build("G", _g("P5", "P2", "2", "99"))  # the market refuses it: it would cross
                              + client.build("G", _g("P6", "P5", "3", "101")))
        refused = await client.expect("9")
        assert fields(refused, 11, 41, 102) == ("P5", "P2", "99")
        assert "cross" in (refused.get(58) or "")
        assert fields(await client.expect("8"), 150, 11, 41, 38, 44) == ("5", "P6", "P2", "3", "101")
        await client.send("F", _f("P7", "P6"))
        assert fields(await client.expect("8"), 150, 11, 41) == ("4", "P7", "P6")


async def test_a_cancel_or_replace_may_not_take_the_clordid_of_another_live_order(venue: FixVenue) -> None:
    """Regression: a G or F whose new ClOrdID (11) named another live order was accepted, and the ClOrdID
    moved to this order, so the other could no longer be addressed by it. Refused with 102=6, nothing
    changes; a ClOrdID given by a request in flight counts as taken, for a D too, in any market."""
    with trio.fail_after(10):
        client = await venue.logon("MAKER", await venue.account(SOL="10", BTC="1"))
        await client.send("D", order("X1", "2", "1", "100"))
        x_id = (await client.expect("8")).get(37)
        await client.send("D", order("Y1", "2", "1", "101"))
        y_id = (await client.expect("8")).get(37)
        await client.send("G", _g("Y1", "X1", "2", "100"))
        assert fields(await client.expect("9"), 11, 41, 37, 39, 434, 102) == ("Y1", "X1", x_id, "0", "2", "6")
        await client.send("F", _f("Y1", "X1"))
        assert fields(await client.expect("9"), 11, 41, 37, 434, 102) == ("Y1", "X1", x_id, "1", "6")
        await client.send_raw(client.build("G", _g("Z1", "X1", "2", "100")) + client.build("G", _g("Z1", "Y1", "2", "101"))
                              + client.build("D", [(55, "BTC_USDC") if t == 55 else (t, v) for t, v in order("Z1", "2", "0.01", "50000")]))
        got = [await client.read() for _ in range(3)]
        assert sorted(fields(m, 35, 11, 37, 102, 103, 150) for m in got if m is not None) == [
            ("8", "Z1", x_id, None, None, "5"), ("8", "Z1", "NONE", None, "6", "8"), ("9", "Z1", y_id, "6", None, None)]
        await client.send("F", _f("Y2", "Y1"))
        assert fields(await client.expect("8"), 150, 11, 41, 37) == ("4", "Y2", "Y1", y_id)
        await client.send("F", _f("Z2", "Z1"))
        assert fields(await client.expect("8"), 150, 11, 41, 37) == ("4", "Z2", "Z1", x_id)


async def test_the_services_stop_logs_every_session_out_and_cancels_cancel_on_disconnect_orders(
    venue: FixVenue, nursery: trio.Nursery,
) -> None:
    """Regression: at the daemon's shutdown the sessions were dropped without a Logout, and the orders of
    cancel-on-disconnect sessions stayed live (the engine no longer took the cancel). The service's stop,
    which the daemon awaits before it stops intake, logs every session out, refuses new Logons, and
    returns once those orders are cancelled and their reports are in the session's store."""
    with trio.fail_after(10):
        maker_id = await venue.account(SOL="10")
        taker_id = await venue.account(USDC="1000")
        maker = await venue.logon("MAKER", maker_id)
        taker = await venue.logon("TAKER", taker_id)  # cancel_on_disconnect
        await maker.send("D", order("k1", "2", "1", "100"))
        await maker.expect("8")
        await taker.send("D", order("k2", "1", "1", "90"))
        await taker.expect("8")
        stopped = trio.Event()

        async def stop() -> None:
            await venue.info["stop"]()
            stopped.set()

        nursery.start_soon(stop)
        for client in (maker, taker):
            assert (await client.expect("5")).get(58) == "Server shutting down"
            await client.send("5", [])
            assert await client.read() is None
        late = await RawClient.connect(venue.address, sender="MAKERDC", target="SATCHEL")
        await late.send_raw(signed_logon(late, venue.keys[maker_id], venue.public_key(maker_id)))
        assert (await late.expect("5")).get(58) == "Server shutting down"
        await stopped.wait()
        assert venue.engine.accepting  # the daemon stops intake only after this
        assert venue.engine.open_orders(taker_id) == [] and len(venue.engine.open_orders(maker_id)) == 1
        store = venue.info["server"].acceptor.find("TAKER", "SATCHEL").store
        assert b"\x0111=k2\x01" in store.get(store.next_sender - 1) and b"\x01150=4\x01" in store.get(store.next_sender - 1)


async def test_mass_status_reports_the_oldest_1000_orders_a_slice_at_a_time(venue: FixVenue) -> None:
    """Regression: OrderMassStatusRequest built a report for every open order in one synchronous call
    (tens of thousands: seconds with the event loop stalled); now at most 1,000, the oldest, produced a
    slice at a time while other connections are served, the last saying how many were left out."""
    with trio.fail_after(60):
        account = await venue.account(USDC="100000")
        client = await venue.logon("MAKER", account)
        total = MAX_STATUS_REPORTS + 20
        await client.send_raw(b"".join(client.build("D", order(f"o{n}", "1", "1", "50")) for n in range(total)))
        for _ in range(total):
            await client.expect("8")
        other = await venue.logon("MAKERDC", account)
        await client.send("AF", [(584, "all"), (585, "7")])
        await other.send("1", [(112, "meanwhile")])
        assert (await other.expect("0")).get(112) == "meanwhile"
        session = venue.info["server"].acceptor.find("MAKER", "SATCHEL")
        assert session.backlog  # the other session was answered before the mass status was done
        reports = [await client.expect("8") for _ in range(MAX_STATUS_REPORTS)]
        assert [r.get(11) for r in reports] == [f"o{n}" for n in range(MAX_STATUS_REPORTS)]
        assert {(r.get(150), r.get(584), r.get(911)) for r in reports} == {("I", "all", str(MAX_STATUS_REPORTS))}
        assert [r.get(912) for r in reports].count("Y") == 1 and reports[-1].get(912) == "Y"
        assert reports[-1].get(58) == f"Only the oldest {MAX_STATUS_REPORTS} of {total} open orders are reported"
        await client.send("1", [(112, "after")])
        assert (await client.expect("0")).get(112) == "after"  # nothing more came


@pytest.mark.parametrize(("heartbeat", "requests", "reason"), [
    (2, 150, "slow consumer: nothing sent for 2 s"),  # 9 MB: stuck in the kernel's buffers, taken for 2 s
    (30, 330, "slow consumer: outbox full"),  # 20 MB: past the 16 MiB outbox; the close aborts the blocked send
])
async def test_a_peer_that_stops_reading_is_dropped_and_its_orders_cancelled(
    venue: FixVenue, heartbeat: int, requests: int, reason: str,
) -> None:
    """Regression: the writer waited forever in a send to a peer that stopped reading: its session never timed
    out, a new Logon was refused as 'already logged on', and cancel-on-disconnect never ran."""
    with trio.fail_after(30):
        await venue.account()
        account = await venue.account(USDC="1000")
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(venue.address)
        client = RawClient(trio.SocketStream(sock), "TAKER", "SATCHEL")
        await client.send_raw(signed_logon(client, venue.keys[account], venue.public_key(account), heartbeat))
        await client.expect("A")
        await client.send("D", order("rest", "1", "1", "90"))
        await client.expect("8")
        assert len(venue.engine.open_orders(account)) == 1
        session = venue.info["server"].acceptor.find("TAKER", "SATCHEL")
        connection = session.connection
        padding = "x" * 60_000
        try:
            for _ in range(requests):  # each is answered by a 60 KB Heartbeat that is never read
                await client.send("1", [(112, padding)])
        except trio.BrokenResourceError:
            pass  # dropped (reset) before the last ones were sent
        stopped = trio.current_time()
        while session.connection is not None:  # noqa: ASYNC110 - sans-IO state
            await trio.sleep(0.05)
        assert connection.close_reason == reason
        assert trio.current_time() - stopped < 10
        await trio.sleep(0.2)
        await venue.engine.wait_idle()
        assert venue.engine.open_orders(account) == []  # cancel-on-disconnect ran
        again = await RawClient.connect(venue.address, sender="TAKER", target="SATCHEL")
        again.seq = session.store.next_target
        await again.send_raw(signed_logon(again, venue.keys[account], venue.public_key(account)))
        await again.expect("A")
