"""One account's ledger (sans-IO): balances, locks, holds and open-order reservations.

Terms
    balance   atoms the account owns of an asset (available + locked + held)
    locked    atoms reserved by resting orders, journaled (part of the state hash)
    held      atoms reserved by commands still in flight to a market; live-only,
              never journaled, always zero once the engine is idle. A hold turns
              into a lock when the market's ``OrderPlaced`` comes back, or is
              released when the market refuses. After a crash holds vanish with
              the commands that made them, which were never acknowledged.
    reserved  atoms of pending withdrawal requests, journaled; they stay in the
              balance (the venue still owes them) until an operator approves
              (they leave) or declines (they are free again). See engine/withdrawals.py.

Invariants (``Venue.check_invariants``)
    0 <= locked[a] and locked[a] + held[a] + reserved[a] <= balance[a] for every asset;
    reserved[a] == sum of the amounts of pending withdrawal requests in asset a;
    locked[a] == sum of the locks of open orders on asset a;
    each open order's lock equals what its remaining quantity needs.

Settlement applies whole ``OrderPlaced`` events: the taker part when the order is
this account's, the maker part for every fill against this account's orders,
and the fee part when this is the fee account. Apply never decides: it only adds
and subtracts the amounts the event carries or implies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.messages import (
    BID,
    FEE_ACCOUNT_ID,
    LIMIT,
    NEW,
    NO_CLIENT_ID,
    AmendOrder,
    Deposit,
    Deposited,
    Fill,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    Rejection,
    Transfer,
    Transferred,
    Withdraw,
    Withdrawn,
)
from engine.spec import MarketSpec
from engine.units import MAX_AMOUNT, format_units

if TYPE_CHECKING:
    from engine.withdrawals import WithdrawalRequest


class OpenOrder:
    """The account's side of a resting order: what it reserves."""

    __slots__ = ("asset", "client_id", "lock", "price_ticks", "side", "symbol")

    def __init__(self, symbol: str, side: str, price_ticks: int, lock: int, client_id: int, asset: str) -> None:
        self.symbol = symbol
        self.asset = asset  # what the lock is denominated in
        self.side = side
        self.price_ticks = price_ticks
        self.lock = lock
        self.client_id = client_id


class NewOpenOrder(OpenOrder):
    """An ``OpenOrder`` built by one C-level call, for replay and live settlement (the caller sets every slot).

    ``OpenOrder(...)`` runs a Python ``__init__`` frame, which on replay costs more
    than the rest of opening the order; this subclass has ``object.__init__``
    instead, so ``NewOpenOrder()`` is a plain allocation. It is an ``OpenOrder``
    in every field that is read (and in ``isinstance``).
    """

    __slots__ = ()
    __init__ = object.__init__


