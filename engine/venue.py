"""The whole venue's state as one sans-IO object: registry, accounts, markets.

The runtime splits this state among actors (each market and each account is
owned by one task), but every part's ``apply`` is the same method here and
there. ``Venue.apply`` routes one event to every owner it touches; the stateful
tests drive the venue through it alone. Recovery and ``satchel verify`` replay a
record at a time through ``replay_rows``: the journal's checked rows applied
without building events, to exactly the state ``apply`` gives (tests/engine/test_replay.py).

``state_hash`` covers everything journaled (not live-only holds).
``check_invariants`` is the executable form of ARCHITECTURE.md §3.7 for spot:
conservation per asset, no unexplained negative balance, locks equal open-order
needs, books well formed and never crossed at rest, books and accounts agree.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import orjson

from engine import withdrawals
from engine.account import Account, NewOpenOrder, rest_open
from engine.codec import CancelledRow, PlacedRow, row_event, shared, shared_get
from engine.config import Config
from engine.market import Market
from engine.messages import (
    BID,
    FEE_ACCOUNT_ID,
    NEW,
    NO_CLIENT_ID,
    PARTIALLY_FILLED,
    WITHDRAWAL_STATES,
    AccountCreated,
    ApiKeyAdded,
    Deposited,
    Event,
    MarketStateChanged,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    OrderView,
    Transferred,
    WithdrawalApproved,
    WithdrawalEvent,
    WithdrawalRejected,
    WithdrawalRequested,
    Withdrawn,
)
from engine.spec import AssetSpec, MarketSpec
from engine.units import format_units
from engine.withdrawals import WithdrawalRequest

_RESTING: Final = (NEW, PARTIALLY_FILLED)  # statuses after which the order rests


class InvariantViolation(AssertionError):
    """State that must never exist. The engine stops rather than continue from it."""


class Venue:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.assets = {s: AssetSpec(s, a.decimals, a.display_name) for s, a in config.assets.items()}
        self.specs = {s: MarketSpec.build(s, m, config.assets, config.limits.max_open_orders_per_account)
                      for s, m in config.markets.items()}
        self.markets = {s: Market(spec) for s, spec in self.specs.items()}
        self.accounts: dict[int, Account] = {FEE_ACCOUNT_ID: Account(FEE_ACCOUNT_ID, -1, "", "venue", 0)}
        self.api_keys: dict[str, int] = {}  # public key (base64) -> account id
        self.next_account_id = 1
        self.next_order_id = 1
        self.withdrawal_owner: dict[int, int] = {}  # withdrawal request id -> account id
        self.next_withdrawal_id = 1
        # asset -> every account's balances together (deposits less withdrawals paid out). Deposits keep it
        # below units.MAX_AMOUNT, and trades and transfers only move it between accounts, so every balance,
        # lock and amount stays below it too (what the journal's 64-bit integers need)
        self.supply: dict[str, int] = {}

    # --- apply -----------------------------------------------------------------

    def apply(self, event: Event) -> None:
        t = type(event)
        if t is OrderPlaced:
            self.apply_placed(event)  # type: ignore[arg-type]
        elif t is OrderCancelled:
            self.markets[event.symbol].apply_cancelled(event)  # type: ignore[union-attr, arg-type]
            self.accounts[event.account_id].apply_cancelled(event)  # type: ignore[union-attr, arg-type]
        elif t is OrderAmended:
            spec = self.specs[event.symbol]  # type: ignore[union-attr]
            self.markets[spec.symbol].apply_amended(event)  # type: ignore[arg-type]
            self.accounts[event.account_id].apply_amended(event, spec)  # type: ignore[union-attr, arg-type]
        elif t is Deposited:
            self.accounts[event.account_id].apply_deposited(event)  # type: ignore[union-attr, arg-type]
            self._supply(event.asset, event.amount)  # type: ignore[union-attr]
        elif t is Withdrawn:
            self._withdrawn(self.accounts[event.account_id], event)  # type: ignore[union-attr, arg-type]
        elif t is Transferred:
            self.accounts[event.from_account_id].apply_transferred(event)  # type: ignore[union-attr, arg-type]
            self.accounts[event.to_account_id].apply_transferred(event)  # type: ignore[union-attr, arg-type]
        elif t is AccountCreated:
            self.apply_account_created(event)  # type: ignore[arg-type]
        elif t is ApiKeyAdded:
            self.apply_key_added(event)  # type: ignore[arg-type]
        elif t is MarketStateChanged:
            self.markets[event.symbol].apply_state(event)  # type: ignore[union-attr, arg-type]
        elif t is WithdrawalRequested or t is WithdrawalApproved or t is WithdrawalRejected:
            self.apply_withdrawal(event)  # type: ignore[arg-type]
        else:
            raise InvariantViolation(f"no owner for event {event!r}")

    def apply_batch(self, events: list[Event]) -> None:
        """``apply`` each event in order: replay's loop, with the routing looked up once per batch.

        Same effects as calling ``apply`` per event; the two hottest events (an order
        placed, an order cancelled) skip the type ladder.
        """
        apply, placed, accounts, markets = self.apply, self.apply_placed, self.accounts, self.markets
        for e in events:
            t = type(e)
            if t is OrderPlaced:
                placed(e)  # type: ignore[arg-type]
            elif t is OrderCancelled:
                markets[e.symbol].apply_cancelled(e)  # type: ignore[union-attr, arg-type]
                accounts[e.account_id].apply_cancelled(e)  # type: ignore[union-attr, arg-type]
            else:
                apply(e)

    def replay_rows(self, rows: list[Any]) -> None:
        """Apply checked row structs (``codec.decode_rows``): replay's path, the same effects as ``apply``.

        Why a second apply path: replay spends most of its time building ``OrderPlaced``
        objects and walking venue -> market -> book and venue -> account -> taker/maker
        frames, for the two events that are nearly all of a journal. Here an order
        placed and an order cancelled are applied straight from the row in this one
        frame: the book is changed through ``OrderBook.place``/``take``/``remove`` (its
        structure stays the book's business), and the account arithmetic of
        ``Account._apply_taker``/``_apply_maker``/``_apply_fees`` and ``_close`` is
        written inline. Those account near-copies are kept on purpose: each call cost
        more than the work it did. The rare shapes (STP cancels, a
        fill against the taker's own account or the fee account, the fee account as
        taker) and every other event go through ``apply`` on the decoded event. Tests
        compare both paths' states field by field on the stateful sessions and the
        bench history, and ``book.check()`` holds the books.

        A row's side and STP mode are the shared string objects already (msgspec
        returns the enumerated values themselves, the fallback interns them).
        """
        accounts, markets = self.accounts, self.markets
        legs = {symbol: (m, m.book, m.spec.symbol, m.spec.base, m.spec.quote, m.spec.base_per_step,
                         m.spec.quote_per_tick_step) for symbol, m in markets.items()}
        fee_account = accounts.get(FEE_ACCOUNT_ID)
        placed_row, cancelled_row, resting, new_open_order = PlacedRow, CancelledRow, _RESTING, NewOpenOrder
        top = -1  # the highest order id placed: next_order_id follows it once, after the loop
        last_symbol = None
        for row in rows:
            kind = type(row)
            if kind is placed_row:
                order_id = row.order_id
                if order_id > top:
                    top = order_id
                symbol = row.symbol
                if symbol != last_symbol:  # a journal's rows mostly follow one market: look it up once per run
                    last_symbol = symbol
                    market, book, sym, base_asset, quote_asset, bps, qpts = legs[symbol]
                    take = book.take
                fills = row.fills
                if fills or row.stp_cancelled:
                    account_id = row.account_id
                    # an order that traded: a quarter of a journal, applied right here (a call to a helper
                    # cost 2% of a replay's instructions). The rare shapes go to ``apply_placed`` on the
                    # event: STP cancels, and a fill against the taker's own account or the fee account
                    # (there ``placed_parties`` dispatches that account once, as taker or fee account)
                    plain = not row.stp_cancelled and account_id != FEE_ACCOUNT_ID
                    for fill in fills:
                        if fill.maker_account_id in (account_id, FEE_ACCOUNT_ID):
                            plain = False
                    if not plain:
                        self.apply_placed(row_event(row))  # type: ignore[arg-type]
                        continue
                    side = row.side
                    bid = side == BID
                    pay_asset, get_asset = (quote_asset, base_asset) if bid else (base_asset, quote_asset)
                    taker = accounts[account_id]
                    executed = executed_quote = taker_fees = maker_fees = 0
                    charged = False
                    for fill in fills:
                        maker_order_id = fill.maker_order_id
                        steps = fill.qty_steps
                        maker_fee = fill.maker_fee
                        taker_fee = fill.taker_fee
                        quote = fill.price_ticks * steps * qpts
                        take(maker_order_id, steps, quote)
                        executed += steps
                        executed_quote += quote
                        # the maker's side (Account._apply_maker)
                        maker = accounts[fill.maker_account_id]
                        open_order = maker.orders[maker_order_id]
                        base = steps * bps
                        balances = maker.balances
                        if open_order.side == BID:
                            balances[quote_asset] -= quote
                            maker.locked[quote_asset] -= quote
                            balances[base_asset] = balances.get(base_asset, 0) + base - maker_fee
                            open_order.lock -= quote
                        else:
                            balances[base_asset] -= base
                            maker.locked[base_asset] -= base
                            balances[quote_asset] = balances.get(quote_asset, 0) + quote - maker_fee
                            open_order.lock -= base
                        if open_order.lock == 0:
                            del maker.orders[maker_order_id]
                            if open_order.client_id != NO_CLIENT_ID:
                                maker.client_ids.pop(open_order.client_id, None)
                        taker_fees += taker_fee
                        maker_fees += maker_fee
                        if not charged and (maker_fee > 0 or taker_fee > 0):
                            charged = True
                    market.last_price = fills[-1].price_ticks
                    market.next_trade_id = fills[-1].trade_id + 1
                    rests = row.status in resting
                    if rests:
                        price, qty = row.price_ticks, row.qty_steps
                        price = shared_get(price) or shared(price)
                        book.place(order_id, account_id, side, price, qty, qty - executed, executed_quote, row.client_id,
                                   row.post_only, row.stp, row.ts_us)
                    # the taker's side (Account._apply_taker)
                    if bid:
                        paid, received = executed_quote, executed * bps - taker_fees
                    else:
                        paid, received = executed * bps, executed_quote - taker_fees
                    balances = taker.balances
                    balances[pay_asset] = balances.get(pay_asset, 0) - paid
                    balances[get_asset] = balances.get(get_asset, 0) + received
                    if rests:
                        remaining = qty - executed
                        need = price * remaining * qpts if bid else remaining * bps
                        lock = row.lock
                        if need == lock:
                            need = lock  # share the row's int object, as _apply_taker does
                        rest_open(taker, order_id, sym, pay_asset, side, price, need, row.client_id)
                    else:
                        need = 0
                    locked = taker.locked
                    if pay_asset in locked:
                        locked[pay_asset] += need
                    else:
                        locked[pay_asset] = need
                    if charged:  # the fee account (Account._apply_fees)
                        assert fee_account is not None, "the fee account is created with the venue"
                        balances = fee_account.balances
                        balances[get_asset] = balances.get(get_asset, 0) + taker_fees
                        balances[pay_asset] = balances.get(pay_asset, 0) + maker_fees
                    continue
                # most orders: nothing traded, nothing cancelled
                account_id = row.account_id
                taker = accounts[account_id]
                locked = taker.locked
                side = row.side
                bid = side == BID
                pay_asset = quote_asset if bid else base_asset
                if row.status in resting:
                    price = row.price_ticks
                    price = shared_get(price) or shared(price)
                    qty = row.qty_steps
                    client_id = row.client_id
                    book.place(order_id, account_id, side, price, qty, qty, 0, client_id, row.post_only, row.stp,
                               row.ts_us)
                    need = price * qty * qpts if bid else qty * bps
                    lock = row.lock
                    if need == lock:
                        need = lock  # share the row's int object, as _apply_taker does
                    # the account's open order (rest_open, inline: this is most of a journal)
                    open_order = new_open_order()
                    open_order.symbol = sym
                    open_order.asset = pay_asset
                    open_order.side = side
                    open_order.price_ticks = price
                    open_order.lock = need
                    open_order.client_id = client_id
                    taker.orders[order_id] = open_order
                    if client_id != NO_CLIENT_ID:
                        taker.client_ids[client_id] = order_id
                    if pay_asset in locked:
                        locked[pay_asset] += need
                    else:
                        locked[pay_asset] = need
                elif pay_asset not in locked:  # expired untouched: _apply_taker still adds its 0
                    locked[pay_asset] = 0
            elif kind is cancelled_row:
                symbol = row.symbol
                if symbol != last_symbol:
                    last_symbol = symbol
                    market, book, sym, base_asset, quote_asset, bps, qpts = legs[symbol]
                    take = book.take
                order_id = row.order_id
                book.remove(order_id)
                account = accounts[row.account_id]
                open_order = account.orders.pop(order_id)
                account.locked[open_order.asset] -= open_order.lock
                if open_order.client_id != NO_CLIENT_ID:
                    account.client_ids.pop(open_order.client_id, None)
            else:
                self.apply(row_event(row))
        if top >= self.next_order_id:
            self.next_order_id = top + 1

    def apply_placed(self, e: OrderPlaced) -> None:
        symbol = e.symbol
        spec = self.specs[symbol]
        self.markets[symbol].apply_placed(e)
        accounts = self.accounts
        if e.fills:
            for account_id in placed_parties(e):
                accounts[account_id].apply_placed(e, spec)
        else:  # most orders rest untouched: the taker is the only party
            accounts[e.account_id].apply_placed(e, spec)
        if e.order_id >= self.next_order_id:
            self.next_order_id = e.order_id + 1

    def apply_own(self, account: Account, e: Deposited | Withdrawn | Transferred) -> None:
        """The deciding account's own part of a funds event (a transfer's debit side)."""
        if type(e) is Deposited:
            account.apply_deposited(e)
            self._supply(e.asset, e.amount)
        elif type(e) is Withdrawn:
            self._withdrawn(account, e)
        else:
            account.apply_transferred(e)  # type: ignore[arg-type]

    def _withdrawn(self, account: Account, e: Withdrawn) -> None:
        account.apply_withdrawn(e)
        self._supply(e.asset, -e.amount)
        self.next_withdrawal_id = max(self.next_withdrawal_id, e.withdrawal_id + 1)

    def _supply(self, asset: str, atoms: int) -> None:
        self.supply[asset] = self.supply.get(asset, 0) + atoms

    def apply_withdrawal(self, e: WithdrawalEvent) -> None:
        """A withdrawal request's fact: the account's reservation or payout, and the id index."""
        withdrawals.apply(self.accounts[e.account_id], e)
        if type(e) is WithdrawalApproved:  # paid out: it leaves the venue
            self._supply(e.asset, -e.amount)
        elif type(e) is WithdrawalRequested:
            self.withdrawal_owner[e.request_id] = e.account_id
            self.next_withdrawal_id = max(self.next_withdrawal_id, e.request_id + 1)

    def apply_account_created(self, e: AccountCreated) -> Account:
        account = Account(e.account_id, e.parent_id, e.country, e.category, e.ts_us)
        self.accounts[e.account_id] = account
        self.next_account_id = max(self.next_account_id, e.account_id + 1)
        return account

    def apply_key_added(self, e: ApiKeyAdded) -> None:
        self.accounts[e.account_id].api_keys.append(e.public_key)
        self.api_keys[e.public_key] = e.account_id

    # --- hashing -----------------------------------------------------------------

    def state_hash(self) -> str:
        h = hashlib.blake2b(digest_size=32)
        h.update(orjson.dumps([self.next_account_id, sorted(self.api_keys.items())]))
        for account_id in sorted(self.accounts):
            h.update(orjson.dumps(account_state(self.accounts[account_id])))
        for symbol in sorted(self.markets):
            h.update(orjson.dumps(market_state(self.markets[symbol])))
        return h.hexdigest()

    # --- invariants ------------------------------------------------------------------

    def check_invariants(self, *, idle: bool = True) -> None:
        """Raise InvariantViolation naming the first broken rule.

        ``idle`` means no command is in flight, so live-only holds must be zero.
        """
        try:
            self._check(idle)
        except AssertionError as exc:
            raise InvariantViolation(str(exc)) from None

    def _check(self, idle: bool) -> None:
        totals: dict[str, int] = {}
        external: dict[str, int] = {}
        for account in self.accounts.values():
            _check_account(account, idle)
            for asset, atoms in account.balances.items():
                totals[asset] = totals.get(asset, 0) + atoms
            for asset, atoms in account.net_deposits.items():
                external[asset] = external.get(asset, 0) + atoms
        for asset in set(totals) | set(external) | set(self.supply):
            assert totals.get(asset, 0) == external.get(asset, 0), (
                f"conservation broken for {asset}: balances {totals.get(asset, 0)} != net deposits {external.get(asset, 0)}"
            )
            assert self.supply.get(asset, 0) == totals.get(asset, 0), f"{asset} supply count is stale"
        for request_id, account_id in self.withdrawal_owner.items():
            assert request_id in self.accounts[account_id].withdrawals, f"withdrawal {request_id} index is stale"
        assert len(self.withdrawal_owner) == sum(len(a.withdrawals) for a in self.accounts.values()), (
            "withdrawal index misses requests"
        )
        booked: set[int] = set()
        for market in self.markets.values():
            market.book.check()
            for order in market.book.orders.values():
                owner = self.accounts.get(order.account_id)
                assert owner is not None and order.order_id in owner.orders, f"order {order.order_id} has no owner"
                need = market.lock_for(order.side, order.price_ticks, order.remaining_steps)
                lock = owner.orders[order.order_id].lock
                assert lock == need, f"order {order.order_id} locks {lock}, its remaining quantity needs {need}"
                booked.add(order.order_id)
        for account in self.accounts.values():
            for order_id in account.orders:
                assert order_id in booked, f"account {account.account_id} holds order {order_id} not on any book"

    # --- views -------------------------------------------------------------------------

    def open_orders(self, account_id: int, symbol: str | None = None) -> list[OrderView]:
        """An account's resting orders (in one market, or all), oldest id first."""
        account = self.accounts.get(account_id)
        if account is None:
            return []
        views = []
        for order_id, open_order in account.orders.items():
            if symbol is None or open_order.symbol == symbol:
                market = self.markets[open_order.symbol]
                views.append(market.view(market.book.orders[order_id]))
        return sorted(views, key=lambda v: v.order_id)

    def withdrawal_requests(self, account_id: int | None = None, status: str | None = None) -> list[WithdrawalRequest]:
        """Withdrawal requests (of one account, or all), optionally in one status, oldest first."""
        if status is not None and status not in WITHDRAWAL_STATES:
            raise ValueError(f"status must be one of {', '.join(WITHDRAWAL_STATES)}, got {status!r}")
        if account_id is None:
            accounts = list(self.accounts.values())
        else:
            account = self.accounts.get(account_id)
            accounts = [account] if account is not None else []
        found = [r for a in accounts for r in a.withdrawals.values() if status is None or r.status == status]
        return sorted(found, key=lambda r: r.request_id)

    def open_order(self, account_id: int, symbol: str | None, order_id: int | None,
                   client_id: int | None) -> OrderView | None:
        """One resting order of an account in a market (``None``: any market), by order id or client id;
        None if not open."""
        account = self.accounts.get(account_id)
        if account is None:
            return None
        if order_id is None and client_id is not None:
            order_id = account.client_ids.get(client_id)
        open_order = account.orders.get(order_id) if order_id is not None else None
        if order_id is None or open_order is None or (symbol is not None and open_order.symbol != symbol):
            return None
        market = self.markets[open_order.symbol]
        return market.view(market.book.orders[order_id])

    def balances(self, account_id: int) -> dict[str, dict[str, str]]:
        """Backpack's capital shape: asset -> {available, locked, staked}, decimal strings."""
        account = self.accounts[account_id]
        out = {}
        for asset in sorted(set(account.balances) | set(account.locked)):
            decimals = self.assets[asset].decimals
            locked = account.locked.get(asset, 0) + account.held.get(asset, 0) + account.reserved.get(asset, 0)
            if not account.balances.get(asset, 0) and not locked:
                continue
            out[asset] = {
                "available": format_units(account.balances.get(asset, 0) - locked, decimals),
                "locked": format_units(locked, decimals),
                "staked": "0",
            }
        return out


