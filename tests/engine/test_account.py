"""One account's ledger (engine/account.py): locks, holds, client ids, settlement, funds moves."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.messages import (
    ASK,
    BID,
    IOC,
    NO_CLIENT_ID,
    Deposit,
    Deposited,
    OrderPlaced,
    Rejection,
    Transfer,
    Transferred,
    Withdraw,
    Withdrawn,
)
from engine.units import MAX_AMOUNT
from tests.engine.helpers import NOW_US, SOL_USDC, cancel, fund, limit, make_venue, market, open_account, place

SOL = 10**9
USDC = 10**6


@pytest.fixture
def v() -> SimpleNamespace:
    """Account ``a`` holds 10 SOL and 1000 USDC; ``b`` is a funded counterparty."""
    venue = make_venue()
    a, b = open_account(venue), open_account(venue)
    for account_id in (a, b):
        fund(venue, account_id, "SOL", "10")
        fund(venue, account_id, "USDC", "1000")
    return SimpleNamespace(venue=venue, a=a, b=b, acct=venue.accounts[a], spec=venue.specs[SOL_USDC])


def placed(venue, cmd) -> OrderPlaced:
    event = place(venue, cmd)
    assert isinstance(event, OrderPlaced), event
    return event


# --- decide_place: what to hold -------------------------------------------------------------


def test_limit_bid_holds_exactly_price_times_quantity_in_quote(v) -> None:
    cmd = limit(v.venue, v.a, BID, "100.5", "2")
    assert v.acct.decide_place(cmd, v.spec) == ("USDC", 201 * USDC)


def test_limit_ask_holds_exactly_the_base_quantity(v) -> None:
    cmd = limit(v.venue, v.a, ASK, "100.5", "1.5")
    assert v.acct.decide_place(cmd, v.spec) == ("SOL", 1_500_000_000)


def test_market_orders_hold_their_quote_or_base_or_everything_available(v) -> None:
    decide = v.acct.decide_place
    assert decide(market(v.venue, v.a, BID, quote="12.5"), v.spec) == ("USDC", 12_500_000)
    assert decide(market(v.venue, v.a, BID, qty="1"), v.spec) == ("USDC", 1000 * USDC)  # price unknown: all
    assert decide(market(v.venue, v.a, ASK, qty="0.25"), v.spec) == ("SOL", SOL // 4)
    assert decide(market(v.venue, v.a, ASK, quote="50"), v.spec) == ("SOL", 10 * SOL)  # quantity unknown: all


def test_exact_funds_are_enough_and_one_tick_more_is_not(v) -> None:
    assert v.acct.decide_place(limit(v.venue, v.a, BID, "100", "10"), v.spec) == ("USDC", 1000 * USDC)
    assert v.acct.decide_place(limit(v.venue, v.a, BID, "100.01", "10"), v.spec) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: the order needs 1000.1 USDC, available 1000 USDC"
    )
    assert v.acct.decide_place(limit(v.venue, v.a, ASK, "1", "10.01"), v.spec) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: the order needs 10.01 SOL, available 10 SOL"
    )


def test_market_order_with_nothing_available_is_refused(v) -> None:
    empty = open_account(v.venue)
    assert v.venue.accounts[empty].decide_place(market(v.venue, empty, BID, qty="1"), v.spec) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: the order needs 0.000001 USDC, available 0 USDC"
    )


def test_locked_and_held_funds_are_not_available(v) -> None:
    placed(v.venue, limit(v.venue, v.a, BID, "100", "6"))  # locks 600 USDC
    assert v.acct.available("USDC") == 400 * USDC
    v.acct.hold(99, "USDC", 300 * USDC, NO_CLIENT_ID)
    assert v.acct.available("USDC") == 100 * USDC
    assert v.venue.balances(v.a)["USDC"] == {"available": "100", "locked": "900", "staked": "0"}
    assert v.acct.decide_place(limit(v.venue, v.a, BID, "100", "1.01"), v.spec) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: the order needs 101 USDC, available 100 USDC"
    )
    v.acct.release_hold(99)
    assert v.acct.available("USDC") == 400 * USDC


# --- holds ------------------------------------------------------------------------------------


def test_hold_and_release_hold(v) -> None:
    acct = v.acct
    acct.hold(7, "USDC", 250 * USDC, 42)
    acct.hold(8, "SOL", SOL, NO_CLIENT_ID)
    assert acct.holds == {7: ("USDC", 250 * USDC), 8: ("SOL", SOL)}
    assert acct.held == {"USDC": 250 * USDC, "SOL": SOL}
    assert acct.pending_client_ids == {42}
    with pytest.raises(Exception, match="still holds"):
        v.venue.check_invariants()
    v.venue.check_invariants(idle=False)  # in flight, holds are legitimate
    acct.release_hold(7, 42)
    acct.release_hold(7, 42)  # a second release (e.g. refusal after settle) must not release twice
    acct.release_hold(123)  # unknown order: nothing to do
    assert acct.held == {"USDC": 0, "SOL": SOL} and acct.pending_client_ids == set()
    acct.release_hold(8)
    v.venue.check_invariants()


def test_two_holds_for_one_order_are_both_released(v) -> None:
    v.acct.hold(5, "USDC", 100 * USDC, NO_CLIENT_ID)
    v.acct.hold(5, "USDC", 50 * USDC, NO_CLIENT_ID)
    assert v.acct.available("USDC") == 850 * USDC
    v.acct.release_hold(5)
    v.acct.release_hold(5)
    assert v.acct.available("USDC") == 1000 * USDC


def test_holds_are_not_part_of_the_state_hash(v) -> None:
    before = v.venue.state_hash()
    v.acct.hold(7, "USDC", USDC, 5)
    assert v.venue.state_hash() == before


def _ledger(account) -> tuple:
    """Everything the ledger holds; zero amounts are the same as absent ones (as in the state hash)."""

    def nonzero(amounts: dict[str, int]) -> dict[str, int]:
        return {k: n for k, n in amounts.items() if n}

    return (nonzero(account.balances), nonzero(account.locked), nonzero(account.held), account.holds,
            account.pending_client_ids,
            account.client_ids, {k: (o.symbol, o.side, o.price_ticks, o.lock, o.client_id, o.asset)
                                 for k, o in account.orders.items()})


@pytest.mark.parametrize(
    ("side", "price", "qty", "tif", "client_id"),
    [(BID, "99", "2", "GTC", NO_CLIENT_ID), (ASK, "120", "1.5", "GTC", 11), (BID, "90", "1", IOC, 12)],
)
def test_reserve_then_settle_unfilled_equals_hold_then_general_settlement(v, side, price, qty, tif, client_id) -> None:
    """The actors' one-step paths (reserve_place, settle_unfilled) leave the ledger as hold + release + apply do."""
    twin = make_venue()  # the same venue as the fixture's, settled the general way
    for account_id in (open_account(twin), open_account(twin)):
        fund(twin, account_id, "SOL", "10")
        fund(twin, account_id, "USDC", "1000")
    fast, slow = v.venue.accounts[v.a], twin.accounts[v.a]
    cmd_fast = limit(v.venue, v.a, side, price, qty, client_id=client_id, tif=tif)
    cmd_slow = limit(twin, v.a, side, price, qty, client_id=client_id, tif=tif)
    assert fast.reserve_place(cmd_fast, v.spec) is None
    asset, atoms = slow.decide_place(cmd_slow, v.spec)
    slow.hold(cmd_slow.order_id, asset, atoms, cmd_slow.client_id)
    cmd_slow.lock = atoms
    assert cmd_fast.lock == cmd_slow.lock and _ledger(fast) == _ledger(slow)
    e_fast = v.venue.markets[SOL_USDC].decide_place(cmd_fast, NOW_US)
    e_slow = twin.markets[SOL_USDC].decide_place(cmd_slow, NOW_US)
    assert e_fast == e_slow and not e_fast.fills
    v.venue.markets[SOL_USDC].apply_placed(e_fast)
    twin.markets[SOL_USDC].apply_placed(e_slow)
    fast.settle_unfilled(e_fast, v.spec)
    slow.release_hold(e_slow.order_id, e_slow.client_id, e_slow.lock)
    slow.apply_placed(e_slow, v.spec)
    assert _ledger(fast) == _ledger(slow) and fast.holds == {} and fast.held[asset] == 0
    assert (e_fast.order_id in fast.orders) == (tif == "GTC")
    v.venue.check_invariants()
    assert v.venue.state_hash() == twin.state_hash()


