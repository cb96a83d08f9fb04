"""Builders for engine unit tests: a default venue, funded accounts, and the order flow.

Everything here drives the sans-IO state objects synchronously, the way the
runtime's actors do (account decides and holds -> market decides -> the account
releases its hold -> every owner applies the event), with no trio.

Amounts are written as decimal strings in the units a user sees ("100.5" USDC,
"1.25" SOL) and converted exactly with the venue's specs.

API
    make_venue(**overrides)          Venue from the default config; overrides patch
                                     markets.SOL_USDC (e.g. maker_fee_bps=0, state="Closed")
    open_account(venue, parent_id=-1) -> account id (AccountCreated applied)
    fund(venue, account_id, asset, "amount")
    limit(venue, account_id, side, "price", "qty", **opts) -> PlaceOrder
    market(venue, account_id, side, qty="...", quote="...", **opts) -> PlaceOrder
    place(venue, cmd) -> OrderPlaced | Rejection     (runs check_invariants after)
    cancel(venue, account_id, order_id) -> OrderCancelled | Rejection
    amend(venue, account_id, order_id, price="...", qty="...") -> OrderAmended | Rejection
    set_state(venue, state)
    atoms(venue, asset, "amount") -> int; ticks/steps(venue, "text", symbol) -> int
"""

from __future__ import annotations

import copy
from typing import Any

from engine.config import DEFAULT, parse_config
from engine.messages import (
    GTC,
    LIMIT,
    MARKET,
    NO_CLIENT_ID,
    REJECT_TAKER,
    AccountCreated,
    AmendOrder,
    CancelOrder,
    Deposited,
    MarketStateChanged,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    Rejection,
)
from engine.units import parse_units
from engine.venue import Venue

SOL_USDC = "SOL_USDC"
NOW_US = 1_700_000_000_000_000


def make_venue(**sol_usdc_overrides: Any) -> Venue:
    """A venue built from ``engine.config.DEFAULT``; keyword args patch markets.SOL_USDC."""
    data = copy.deepcopy(DEFAULT)
    data["markets"][SOL_USDC].update(sol_usdc_overrides)
    return Venue(parse_config(data))


def open_account(venue: Venue, parent_id: int = -1, country: str = "", category: str = "retail") -> int:
    account_id = venue.next_account_id
    venue.apply(AccountCreated(account_id, parent_id, country, category, NOW_US))
    return account_id


def atoms(venue: Venue, asset: str, amount: str) -> int:
    """A decimal amount of ``asset`` in atomic units."""
    return parse_units(amount, venue.assets[asset].decimals)


def ticks(venue: Venue, price: str, symbol: str = SOL_USDC) -> int:
    return venue.specs[symbol].price_ticks(price)


def steps(venue: Venue, qty: str, symbol: str = SOL_USDC) -> int:
    return venue.specs[symbol].qty_steps(qty)


def fund(venue: Venue, account_id: int, asset: str, amount: str) -> None:
    venue.apply(Deposited(account_id, asset, atoms(venue, asset, amount), NOW_US))


def _next_order_id(venue: Venue) -> int:
    order_id = venue.next_order_id
    venue.next_order_id += 1
    return order_id


def limit(
    venue: Venue, account_id: int, side: str, price: str, qty: str, *, symbol: str = SOL_USDC,
    tif: str = GTC, post_only: bool = False, stp: str = REJECT_TAKER, client_id: int = NO_CLIENT_ID,
) -> PlaceOrder:
    """A limit order command with a fresh order id."""
    return PlaceOrder(
        _next_order_id(venue), account_id, symbol, side, LIMIT, tif, ticks(venue, price, symbol),
        steps(venue, qty, symbol), 0, post_only, stp, client_id,
    )


def market(
    venue: Venue, account_id: int, side: str, *, qty: str | None = None, quote: str | None = None,
    symbol: str = SOL_USDC, tif: str = GTC, stp: str = REJECT_TAKER, client_id: int = NO_CLIENT_ID,
) -> PlaceOrder:
    """A market order sized by base ``qty`` or by ``quote`` (quoteQuantity), exactly one."""
    assert (qty is None) != (quote is None), "give exactly one of qty or quote"
    spec = venue.specs[symbol]
    return PlaceOrder(
        _next_order_id(venue), account_id, symbol, side, MARKET, tif, 0,
        spec.qty_steps(qty) if qty is not None else 0,
        spec.quote_amount(quote) if quote is not None else 0,
        False, stp, client_id,
    )


def place(venue: Venue, cmd: PlaceOrder, now_us: int = NOW_US) -> OrderPlaced | Rejection:
    """Run one order through account and market; apply it; check every invariant."""
    account = venue.accounts[cmd.account_id]
    decided = account.decide_place(cmd, venue.specs[cmd.symbol])
    if isinstance(decided, Rejection):
        return decided
    asset, held = decided
    account.hold(cmd.order_id, asset, held, cmd.client_id)
    cmd.lock = held
    event = venue.markets[cmd.symbol].decide_place(cmd, now_us)
    account.release_hold(cmd.order_id, cmd.client_id)
    if isinstance(event, OrderPlaced):
        venue.apply(event)
    venue.check_invariants()
    return event


def cancel(
    venue: Venue, account_id: int, order_id: int, symbol: str = SOL_USDC, now_us: int = NOW_US
) -> OrderCancelled | Rejection:
    event = venue.markets[symbol].decide_cancel(CancelOrder(account_id, symbol, order_id), now_us)
    if isinstance(event, OrderCancelled):
        venue.apply(event)
    venue.check_invariants()
    return event


def amend(
    venue: Venue, account_id: int, order_id: int, *, price: str | None = None, qty: str | None = None,
    symbol: str = SOL_USDC, now_us: int = NOW_US,
) -> OrderAmended | Rejection:
    """Amend a resting order: the account holds the worst-case extra, the market decides."""
    cmd = AmendOrder(
        account_id, symbol, order_id, NO_CLIENT_ID,
        ticks(venue, price, symbol) if price is not None else 0,
        steps(venue, qty, symbol) if qty is not None else 0,
    )
    account = venue.accounts[account_id]
    decided = account.decide_amend_hold(cmd, venue.specs[symbol])
    if isinstance(decided, Rejection):
        return decided
    asset, held = decided
    account.hold(order_id, asset, held, NO_CLIENT_ID)
    cmd.hold = held
    event = venue.markets[symbol].decide_amend(cmd, now_us)
    account.release_hold(order_id)
    if isinstance(event, OrderAmended):
        venue.apply(event)
    venue.check_invariants()
    return event


def set_state(venue: Venue, state: str, symbol: str = SOL_USDC) -> None:
    venue.apply(MarketStateChanged(symbol, state, NOW_US))