def placed_parties(e: OrderPlaced) -> list[int]:
    """Accounts an ``OrderPlaced`` touches: the taker, each maker once, the fee account."""
    parties = [e.account_id]
    fees = False
    for f in e.fills:
        if f.maker_account_id not in parties:
            parties.append(f.maker_account_id)
        fees = fees or f.maker_fee > 0 or f.taker_fee > 0
    if fees:
        parties.append(FEE_ACCOUNT_ID)
    return parties


def _check_account(account: Account, idle: bool) -> None:
    aid = account.account_id
    need: dict[str, int] = {}
    for order_id, order in account.orders.items():
        assert order.lock > 0, f"account {aid} order {order_id} rests with no lock"
        need[order.asset] = need.get(order.asset, 0) + order.lock
        if order.client_id >= 0:
            assert account.client_ids.get(order.client_id) == order_id, f"account {aid} client id map stale"
    assert len(account.client_ids) == sum(1 for o in account.orders.values() if o.client_id >= 0), (
        f"account {aid} client id map holds ids of closed orders"
    )
    withdrawals.check(account)
    for asset in set(account.balances) | set(account.locked) | set(need) | set(account.reserved):
        balance = account.balances.get(asset, 0)
        locked = account.locked.get(asset, 0)
        held = account.held.get(asset, 0)
        reserved = account.reserved.get(asset, 0)
        assert balance >= 0, f"account {aid} {asset} balance negative: {balance}"
        assert locked == need.get(asset, 0), f"account {aid} {asset} locked {locked} != open orders' needs {need.get(asset, 0)}"
        assert held >= 0 and locked + held + reserved <= balance, (
            f"account {aid} {asset} reserves {locked}+{held} exceed balance {balance}"
            + (f" less {reserved} reserved for withdrawals" if reserved else "")
        )
        if idle:
            assert held == 0, f"account {aid} {asset} still holds {held} with nothing in flight"


def account_state(a: Account) -> list[Any]:
    """An account's journaled state; withdrawal requests are appended only when there are any,
    so the hash of a venue that never had one is what it was before requests existed."""
    state = [
        a.account_id, a.parent_id, a.country, a.category, a.created_us, a.api_keys,
        sorted((k, v) for k, v in a.balances.items() if v),
        sorted((k, v) for k, v in a.locked.items() if v),
        sorted((k, v) for k, v in a.net_deposits.items() if v),
        [[i, o.symbol, o.side, o.price_ticks, o.lock, o.client_id] for i, o in sorted(a.orders.items())],
    ]
    if a.withdrawals:
        state.append(withdrawals.state(a))
    return state


def market_state(m: Market) -> list[Any]:
    levels = []
    for side in ("Bid", "Ask"):
        for price, level in m.book.levels(side):
            levels.append([side, price, [
                [o.order_id, o.account_id, o.qty_steps, o.remaining_steps, o.executed_quote,
                 o.client_id, o.post_only, o.stp, o.created_us]
                for o in level.values()
            ]])
    return [m.spec.symbol, m.state, m.last_price, m.next_trade_id, levels]

