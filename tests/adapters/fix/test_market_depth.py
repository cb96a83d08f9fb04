"""MarketDepth (264) on FIX market data: the best N levels in the snapshot and in the incremental updates."""

from __future__ import annotations

import pytest
import trio

from adapters.fix.codec import Message
from adapters.fix.market_data import MAX_SNAPSHOT_LEVELS
from tests.adapters.fix.client import RawClient
from tests.adapters.fix.venue import SOL, FixVenue, order

BTC = "BTC_USDC"

pytestmark = pytest.mark.usefixtures("_close_clients")


def entries(message: Message) -> list[tuple[str | None, ...]]:
    """(action, type, price, size) per MDEntry, in order (the action is absent in a snapshot)."""
    out: list[tuple[str | None, ...]] = []
    current: dict[int, str] = {}
    for tag, value in message.fields:
        if tag in (279, 269) and (tag in current or (tag == 269 and 269 in current)):
            out.append((current.get(279), current.get(269), current.get(270), current.get(271)))
            current = {}
        if tag in (279, 269, 270, 271):
            current[tag] = value
    if current:
        out.append((current.get(279), current.get(269), current.get(270), current.get(271)))
    return out


async def next_of(client: RawClient, msg_type: str) -> Message:
    while True:
        message = await client.read()
        assert message is not None
        if message.msg_type == msg_type:
            return message


async def place(client: RawClient, *orders: list[tuple[int, str]]) -> None:
    for body in orders:
        await client.send("D", body)
        while True:  # reports of earlier fills may come first
            report = await next_of(client, "8")
            if report.get(11) == body[0][1] and report.get(150) == "0":
                break


async def test_market_depth_limits_snapshot_and_updates_to_the_top_levels(venue: FixVenue) -> None:
    with trio.fail_after(15):
        maker = await venue.logon("MAKER", await venue.account(SOL="10", USDC="1000"))
        taker = await venue.logon("TAKER", await venue.account(USDC="1000"))
        await place(maker, order("a1", "2", "1", "100"), order("a2", "2", "1", "101"), order("a3", "2", "1", "102"),
                    order("b1", "1", "1", "90"), order("b2", "1", "1", "89"))
        await taker.send("V", [(262, "top2"), (263, "1"), (264, "2"), (267, [[(269, "0")], [(269, "1")]]),
                               (146, [[(55, SOL)]])])
        snapshot = await taker.expect("W")
        assert entries(snapshot) == [(None, "0", "90", "1"), (None, "0", "89", "1"),
                                     (None, "1", "100", "1"), (None, "1", "101", "1")]
        await taker.send("D", order("t1", "1", "1", "100"))  # takes the 100 ask: 102 enters the top 2
        update = await next_of(taker, "X")
        assert entries(update) == [("2", "1", "100", None), ("0", "1", "102", "1")]
        await place(maker, order("a4", "2", "1", "103"))  # outside the top 2: nothing to report
        await place(maker, order("a5", "2", "0.5", "101"))  # a size change inside it
        update = await next_of(taker, "X")
        assert entries(update) == [("1", "1", "101", "1.5")]
        await place(maker, order("b3", "1", "1", "91"))  # a better bid pushes 89 out
        update = await next_of(taker, "X")
        assert entries(update) == [("2", "0", "89", None), ("0", "0", "91", "1")]


async def test_market_depth_zero_is_the_full_book_and_garbage_is_refused(venue: FixVenue) -> None:
    with trio.fail_after(15):
        maker = await venue.logon("MAKER", await venue.account(SOL="10"))
        await place(maker, *(order(f"a{i}", "2", "1", str(100 + i)) for i in range(5)))
        await maker.send("V", [(262, "all"), (263, "0"), (264, "0"), (267, [[(269, "1")]]), (146, [[(55, SOL)]])])
        assert [e[2] for e in entries(await next_of(maker, "W"))] == ["100", "101", "102", "103", "104"]
        await maker.send("V", [(262, "neg"), (263, "0"), (264, "-1"), (267, [[(269, "1")]]), (146, [[(55, SOL)]])])
        refused = await next_of(maker, "Y")
        assert (refused.get(262), refused.get(281)) == ("neg", "5")


async def test_full_book_updates_say_new_for_a_level_the_client_does_not_hold(venue: FixVenue) -> None:
    """Regression: with MarketDepth 0, every level in an X was 279=1 Change, also a level the snapshot did
    not have; a client that follows FIX (Change only for an entry it holds) dropped those. Now 0 New for a
    level the client does not hold, 1 for one it holds, 2 when one it holds empties."""
    with trio.fail_after(15):
        maker = await venue.logon("MAKER", await venue.account(SOL="10", USDC="1000"))
        taker = await venue.logon("TAKER", await venue.account(USDC="1000"))
        await place(maker, order("a1", "2", "2", "100"))
        await taker.send("V", [(262, "full"), (263, "1"), (264, "0"), (267, [[(269, "0")], [(269, "1")]]),
                               (146, [[(55, SOL)]])])
        assert entries(await taker.expect("W")) == [(None, "1", "100", "2")]
        await place(maker, order("b1", "1", "1", "95"))
        assert entries(await next_of(taker, "X")) == [("0", "0", "95", "1")]
        await place(maker, order("a2", "2", "1", "101"))
        assert entries(await next_of(taker, "X")) == [("0", "1", "101", "1")]
        await place(maker, order("a3", "2", "1", "101"))
        assert entries(await next_of(taker, "X")) == [("1", "1", "101", "2")]
        await taker.send("D", order("t1", "1", "2", "100"))  # empties the 100 level the snapshot had
        assert entries(await next_of(taker, "X")) == [("2", "1", "100", None)]
        await place(maker, order("a4", "2", "1", "100"))  # the level is back: New again
        assert entries(await next_of(taker, "X")) == [("0", "1", "100", "1")]


async def test_a_full_book_snapshot_carries_at_most_the_best_1000_levels_per_side(venue: FixVenue) -> None:
    """A W for MarketDepth 0 on a deep book is bounded (it was rebuilt and sent whole for every batch a full-refresh
    subscriber saw); a MarketDepth above the bound is refused, naming it."""
    with trio.fail_after(60):
        maker = await venue.logon("MAKER", await venue.account(USDC="1000000"))
        levels = MAX_SNAPSHOT_LEVELS + 5
        bids = [[(55, BTC) if t == 55 else (t, v) for t, v in order(f"b{i}", "1", "0.01", f"{1000 + i}")]
                for i in range(levels)]
        await maker.send_raw(b"".join(maker.build("D", body) for body in bids))
        for _ in range(levels):
            assert (await next_of(maker, "8")).get(150) == "0"
        await maker.send("V", [(262, "deep"), (263, "0"), (264, "0"), (267, [[(269, "0")]]), (146, [[(55, BTC)]])])
        prices = [e[2] for e in entries(await next_of(maker, "W"))]
        assert prices == [str(1000 + i) for i in range(levels - 1, levels - 1 - MAX_SNAPSHOT_LEVELS, -1)]  # best first
        await maker.send("V", [(262, "deeper"), (263, "0"), (264, str(MAX_SNAPSHOT_LEVELS + 1)), (267, [[(269, "0")]]),
                               (146, [[(55, BTC)]])])
        refused = await next_of(maker, "Y")
        assert (refused.get(262), refused.get(281), refused.get(58)) == (
            "deeper", "5", f"MarketDepth (264) is at most {MAX_SNAPSHOT_LEVELS} levels per side")