# --- client ids ---------------------------------------------------------------------------------


def test_duplicate_client_id_of_a_resting_order_is_rejected(v) -> None:
    placed(v.venue, limit(v.venue, v.a, BID, "100", "1", client_id=7))
    assert v.acct.client_ids == {7: 1}
    refused = place(v.venue, limit(v.venue, v.a, ASK, "120", "1", client_id=7))
    assert refused == Rejection("INVALID_ORDER", "Order with client ID already exists: 7")
    assert placed(v.venue, limit(v.venue, v.a, ASK, "120", "1", client_id=8)).status == "New"
    # another account may use the same client id
    assert placed(v.venue, limit(v.venue, v.b, BID, "99", "1", client_id=7)).status == "New"


def test_client_id_of_an_order_in_flight_is_taken(v) -> None:
    cmd = limit(v.venue, v.a, BID, "100", "1", client_id=9)
    v.acct.hold(cmd.order_id, "USDC", 100 * USDC, 9)
    again = limit(v.venue, v.a, BID, "100", "1", client_id=9)
    assert v.acct.decide_place(again, v.spec) == Rejection("INVALID_ORDER", "Order with client ID already exists: 9")
    v.acct.release_hold(cmd.order_id, 9)
    assert v.acct.decide_place(again, v.spec) == ("USDC", 100 * USDC)