class Account:
    __slots__ = (
        "account_id",
        "api_keys",
        "balances",
        "category",
        "client_ids",
        "country",
        "created_us",
        "held",
        "holds",
        "locked",
        "net_deposits",
        "orders",
        "parent_id",
        "pending_client_ids",
        "reserved",
        "withdrawals",
    )

    def __init__(self, account_id: int, parent_id: int, country: str, category: str, created_us: int) -> None:
        self.account_id = account_id
        self.parent_id = parent_id  # -1 for a main account
        self.country = country
        self.category = category
        self.created_us = created_us
        self.api_keys: list[str] = []
        self.balances: dict[str, int] = {}
        self.locked: dict[str, int] = {}
        self.held: dict[str, int] = {}  # live-only, see module doc
        self.holds: dict[int, tuple[str, int]] = {}  # order_id -> (asset, atoms), live-only
        self.orders: dict[int, OpenOrder] = {}
        self.client_ids: dict[int, int] = {}  # client_id -> order_id of open orders
        self.pending_client_ids: set[int] = set()  # client ids of orders in flight, live-only
        self.net_deposits: dict[str, int] = {}  # deposits - withdrawals, for conservation
        self.reserved: dict[str, int] = {}  # pending withdrawal requests, per asset
        self.withdrawals: dict[int, WithdrawalRequest] = {}  # request id -> request (pending and decided)

    # --- reads ---------------------------------------------------------------

    def available(self, asset: str) -> int:
        free = self.balances.get(asset, 0) - self.locked.get(asset, 0) - self.held.get(asset, 0)
        return free - self.reserved.get(asset, 0) if self.reserved else free

    # --- decisions -------------------------------------------------------------

    def decide_place(self, cmd: PlaceOrder, spec: MarketSpec) -> tuple[str, int] | Rejection:
        """Check funds and client id; return the (asset, atoms) to hold, or why not."""
        cid = cmd.client_id
        if cid != NO_CLIENT_ID and (cid in self.client_ids or cid in self.pending_client_ids):
            return Rejection("INVALID_ORDER", f"Order with client ID already exists: {cid}")
        if len(self.orders) + len(self.holds) >= spec.max_open_orders:  # holds: orders in flight (and amends)
            return Rejection("INVALID_ORDER", f"Too many open orders: at most {spec.max_open_orders} per account, "
                                              "counting orders in flight; cancel some first")
        bid = cmd.side == BID
        asset = spec.quote if bid else spec.base
        available = self.balances.get(asset, 0) - self.locked.get(asset, 0) - self.held.get(asset, 0)  # available(), inlined
        if self.reserved:
            available -= self.reserved.get(asset, 0)
        if cmd.order_type == LIMIT:
            need = (cmd.price_ticks * cmd.qty_steps * spec.quote_per_tick_step) if bid else cmd.qty_steps * spec.base_per_step
        elif bid:
            need = cmd.quote_qty if cmd.quote_qty else available  # by quantity: hold all, release the rest
        else:
            need = cmd.qty_steps * spec.base_per_step if cmd.qty_steps else available
        if need <= 0 or need > available:
            decimals = spec.quote_decimals if bid else spec.base_decimals
            return Rejection(
                "INSUFFICIENT_FUNDS",
                f"Insufficient funds: the order needs {format_units(max(need, 1), decimals)} {asset}, "
                f"available {format_units(available, decimals)} {asset}",
            )
        return asset, need

    def reserve_place(self, cmd: PlaceOrder, spec: MarketSpec) -> Rejection | None:
        """``decide_place`` and, if it allows the order, hold what it may spend (``cmd.lock``); or say why not.

        A limit order (nearly all flow) is decided here with ``decide_place``'s
        checks written out (no call, no (asset, atoms) tuple per order); anything
        else, and every refusal, goes through ``decide_place`` itself, so the
        rules and messages have one source. The hold is ``hold`` for a new order
        id, which has none yet: set, not added to.
        """
        cid = cmd.client_id
        if cmd.order_type == LIMIT and (cid == NO_CLIENT_ID or (
            cid not in self.client_ids and cid not in self.pending_client_ids
        )) and len(self.orders) + len(self.holds) < spec.max_open_orders:
            if cmd.side == BID:
                asset = spec.quote
                need = cmd.price_ticks * cmd.qty_steps * spec.quote_per_tick_step
            else:
                asset = spec.base
                need = cmd.qty_steps * spec.base_per_step
            held = self.held
            held_now = held.get(asset, 0)
            available = self.balances.get(asset, 0) - self.locked.get(asset, 0) - held_now
            if self.reserved:
                available -= self.reserved.get(asset, 0)
            if not 0 < need <= available:
                return self.decide_place(cmd, spec)  # type: ignore[return-value]  # the refusal, worded once
        else:
            decided = self.decide_place(cmd, spec)
            if type(decided) is Rejection:
                return decided
            asset, need = decided  # type: ignore[misc]
            held = self.held
            held_now = held.get(asset, 0)
        order_id = cmd.order_id
        holds = self.holds
        assert order_id not in holds, f"account {self.account_id} already holds for new order {order_id}"
        holds[order_id] = (asset, need)
        held[asset] = held_now + need
        if cid != NO_CLIENT_ID:
            self.pending_client_ids.add(cid)
        cmd.lock = need
        return None

    def hold(self, order_id: int, asset: str, atoms: int, client_id: int) -> None:
        """Reserve atoms for a command in flight to a market (several may share an order id)."""
        holds = self.holds
        if order_id in holds:  # a second command in flight for the order (an amend)
            held_asset, held = holds[order_id]
            assert held_asset == asset, f"account {self.account_id} order {order_id} holds {held_asset}, not {asset}"
            atoms_now = held + atoms
        else:
            atoms_now = atoms
        holds[order_id] = (asset, atoms_now)
        self.held[asset] = self.held.get(asset, 0) + atoms
        if client_id != NO_CLIENT_ID:
            self.pending_client_ids.add(client_id)

    def release_hold(self, order_id: int, client_id: int = NO_CLIENT_ID, atoms: int | None = None) -> None:
        """Drop ``atoms`` (default: all) of an order's hold once its market answered.

        Releasing by amount keeps two commands in flight for one order (two amends,
        say) exact whatever order their answers come back in.
        """
        hold = self.holds.get(order_id)
        if hold is not None:
            asset, held = hold
            release = held if atoms is None else atoms
            assert 0 <= release <= held, f"account {self.account_id} releases {release} of a {held} hold"
            self.held[asset] -= release
            if release == held:
                del self.holds[order_id]
            else:
                self.holds[order_id] = (asset, held - release)
        self.pending_client_ids.discard(client_id)

    def decide_amend_hold(self, cmd: AmendOrder, spec: MarketSpec) -> tuple[str, int] | Rejection:
        """Worst-case extra atoms an amendment may need (assuming nothing executed)."""
        order = self.orders.get(cmd.order_id)
        if order is None or order.symbol != cmd.symbol:
            return Rejection("RESOURCE_NOT_FOUND", "Order not found")
        price = cmd.price_ticks or order.price_ticks
        total = cmd.qty_steps or _steps_of(order, spec)
        if order.side == BID:
            asset = spec.quote
            need = price * total * spec.quote_per_tick_step - order.lock
        else:
            asset = spec.base
            need = total * spec.base_per_step - order.lock
        need = max(need, 0)
        if need > self.available(asset):
            decimals = spec.quote_decimals if order.side == BID else spec.base_decimals
            return Rejection(
                "INSUFFICIENT_FUNDS",
                f"Insufficient funds to amend: needs up to {format_units(need, decimals)} {asset} more, "
                f"available {format_units(self.available(asset), decimals)} {asset}",
            )
        return asset, need

    def short_of(self, what: str, asset: str, amount: int, decimals: int) -> Rejection | None:
        """The rejection for moving ``amount`` out (``what``: "withdrawal", "transfer") when less is available, or None.

        The one funds rule for withdrawals (direct or requested, engine/withdrawals.py) and transfers.
        """
        available = self.available(asset)
        if amount <= available:
            return None
        return Rejection(
            "INSUFFICIENT_FUNDS",
            f"Insufficient funds: {what} of {format_units(amount, decimals)} {asset} "
            f"exceeds available {format_units(available, decimals)} {asset}",
        )

    def decide_withdraw(self, cmd: Withdraw, now_us: int, decimals: int) -> Withdrawn | Rejection:
        short = self.short_of("withdrawal", cmd.asset, cmd.amount, decimals)
        if short is not None:
            return short
        return Withdrawn(cmd.withdrawal_id, self.account_id, cmd.asset, cmd.amount, now_us)

    def decide_deposit(self, cmd: Deposit, now_us: int, supply: int) -> Deposited | Rejection:
        """``supply``: the venue's total of the asset (``Venue.supply``). Bounding it bounds every balance,
        since trades and transfers only move amounts between accounts."""
        if supply + cmd.amount >= MAX_AMOUNT:
            return Rejection("INVALID_QUANTITY", f"Deposit would take the venue's total {cmd.asset} past the "
                             "largest amount the ledger holds")
        return Deposited(self.account_id, cmd.asset, cmd.amount, now_us)

    def decide_transfer(self, cmd: Transfer, other_parent: int, now_us: int, decimals: int) -> Transferred | Rejection:
        related = self.parent_id == cmd.to_account_id or other_parent == self.account_id
        if not related:
            return Rejection("FORBIDDEN", "Transfers are only allowed between a main account and its sub-accounts")
        short = self.short_of("transfer", cmd.asset, cmd.amount, decimals)
        if short is not None:
            return short
        return Transferred(self.account_id, cmd.to_account_id, cmd.asset, cmd.amount, now_us)

    # --- apply -----------------------------------------------------------------

    def _add(self, asset: str, atoms: int) -> None:
        self.balances[asset] = self.balances.get(asset, 0) + atoms

    def apply_deposited(self, e: Deposited) -> None:
        self._add(e.asset, e.amount)
        self.net_deposits[e.asset] = self.net_deposits.get(e.asset, 0) + e.amount

    def apply_withdrawn(self, e: Withdrawn) -> None:
        self._add(e.asset, -e.amount)
        self.net_deposits[e.asset] = self.net_deposits.get(e.asset, 0) - e.amount

    def apply_transferred(self, e: Transferred) -> None:
        if e.from_account_id == self.account_id:
            self._add(e.asset, -e.amount)
        if e.to_account_id == self.account_id:
            self._add(e.asset, e.amount)

    def settle_unfilled(self, e: OrderPlaced, spec: MarketSpec) -> None:
        """``release_hold`` + ``apply_placed`` for this account's own order that traded nothing.

        Most orders rest (or expire) untouched; for them the hold simply becomes
        the open order's lock, in one call. Anything unusual (a hold that is not
        exactly the order's, self-trade cancellations) takes the general path.
        """
        order_id = e.order_id
        holds = self.holds
        hold = holds.get(order_id)
        if hold is None or hold[1] != e.lock or e.fills or e.stp_cancelled:
            self.release_hold(order_id, e.client_id, e.lock)
            self.apply_placed(e, spec)
            return
        del holds[order_id]
        asset, atoms = hold
        self.held[asset] -= atoms
        cid = e.client_id
        if cid != NO_CLIENT_ID:
            self.pending_client_ids.discard(cid)
        if e.status == "New":
            # ``_rest`` with nothing executed: the order's whole hold, which is its lock
            # (``reserve_place`` held exactly what the resting quantity needs), becomes locked
            rest_open(self, order_id, e.symbol, asset, e.side, e.price_ticks, atoms, cid)
            self.locked[asset] = self.locked.get(asset, 0) + atoms

    def settle_taker(self, e: OrderPlaced, spec: MarketSpec) -> None:
        """``release_hold`` + ``apply_placed`` for this account's own order (the market actor's settlement).

        The hold is dropped inline when it is exactly the order's (``reserve_place``'s),
        as in ``settle_unfilled``; anything else goes through ``release_hold``.
        """
        order_id = e.order_id
        holds = self.holds
        hold = holds.get(order_id)
        if hold is None or hold[1] != e.lock:
            self.release_hold(order_id, e.client_id, e.lock)
        else:
            del holds[order_id]
            self.held[hold[0]] -= hold[1]
            cid = e.client_id
            if cid != NO_CLIENT_ID:
                self.pending_client_ids.discard(cid)
        self._apply_taker(e, spec)

    def settle_maker_fill(self, f: Fill, spec: MarketSpec) -> None:
        """This account's part of one fill against its resting order (``_apply_maker`` for one fill).

        The market actor settles each maker fill by fill (``_apply_maker`` walks
        every fill of the event once per maker account); a near-copy of its loop
        body, kept flat because it runs once per trade.
        """
        order = self.orders[f.maker_order_id]
        steps = f.qty_steps
        balances, locked = self.balances, self.locked
        if order.side == BID:
            paid = f.price_ticks * steps * spec.quote_per_tick_step
            pay_asset, get_asset, got = spec.quote, spec.base, steps * spec.base_per_step - f.maker_fee
        else:
            paid = steps * spec.base_per_step
            pay_asset, get_asset, got = spec.base, spec.quote, f.price_ticks * steps * spec.quote_per_tick_step - f.maker_fee
        balances[pay_asset] -= paid
        locked[pay_asset] -= paid
        balances[get_asset] = balances.get(get_asset, 0) + got
        lock = order.lock - paid
        order.lock = lock
        if lock == 0:  # filled: _forget written out
            del self.orders[f.maker_order_id]
            if order.client_id != NO_CLIENT_ID:
                self.client_ids.pop(order.client_id, None)

    def apply_placed(self, e: OrderPlaced, spec: MarketSpec) -> None:
        if e.account_id == self.account_id:
            if e.fills or e.stp_cancelled or e.status != NEW:
                self._apply_taker(e, spec)
                return
            # rests untouched (most orders; the replicas' apply): ``_apply_taker``'s outcome, straight to ``_rest``
            self._rest(e, e.qty_steps, spec.quote if e.side == BID else spec.base, spec)
        elif self.account_id == FEE_ACCOUNT_ID:
            self._apply_fees(e, spec)
        else:
            self._apply_maker(e, spec)

    def _apply_taker(self, e: OrderPlaced, spec: MarketSpec) -> None:
        bps, qpts = spec.base_per_step, spec.quote_per_tick_step
        bid = e.side == BID
        pay_asset, get_asset = (spec.quote, spec.base) if bid else (spec.base, spec.quote)
        executed = 0
        if e.fills:  # most orders rest untouched: no balance moves
            paid = received = 0
            for f in e.fills:
                base = f.qty_steps * bps
                quote = f.price_ticks * f.qty_steps * qpts
                if bid:
                    paid += quote
                    received += base - f.taker_fee
                else:
                    paid += base
                    received += quote - f.taker_fee
                executed += f.qty_steps
            balances = self.balances
            balances[pay_asset] = balances.get(pay_asset, 0) - paid
            balances[get_asset] = balances.get(get_asset, 0) + received
        for order_id in e.stp_cancelled:
            self._close(order_id)
        if e.status == "New" or e.status == "PartiallyFilled":
            self._rest(e, e.qty_steps - executed, pay_asset, spec)
        else:
            self.locked[pay_asset] = self.locked.get(pay_asset, 0)  # nothing stays reserved

    def _rest(self, e: OrderPlaced, remaining: int, asset: str, spec: MarketSpec) -> None:
        """Record this account's order resting with ``remaining`` steps: its open order, client id and lock.

        ``locked`` grows by what stays reserved: the order's lock less what it paid and released.
        """
        lock = e.price_ticks * remaining * spec.quote_per_tick_step if e.side == BID else remaining * spec.base_per_step
        if lock == e.lock:
            lock = e.lock  # share the event's int object: one allocation less per resting order
        rest_open(self, e.order_id, e.symbol, asset, e.side, e.price_ticks, lock, e.client_id)
        self.locked[asset] = self.locked.get(asset, 0) + lock

    def _apply_maker(self, e: OrderPlaced, spec: MarketSpec) -> None:
        bps, qpts = spec.base_per_step, spec.quote_per_tick_step
        me = self.account_id
        for f in e.fills:
            if f.maker_account_id != me:
                continue
            order = self.orders[f.maker_order_id]
            base = f.qty_steps * bps
            quote = f.price_ticks * f.qty_steps * qpts
            if order.side == BID:
                pay_asset, paid, get_asset, got = spec.quote, quote, spec.base, base - f.maker_fee
            else:
                pay_asset, paid, get_asset, got = spec.base, base, spec.quote, quote - f.maker_fee
            self.balances[pay_asset] -= paid
            self.locked[pay_asset] -= paid
            self._add(get_asset, got)
            order.lock -= paid
            if order.lock == 0:
                self._forget(f.maker_order_id, order)

    def _apply_fees(self, e: OrderPlaced, spec: MarketSpec) -> None:
        """The fee account's part: each side's fees in the asset that side received (``_add`` written out)."""
        taker_asset, maker_asset = (spec.base, spec.quote) if e.side == BID else (spec.quote, spec.base)
        taker_fees = maker_fees = 0
        for f in e.fills:
            taker_fees += f.taker_fee
            maker_fees += f.maker_fee
        balances = self.balances
        balances[taker_asset] = balances.get(taker_asset, 0) + taker_fees
        balances[maker_asset] = balances.get(maker_asset, 0) + maker_fees

    settle_fees = _apply_fees  # the market actor's name for it (see settle_taker)

    def apply_cancelled(self, e: OrderCancelled) -> None:
        self._close(e.order_id)

    def apply_amended(self, e: OrderAmended, spec: MarketSpec) -> None:
        order = self.orders[e.order_id]
        self.locked[order.asset] += e.lock - order.lock
        order.lock = e.lock
        order.price_ticks = e.price_ticks

    def _close(self, order_id: int) -> None:
        order = self.orders[order_id]
        self.locked[order.asset] -= order.lock
        self._forget(order_id, order)

    def _forget(self, order_id: int, order: OpenOrder) -> None:
        del self.orders[order_id]
        if order.client_id != NO_CLIENT_ID:
            self.client_ids.pop(order.client_id, None)


def _steps_of(order: OpenOrder, spec: MarketSpec) -> int:
    """Remaining steps implied by an open order's lock."""
    if order.side == BID:
        return order.lock // (order.price_ticks * spec.quote_per_tick_step)
    return order.lock // spec.base_per_step


def rest_open(
    account: Account, order_id: int, symbol: str, asset: str, side: str, price: int, lock: int, client_id: int
) -> None:
    """Record an order resting on its account: its ``OpenOrder`` (built without a Python ``__init__``) and client id.

    The caller adds ``lock`` to ``locked``. Shared by live settlement (``Account._rest``) and replay.
    """
    open_order = NewOpenOrder()
    open_order.symbol = symbol
    open_order.asset = asset
    open_order.side = side
    open_order.price_ticks = price
    open_order.lock = lock
    open_order.client_id = client_id
    account.orders[order_id] = open_order
    if client_id != NO_CLIENT_ID:
        account.client_ids[client_id] = order_id
