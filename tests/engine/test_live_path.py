"""The live one-step paths against the general decide/apply path, on twin venues.

The market actor places orders with ``Market.place`` (decide and apply in one
step) and settles accounts with ``Account.reserve_place`` / ``settle_unfilled``
/ ``settle_taker`` / ``settle_maker_fill`` / ``settle_fees``; replay and the
general path use ``decide_place`` + ``apply_placed`` everywhere. Hypothesis
drives both venues through the same random flow (several accounts that also
trade with themselves, every time in force, post-only, every STP mode, client
ids, market orders, cancels) and requires the same events, books, ledgers
(holds included) and state hash after every step.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.messages import (
    ASK,
    BID,
    FOK,
    GTC,
    IOC,
    NO_CLIENT_ID,
    REJECT_BOTH,
    REJECT_MAKER,
    REJECT_TAKER,
    OrderPlaced,
    PlaceOrder,
    Rejection,
)
from engine.venue import Venue
from tests.engine.helpers import NOW_US, SOL_USDC, cancel, fund, limit, make_venue, market, open_account, place, ticks

N_ACCOUNTS = 3
PRICES = ("99", "99.5", "99.99", "100", "100.01", "100.5", "101", "140")  # 140 is outside the band once trading
QTYS = ("0.01", "0.5", "1", "2.37", "5")


def _venue() -> Venue:
    venue = make_venue()
    for _ in range(N_ACCOUNTS):
        account_id = open_account(venue)
        fund(venue, account_id, "SOL", "1000")
        fund(venue, account_id, "USDC", "100000")
    return venue


def live_place(venue: Venue, cmd: PlaceOrder) -> OrderPlaced | Rejection:
    """The order as the actors handle it when every account actor is idle (actors.py: admit, run, _forward)."""
    spec = venue.specs[cmd.symbol]
    account = venue.accounts[cmd.account_id]
    refused = account.reserve_place(cmd, spec)
    if refused is not None:
        return refused
    event = venue.markets[cmd.symbol].place(cmd, NOW_US)
    if isinstance(event, Rejection):
        account.release_hold(cmd.order_id, cmd.client_id, cmd.lock)
        return event
    if not event.fills:
        account.settle_unfilled(event, spec)
    else:
        account.settle_taker(event, spec)
        for f in event.fills:
            venue.accounts[f.maker_account_id].settle_maker_fill(f, spec)
        if any(f.maker_fee > 0 or f.taker_fee > 0 for f in event.fills):
            venue.accounts[0].settle_fees(event, spec)
    venue.check_invariants()
    return event


def _ledger(venue: Venue) -> list[Any]:
    out: list[Any] = []
    for account in venue.accounts.values():
        out.append((
            {k: n for k, n in account.balances.items() if n}, {k: n for k, n in account.locked.items() if n},
            {k: n for k, n in account.held.items() if n}, account.holds, account.pending_client_ids,
            account.client_ids,
            {k: (o.symbol, o.side, o.price_ticks, o.lock, o.client_id, o.asset) for k, o in account.orders.items()},
        ))
    return out


def _book(venue: Venue) -> list[Any]:
    market = venue.markets[SOL_USDC]
    book = market.book
    levels = [
        (side, price, level.steps, [
            (o.order_id, o.account_id, o.remaining_steps, o.qty_steps, o.executed_quote, o.client_id, o.created_us)
            for o in level.values()
        ])
        for side in (BID, ASK) for price, level in book.levels(side)
    ]
    return [levels, book.bid_keys, book.ask_prices, market.last_price, market.next_trade_id]


_order = st.fixed_dictionaries({
    "kind": st.sampled_from(["limit"] * 8 + ["market", "cancel"]),
    "account": st.integers(1, N_ACCOUNTS),
    "side": st.sampled_from([BID, ASK]),
    "price": st.sampled_from(PRICES),
    "qty": st.sampled_from(QTYS),
    "tif": st.sampled_from([GTC, GTC, GTC, IOC, FOK]),
    "post_only": st.sampled_from([False, False, False, True]),
    "stp": st.sampled_from([REJECT_TAKER, REJECT_MAKER, REJECT_BOTH]),
    "client_id": st.sampled_from([NO_CLIENT_ID, NO_CLIENT_ID, 1, 2]),
    "nth": st.integers(0, 50),
})


@settings(max_examples=150, deadline=None)
@given(st.lists(_order, min_size=1, max_size=60))
def test_live_one_step_paths_equal_the_general_path(flow: list[dict[str, Any]]) -> None:
    fast, slow = _venue(), _venue()
    for op in flow:
        if op["kind"] == "cancel":  # cancels go the same way on both; they shape the books
            resting = sorted(fast.markets[SOL_USDC].book.orders)
            if resting:
                order_id = resting[op["nth"] % len(resting)]
                owner = fast.markets[SOL_USDC].book.orders[order_id].account_id
                assert cancel(fast, owner, order_id) == cancel(slow, owner, order_id)
            continue
        args = (op["account"], op["side"])
        if op["kind"] == "market":
            cmds = [market(v, *args, qty=op["qty"], tif=op["tif"], stp=op["stp"]) for v in (fast, slow)]
        else:
            post_only = op["post_only"] and op["tif"] == GTC
            cmds = [
                limit(v, *args, op["price"], op["qty"], tif=op["tif"], post_only=post_only, stp=op["stp"],
                      client_id=op["client_id"])
                for v in (fast, slow)
            ]
        assert cmds[0] == cmds[1]
        got, want = live_place(fast, cmds[0]), place(slow, cmds[1])
        assert got == want
        assert cmds[0].lock == cmds[1].lock or isinstance(got, Rejection)
        assert _book(fast) == _book(slow)
        assert _ledger(fast) == _ledger(slow)
        assert fast.state_hash() == slow.state_hash()


def _both(fast: Venue, slow: Venue, account: int, side: str, price: str, qty: str, **opts: Any) -> OrderPlaced:
    """One limit order on both venues, live path on ``fast``: same event, book, ledgers and state hash."""
    cmds = [limit(v, account, side, price, qty, **opts) for v in (fast, slow)]
    got, want = live_place(fast, cmds[0]), place(slow, cmds[1])
    assert got == want
    assert _book(fast) == _book(slow)
    assert _ledger(fast) == _ledger(slow)
    assert fast.state_hash() == slow.state_hash()
    assert isinstance(got, OrderPlaced)
    return got


# asks: account 1 at 100, account 2 (the taker's own) at 100, account 1 at 100.5 and 101, account 2 at 101
_STP_BOOK = ((1, "100", "1"), (2, "100", "0.5"), (1, "100.5", "2"), (1, "101", "1"), (2, "101", "1"))


@pytest.mark.parametrize("tif", [GTC, IOC])
@pytest.mark.parametrize("stp", [REJECT_TAKER, REJECT_BOTH, REJECT_MAKER])
def test_live_path_meets_its_own_order_after_filling_others(stp: str, tif: str) -> None:
    """match_limit stops at the own order with a fill behind it; the live path finishes with walk() and STP."""
    fast, slow = _venue(), _venue()
    for account, price, qty in _STP_BOOK:
        _both(fast, slow, account, ASK, price, qty)
    e = _both(fast, slow, 2, BID, "101", "5", tif=tif, stp=stp)
    assert e.fills[0].maker_account_id == 1
    if stp == REJECT_MAKER:  # own makers cancelled, the rest of the asks taken, the remainder rests (GTC)
        assert (e.status, len(e.fills), len(e.stp_cancelled)) == ("PartiallyFilled" if tif == GTC else "Expired", 3, 2)
    else:
        assert (e.status, e.expiry_reason, len(e.fills)) == ("Expired", "SelfTradePrevention", 1)
        assert len(e.stp_cancelled) == (1 if stp == REJECT_BOTH else 0)
    fast.markets[SOL_USDC].book.check()


def test_live_path_partial_exact_and_ioc_remainders() -> None:
    fast, slow = _venue(), _venue()
    for account, price, qty in ((1, "100", "2"), (2, "100", "1"), (3, "100.5", "1"), (1, "101", "5")):
        _both(fast, slow, account, ASK, price, qty)
    assert _both(fast, slow, 3, BID, "100", "1").status == "Filled"  # partial on the first maker
    assert _both(fast, slow, 3, BID, "100", "2").status == "Filled"  # the rest of it and all of the next: exact
    assert ticks(fast, "100") not in fast.markets[SOL_USDC].book.asks  # the 100 level is gone
    e = _both(fast, slow, 2, BID, "100.5", "3", tif=IOC)  # one maker, then the limit: the rest expires
    assert (e.status, e.expiry_reason, len(e.fills)) == ("Expired", "ImmediateOrCancel", 1)
    assert fast.markets[SOL_USDC].book.bids == {}
    e = _both(fast, slow, 2, BID, "101", "7")  # sweeps the last level and rests the rest
    assert (e.status, len(e.fills)) == ("PartiallyFilled", 1)
    assert fast.markets[SOL_USDC].book.ask_prices == []
    assert _both(fast, slow, 3, ASK, "99", "2", tif=FOK).status == "Filled"  # FOK: decided read-only first
    fast.markets[SOL_USDC].book.check()