def test_client_id_is_free_again_once_the_order_is_closed(v) -> None:
    order_id = placed(v.venue, limit(v.venue, v.a, BID, "100", "1", client_id=5)).order_id
    cancel(v.venue, v.a, order_id)
    assert v.acct.client_ids == {}
    placed(v.venue, limit(v.venue, v.b, ASK, "100", "1"))
    assert placed(v.venue, limit(v.venue, v.a, BID, "100", "1", client_id=5)).status == "Filled"
    assert v.acct.client_ids == {}  # filled on arrival: never registered
    maker = placed(v.venue, limit(v.venue, v.a, ASK, "101", "1", client_id=5)).order_id
    placed(v.venue, limit(v.venue, v.b, BID, "101", "1"))  # fills the maker completely
    assert maker not in v.acct.orders and v.acct.client_ids == {}
    assert placed(v.venue, limit(v.venue, v.a, ASK, "101", "1", client_id=5)).status == "New"


# --- settlement ------------------------------------------------------------------------------------


def test_taker_settlement_with_fee(v) -> None:
    placed(v.venue, limit(v.venue, v.b, ASK, "100", "2"))
    e = placed(v.venue, limit(v.venue, v.a, BID, "100", "1.5"))
    assert e.status == "Filled"
    assert v.acct.balances == {"SOL": 10 * SOL + 1_500_000_000 - 750_000, "USDC": 850 * USDC}
    assert v.acct.locked == {"USDC": 0}
    assert v.acct.orders == {}


def test_maker_settlement_partial_then_full(v) -> None:
    maker = placed(v.venue, limit(v.venue, v.a, BID, "50", "4", client_id=3)).order_id
    assert (v.acct.locked["USDC"], v.acct.orders[maker].lock) == (200 * USDC, 200 * USDC)
    placed(v.venue, limit(v.venue, v.b, ASK, "50", "1"))
    # paid 50 USDC from the lock; received 1 SOL less 2 bps (0.0002)
    assert v.acct.balances == {"SOL": 10 * SOL + SOL - 200_000, "USDC": 950 * USDC}
    assert (v.acct.locked["USDC"], v.acct.orders[maker].lock) == (150 * USDC, 150 * USDC)
    placed(v.venue, market(v.venue, v.b, ASK, qty="3"))
    assert v.acct.balances == {"SOL": 14 * SOL - 800_000, "USDC": 800 * USDC}
    assert v.acct.locked["USDC"] == 0
    assert maker not in v.acct.orders and v.acct.client_ids == {}


def test_limit_bid_filled_at_a_better_price_releases_the_surplus(v) -> None:
    placed(v.venue, limit(v.venue, v.b, ASK, "90", "1"))
    e = placed(v.venue, limit(v.venue, v.a, BID, "100", "2"))  # held 200, pays 90, rests 1 @ 100
    assert (e.lock, e.status) == (200 * USDC, "PartiallyFilled")
    assert v.acct.balances["USDC"] == 910 * USDC
    assert v.acct.locked["USDC"] == 100 * USDC
    assert v.acct.available("USDC") == 810 * USDC
    assert v.acct.held == {"USDC": 0}


def test_ioc_bid_filled_at_a_better_price_keeps_nothing_locked(v) -> None:
    placed(v.venue, limit(v.venue, v.b, ASK, "90", "1"))
    placed(v.venue, limit(v.venue, v.a, BID, "100", "3", tif=IOC))
    assert (v.acct.balances["USDC"], v.acct.locked["USDC"]) == (910 * USDC, 0)


def test_fee_account_collects_both_sides_fees(v) -> None:
    placed(v.venue, limit(v.venue, v.b, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.a, BID, "100", "1"))
    fees = v.venue.accounts[0]
    assert fees.balances == {"SOL": 500_000, "USDC": 20_000}
    assert fees.net_deposits == {}


# --- withdrawals, deposits, transfers ------------------------------------------------------------------


def test_withdraw_up_to_available_only(v) -> None:
    placed(v.venue, limit(v.venue, v.a, ASK, "100", "4"))  # 4 SOL locked
    assert v.acct.decide_withdraw(Withdraw(v.a, "SOL", 6 * SOL + 1, 1), NOW_US, 9) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: withdrawal of 6.000000001 SOL exceeds available 6 SOL"
    )
    e = v.acct.decide_withdraw(Withdraw(v.a, "SOL", 6 * SOL, 2), NOW_US, 9)
    assert e == Withdrawn(2, v.a, "SOL", 6 * SOL, NOW_US)
    v.venue.apply(e)
    v.venue.check_invariants()
    assert v.acct.balances["SOL"] == 4 * SOL and v.acct.net_deposits["SOL"] == 4 * SOL


def test_deposits_cannot_take_the_venue_total_past_the_ledger(v) -> None:
    """The bound is venue-wide, not per account: transfers and trades gather balances into one account
    (five sub-accounts each holding just under the per-account bound once overflowed their main)."""
    half = MAX_AMOUNT // 2
    deposited = v.acct.decide_deposit(Deposit(v.a, "USDC", half), NOW_US, v.venue.supply.get("USDC", 0))
    assert deposited == Deposited(v.a, "USDC", half, NOW_US)
    v.venue.apply(deposited)
    other = open_account(v.venue)
    refused = v.venue.accounts[other].decide_deposit(Deposit(other, "USDC", half), NOW_US, v.venue.supply["USDC"])
    assert refused == Rejection(
        "INVALID_QUANTITY", "Deposit would take the venue's total USDC past the largest amount the ledger holds"
    )
    v.venue.check_invariants()


@pytest.fixture
def family(v) -> SimpleNamespace:
    """``a`` is a main account with subs ``s1`` and ``s2``; ``b`` is another main account."""
    v.s1 = open_account(v.venue, parent_id=v.a)
    v.s2 = open_account(v.venue, parent_id=v.a)
    fund(v.venue, v.s1, "USDC", "50")
    return v


def _transfer(v, src: int, dst: int, amount: int) -> Transferred | Rejection:
    accounts = v.venue.accounts
    return accounts[src].decide_transfer(Transfer(src, dst, "USDC", amount), accounts[dst].parent_id, NOW_US, 6)


def test_transfers_between_main_and_sub_accounts(family) -> None:
    v = family
    down = _transfer(v, v.a, v.s2, 300 * USDC)
    assert down == Transferred(v.a, v.s2, "USDC", 300 * USDC, NOW_US)
    v.venue.apply(down)
    up = _transfer(v, v.s1, v.a, 50 * USDC)
    assert isinstance(up, Transferred)
    v.venue.apply(up)
    v.venue.check_invariants()
    balances = {i: v.venue.accounts[i].balances.get("USDC", 0) for i in (v.a, v.s1, v.s2)}
    assert balances == {v.a: 750 * USDC, v.s1: 0, v.s2: 300 * USDC}


@pytest.mark.parametrize(("src", "dst"), [("s1", "s2"), ("a", "b"), ("b", "s1"), ("s1", "b")])
def test_transfers_outside_one_family_are_forbidden(family, src: str, dst: str) -> None:
    v = family
    assert _transfer(v, getattr(v, src), getattr(v, dst), USDC) == Rejection(
        "FORBIDDEN", "Transfers are only allowed between a main account and its sub-accounts"
    )


def test_transfer_needs_available_funds(family) -> None:
    v = family
    placed(v.venue, limit(v.venue, v.s1, BID, "10", "4"))  # locks 40 of its 50 USDC
    assert _transfer(v, v.s1, v.a, 10_000_001) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: transfer of 10.000001 USDC exceeds available 10 USDC"
    )
    assert isinstance(_transfer(v, v.s1, v.a, 10 * USDC), Transferred)

