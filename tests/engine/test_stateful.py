"""Stateful property test of the sans-IO core (ARCHITECTURE.md §3.3 and §3.7, style B6).

A hypothesis ``RuleBasedStateMachine`` drives ``Venue``/``Account``/``Market`` the way
the trio actors do: the account decides and holds funds, the market decides, the hold
is released and the event is applied to every owner through ``Venue.apply``. Some
steps put several commands in flight at once (holds taken first, markets deciding
afterwards), as one actor batch does.

After every step it checks ``Venue.check_invariants`` and an independent model kept
here from the events alone: balances per account, resting orders with their
price-time priority, in-flight holds, client ids, market states. Every decision is
compared with what the model expects; a reference matcher re-derives each
``OrderPlaced``'s fills, fees, STP cancels and final status from the model's book.

At teardown the event log is replayed into a fresh venue (same state hash), sent
through the journal codec in chunks and replayed (same hash), and replayed once more
with causally independent neighbours swapped (§3.3: concurrent events commute).
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from fractions import Fraction
from typing import Any

import attrs
from hypothesis import event as note_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine import withdrawals
from engine.codec import decode_events, decode_rows, encode_events
from engine.config import parse_config
from engine.messages import (
    ASK,
    BID,
    CANCEL_ONLY,
    CLOSED,
    EXPIRED,
    FEE_ACCOUNT_ID,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    LIMIT_ONLY,
    MARKET,
    MARKET_STATES,
    NEW,
    NO_CLIENT_ID,
    OPEN,
    PARTIALLY_FILLED,
    POST_ONLY,
    R_FILL_OR_KILL,
    R_IMMEDIATE_OR_CANCEL,
    R_INSUFFICIENT_FUNDS,
    R_INSUFFICIENT_LIQUIDITY,
    R_INVALID_QUANTITY,
    R_POST_ONLY_MODE,
    R_POST_ONLY_TAKER,
    R_PRICE_OUT_OF_BOUNDS,
    R_SELF_TRADE,
    REJECT_MAKER,
    REJECT_TAKER,
    STP_MODES,
    AccountCreated,
    AmendOrder,
    ApiKeyAdded,
    ApproveWithdrawal,
    CancelOrder,
    Deposit,
    Deposited,
    Event,
    MarketStateChanged,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    Rejection,
    RejectWithdrawal,
    RequestWithdrawal,
    SetMarketState,
    Transfer,
    Transferred,
    Withdraw,
    WithdrawalApproved,
    WithdrawalRejected,
    WithdrawalRequested,
    Withdrawn,
)
from engine.venue import Venue
from tests.engine.test_replay import full_state

CONFIG = parse_config({
    "assets": {
        "USDC": {"decimals": 6, "display_name": "USD Coin"},
        "SOL": {"decimals": 9, "display_name": "Solana"},
        "BTC": {"decimals": 8, "display_name": "Bitcoin"},
    },
    "markets": {
        # fees rounded up on every fill; the fee account takes part in each trade
        "SOL_USDC": {
            "base": "SOL", "quote": "USDC", "tick_size": "0.01", "step_size": "0.01",
            "min_quantity": "0.01", "min_notional": "1", "maker_fee_bps": 2, "taker_fee_bps": 5,
        },
        # no fees (the fee account is not a party) and a narrower price band
        "BTC_USDC": {
            "base": "BTC", "quote": "USDC", "tick_size": "0.1", "step_size": "0.00001",
            "min_quantity": "0.00002", "min_notional": "1", "maker_fee_bps": 0, "taker_fee_bps": 0,
            "price_band_min_multiplier": "0.9", "price_band_max_multiplier": "1.1",
        },
    },
})
SYMBOLS = tuple(CONFIG.markets)
ASSETS = tuple(CONFIG.assets)
MID_TICKS = {"SOL_USDC": 10_000, "BTC_USDC": 500_000}  # $100 and $50,000
SPREAD_TICKS = 12  # limit prices are drawn within MID +- SPREAD so orders cross often
DEPOSIT_MAX = {"USDC": 3_000 * 10**6, "SOL": 40 * 10**9, "BTC": 6 * 10**6}
MAX_ACCOUNTS = 6
TICK_US = 1_000
# what one step does, weighted by repetition; the first is what hypothesis repeats and shrinks to
COMMANDS = (
    "place", "quote", "batch", "place", "amend", "cancel", "place", "funds", "quote", "state",
    "batch", "amend", "place", "onboard", "funds",
)

# --- the model -------------------------------------------------------------------


@attrs.define
class MOrder:
    order_id: int
    account_id: int
    symbol: str
    side: str
    price: int
    qty: int  # total quantity (changes on amend)
    remaining: int
    client_id: int
    seq: int  # priority: lower is earlier within a price level


@attrs.define
class RefWalk:
    fills: list[tuple[MOrder, int]] = attrs.Factory(list)
    stp_cancelled: list[int] = attrs.Factory(list)
    stopped: bool = False  # STP stopped the taker
    quote_bound: bool = False  # the quote budget cannot buy one more step
    filled: int = 0
    quote: int = 0


def fee_atoms(amount: int, bps: int) -> int:
    return (amount * bps + 9_999) // 10_000


def nz(amounts: dict[str, int]) -> dict[str, int]:
    """Amounts without the zero entries (negative ones stay: they must be reported)."""
    return {k: v for k, v in amounts.items() if v}


def opposite(side: str) -> str:
    return ASK if side == BID else BID


class Model:
    """What the venue should hold, derived from the events with no engine code."""

    def __init__(self) -> None:
        self.specs = Venue(CONFIG).specs
        self.parents: dict[int, int] = {FEE_ACCOUNT_ID: -1}
        self.balances: dict[int, Counter[str]] = {FEE_ACCOUNT_ID: Counter()}
        self.deposits: dict[int, Counter[str]] = {FEE_ACCOUNT_ID: Counter()}
        self.external: Counter[str] = Counter()  # deposits - withdrawals, venue-wide
        self.orders: dict[int, MOrder] = {}
        self.seq = 0
        self.state = {s: OPEN for s in SYMBOLS}
        self.last_price = dict.fromkeys(SYMBOLS, 0)
        self.next_trade_id = dict.fromkeys(SYMBOLS, 1)
        self.keys: dict[str, int] = {}
        self.held: dict[int, Counter[str]] = {FEE_ACCOUNT_ID: Counter()}  # in-flight holds
        self.pending_cids: set[tuple[int, int]] = set()
        self.reserved: dict[int, Counter[str]] = {FEE_ACCOUNT_ID: Counter()}  # pending withdrawal requests
        self.requests: dict[int, list[Any]] = {}  # request id -> [account, asset, amount, status]

    # --- reads ---------------------------------------------------------------------

    def lock_of(self, o: MOrder) -> tuple[str, int]:
        spec = self.specs[o.symbol]
        if o.side == BID:
            return spec.quote, o.price * o.remaining * spec.quote_per_tick_step
        return spec.base, o.remaining * spec.base_per_step

    def locked(self, account_id: int) -> Counter[str]:
        out: Counter[str] = Counter()
        for o in self.orders.values():
            if o.account_id == account_id:
                asset, atoms = self.lock_of(o)
                out[asset] += atoms
        return out

    def available(self, account_id: int, asset: str) -> int:
        return (self.balances[account_id][asset] - self.locked(account_id)[asset] - self.held[account_id][asset]
                - self.reserved[account_id][asset])

    def client_ids(self, account_id: int) -> dict[int, int]:
        return {o.client_id: o.order_id for o in self.orders.values() if o.account_id == account_id and o.client_id >= 0}

    def side_orders(self, symbol: str, side: str) -> list[MOrder]:
        """Resting orders of one side, best price first, then by arrival."""
        orders = [o for o in self.orders.values() if o.symbol == symbol and o.side == side]
        return sorted(orders, key=lambda o: (-o.price if side == BID else o.price, o.seq))

    def best(self, symbol: str, side: str) -> int:
        orders = self.side_orders(symbol, side)
        return orders[0].price if orders else 0

    def crosses(self, symbol: str, side: str, price: int) -> bool:
        best = self.best(symbol, opposite(side))
        return bool(best) and (best <= price if side == BID else best >= price)

    def in_band(self, symbol: str, price: int) -> bool:
        values = sorted(v for v in (self.best(symbol, BID), self.best(symbol, ASK), self.last_price[symbol]) if v)
        if not values:
            return True
        active = Fraction(values[0] + values[1], 2) if len(values) == 2 else Fraction(values[len(values) // 2])
        spec = self.specs[symbol]
        return Fraction(*spec.band_min) * active <= price <= Fraction(*spec.band_max) * active

    def walk(self, cmd: PlaceOrder, max_steps: int, max_quote: int | None) -> RefWalk:
        """Reference matcher over the model's book: price-time priority, STP, bounds.

        Makers are met best price first, then by arrival. An own maker triggers the
        taker's STP mode before anything else. The taker stops when it has no steps
        left, at its limit price, when its quote budget cannot buy one step from the
        maker in line, or right after a fill that left less than one step's worth at
        that fill's price. That last rule is ``book.walk``'s: for a sell sized by quote
        it can stop while a lower bid is still affordable (``market._outcome`` says
        "cannot buy a step at the next price"); change both together.
        """
        spec = self.specs[cmd.symbol]
        out = RefWalk()
        steps_left = max_steps
        quote_left = max_quote
        for o in self.side_orders(cmd.symbol, opposite(cmd.side)):
            if steps_left <= 0:  # nothing (more) to trade: e.g. a sell by quote holding less than a step
                break
            if cmd.price_ticks and (o.price > cmd.price_ticks if cmd.side == BID else o.price < cmd.price_ticks):
                break
            if o.account_id == cmd.account_id:
                if cmd.stp != REJECT_TAKER:
                    out.stp_cancelled.append(o.order_id)
                if cmd.stp != REJECT_MAKER:
                    out.stopped = True
                    break
                continue
            unit = o.price * spec.quote_per_tick_step
            take = min(o.remaining, steps_left)
            if quote_left is not None:
                take = min(take, quote_left // unit)
                if take == 0:
                    out.quote_bound = True
                    break
                quote_left -= take * unit
            out.fills.append((o, take))
            steps_left -= take
            out.filled += take
            out.quote += take * unit
            if quote_left is not None and quote_left < unit:
                out.quote_bound = True
                break
        return out

    # --- apply -------------------------------------------------------------------------

    def apply(self, e: Event) -> None:
        t = type(e)
        if t is AccountCreated:
            self.parents[e.account_id] = e.parent_id
            self.balances[e.account_id] = Counter()
            self.deposits[e.account_id] = Counter()
            self.held[e.account_id] = Counter()
            self.reserved[e.account_id] = Counter()
        elif t is ApiKeyAdded:
            self.keys[e.public_key] = e.account_id
        elif t is Deposited:
            self.balances[e.account_id][e.asset] += e.amount
            self.deposits[e.account_id][e.asset] += e.amount
            self.external[e.asset] += e.amount
        elif t is Withdrawn:
            self.balances[e.account_id][e.asset] -= e.amount
            self.deposits[e.account_id][e.asset] -= e.amount
            self.external[e.asset] -= e.amount
        elif t is Transferred:
            self.balances[e.from_account_id][e.asset] -= e.amount
            self.balances[e.to_account_id][e.asset] += e.amount
        elif t is OrderPlaced:
            self._apply_placed(e)
        elif t is OrderCancelled:
            del self.orders[e.order_id]
        elif t is OrderAmended:
            o = self.orders[e.order_id]
            remaining = e.qty_steps - (o.qty - o.remaining)
            if e.price_ticks != o.price or remaining > o.remaining:
                self.seq += 1
                o.seq = self.seq
            o.price, o.qty, o.remaining = e.price_ticks, e.qty_steps, remaining
        elif t is MarketStateChanged:
            self.state[e.symbol] = e.state
        elif t is WithdrawalRequested or t is WithdrawalApproved or t is WithdrawalRejected:
            self._apply_withdrawal(e)
        else:
            raise AssertionError(f"unexpected event {e!r}")

    def _apply_withdrawal(self, e: Any) -> None:
        if type(e) is WithdrawalRequested:
            self.requests[e.request_id] = [e.account_id, e.asset, e.amount, "pending"]
            self.reserved[e.account_id][e.asset] += e.amount
            return
        request = self.requests[e.request_id]
        assert request[3] == "pending"
        self.reserved[e.account_id][e.asset] -= e.amount
        if type(e) is WithdrawalApproved:
            request[3] = "confirmed"
            self.balances[e.account_id][e.asset] -= e.amount
            self.deposits[e.account_id][e.asset] -= e.amount
            self.external[e.asset] -= e.amount
        else:
            request[3] = "declined"

    def _apply_placed(self, e: OrderPlaced) -> None:
        spec = self.specs[e.symbol]
        bal = self.balances
        executed = 0
        for f in e.fills:
            base = f.qty_steps * spec.base_per_step
            quote = f.price_ticks * f.qty_steps * spec.quote_per_tick_step
            maker = self.orders[f.maker_order_id]
            if e.side == BID:
                bal[e.account_id][spec.quote] -= quote
                bal[e.account_id][spec.base] += base - f.taker_fee
                bal[maker.account_id][spec.base] -= base
                bal[maker.account_id][spec.quote] += quote - f.maker_fee
                bal[FEE_ACCOUNT_ID][spec.base] += f.taker_fee
                bal[FEE_ACCOUNT_ID][spec.quote] += f.maker_fee
            else:
                bal[e.account_id][spec.base] -= base
                bal[e.account_id][spec.quote] += quote - f.taker_fee
                bal[maker.account_id][spec.quote] -= quote
                bal[maker.account_id][spec.base] += base - f.maker_fee
                bal[FEE_ACCOUNT_ID][spec.quote] += f.taker_fee
                bal[FEE_ACCOUNT_ID][spec.base] += f.maker_fee
            maker.remaining -= f.qty_steps
            if maker.remaining == 0:
                del self.orders[maker.order_id]
            executed += f.qty_steps
        for order_id in e.stp_cancelled:
            del self.orders[order_id]
        if e.fills:
            self.last_price[e.symbol] = e.fills[-1].price_ticks
            self.next_trade_id[e.symbol] = e.fills[-1].trade_id + 1
        if e.status in (NEW, PARTIALLY_FILLED):
            self.seq += 1
            self.orders[e.order_id] = MOrder(
                e.order_id, e.account_id, e.symbol, e.side, e.price_ticks, e.qty_steps,
                e.qty_steps - executed, e.client_id, self.seq,
            )


# --- strategies --------------------------------------------------------------------


# (order type, time in force, postOnly): Limit GTC twice, so resting flow dominates
SHAPES = (
    (LIMIT, GTC, False), (LIMIT, IOC, False), (LIMIT, GTC, False), (LIMIT, FOK, False), (LIMIT, GTC, True),
    ("qty", IOC, False), ("quote", IOC, False), ("qty", FOK, False), ("quote", GTC, False),
    ("qty", GTC, False), ("quote", FOK, False),
)
# One draw picks the limit price: 0-5 meet the best opposite price 0..4 ticks through
# it (5: one tick short), then MID - SPREAD .. MID + SPREAD, then a price outside any band.
AGGRESSIVE = 6
TAKE = "take"
FAR = AGGRESSIVE + 2 * SPREAD_TICKS + 1


@attrs.define
class Intent:
    """What a client asks for, before the engine's sizing rules are applied."""

    symbol: str
    side: str  # Bid, Ask, or TAKE: the side facing the deeper book, see ``draw_place``
    shape: tuple[str, str, bool]
    price: int  # see AGGRESSIVE / FAR
    size: int  # quantity steps, or multiples of the minimum notional
    stp: str
    client_id: int


@st.composite
def intents(draw: Any) -> Intent:
    return Intent(
        draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from([TAKE, BID, ASK])), draw(st.sampled_from(SHAPES)),
        draw(st.integers(0, FAR)), draw(st.integers(1, 60)), draw(st.sampled_from(STP_MODES)),
        draw(st.sampled_from([NO_CLIENT_ID, NO_CLIENT_ID, 1, 2, 3])),
    )


def amount_strategy(asset: str) -> st.SearchStrategy[int]:
    top = DEPOSIT_MAX[asset]
    return st.one_of(st.integers(top // 10, top), st.integers(1, 1_000))  # useful sizes, and dust


def fuzz_key(n: int) -> str:
    return base64.b64encode(n.to_bytes(32, "big")).decode()


# --- the machine ---------------------------------------------------------------------


class VenueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.venue = Venue(CONFIG)
        self.model = Model()
        self.log: list[Event] = []
        self.now = 1_700_000_000_000_000
        self.next_order_id = 1
        self.healthy = False  # set once every check after a step passed (see teardown)
        self.rnd = random.Random(0)

    # --- plumbing --------------------------------------------------------------------

    def tick(self) -> int:
        self.now += TICK_US
        return self.now

    def apply(self, e: Event) -> None:
        self.venue.apply(e)
        self.model.apply(e)
        self.log.append(e)

    def users(self) -> list[int]:
        return sorted(a for a in self.model.parents if a != FEE_ACCOUNT_ID)

    def create(self, parent_id: int, country: str, category: str) -> int:
        account_id = self.venue.next_account_id
        self.apply(AccountCreated(account_id, parent_id, country, category, self.tick()))
        return account_id

    # --- setup ---------------------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**32 - 1), sub=st.booleans())
    def boot(self, seed: int, sub: bool) -> None:
        self.healthy = False
        self.rnd = random.Random(seed)  # drives the teardown's chunking and swaps
        first = self.create(-1, "US", "retail")
        second = self.create(-1, "DE", "professional")
        if sub:
            self.create(first, "US", "retail")
        for account_id in (first, second):
            for asset in ASSETS:
                self.deposit_now(account_id, asset, DEPOSIT_MAX[asset] // 2)

    # --- funds -----------------------------------------------------------------------------

    def deposit_now(self, account_id: int, asset: str, amount: int) -> None:
        decided = self.venue.accounts[account_id].decide_deposit(Deposit(account_id, asset, amount), self.tick(),
                                                                 self.venue.supply.get(asset, 0))
        assert decided == Deposited(account_id, asset, amount, self.now)
        self.apply(decided)

    def withdraw_now(self, account_id: int, asset: str, amount: int) -> None:
        available = self.model.available(account_id, asset)
        decimals = CONFIG.assets[asset].decimals
        withdrawal_id = self.venue.next_withdrawal_id  # one id space with requests, as the engine's intake counts
        command = Withdraw(account_id, asset, amount, withdrawal_id)
        decided = self.venue.accounts[account_id].decide_withdraw(command, self.tick(), decimals)
        if amount > available:
            assert isinstance(decided, Rejection) and decided.code == "INSUFFICIENT_FUNDS", decided
            return
        assert decided == Withdrawn(withdrawal_id, account_id, asset, amount, self.now), (decided, available)
        self.apply(decided)

    def request_withdrawal_now(self, account_id: int, asset: str, amount: int) -> None:
        available = self.model.available(account_id, asset)
        request_id = self.venue.next_withdrawal_id
        cmd = RequestWithdrawal(request_id, account_id, asset, amount, "addr", "Solana", "")
        decided = withdrawals.decide(self.venue.accounts[account_id], cmd, self.tick(), lambda a: CONFIG.assets[a].decimals)
        note_event(f"withdrawal request: {'refused' if amount > available else 'queued'}")
        if amount > available:
            assert isinstance(decided, Rejection) and decided.code == "INSUFFICIENT_FUNDS", decided
            return
        assert decided == WithdrawalRequested(request_id, account_id, asset, amount, "addr", "Solana", "", self.now), decided
        self.apply(decided)

    def decide_withdrawal_now(self, request_id: int, approve: bool) -> None:
        account_id, asset, amount, status = self.model.requests[request_id]
        cmd: ApproveWithdrawal | RejectWithdrawal = (
            ApproveWithdrawal(account_id, request_id, "tx") if approve else RejectWithdrawal(account_id, request_id, "no")
        )
        decided = withdrawals.decide(self.venue.accounts[account_id], cmd, self.tick(), lambda a: 0)
        note_event(f"withdrawal {'approve' if approve else 'decline'} of a {status} request")
        if status != "pending":
            assert isinstance(decided, Rejection) and decided.code == "INVALID_CLIENT_REQUEST", decided
            return
        expected = (WithdrawalApproved(request_id, account_id, asset, amount, "tx", self.now) if approve
                    else WithdrawalRejected(request_id, account_id, asset, amount, "no", self.now))
        assert decided == expected, decided
        self.apply(decided)

    def transfer_now(self, source: int, target: int, asset: str, amount: int) -> None:
        parents = self.model.parents
        related = parents[source] == target or parents[target] == source
        available = self.model.available(source, asset)
        cmd = Transfer(source, target, asset, amount)
        decimals = CONFIG.assets[asset].decimals
        decided = self.venue.accounts[source].decide_transfer(cmd, parents[target], self.tick(), decimals)
        if not related:
            assert isinstance(decided, Rejection) and decided.code == "FORBIDDEN", decided
        elif amount > available:
            assert isinstance(decided, Rejection) and decided.code == "INSUFFICIENT_FUNDS", decided
        else:
            assert decided == Transferred(source, target, asset, amount, self.now), decided
            self.apply(decided)

    def draw_amount(self, data: st.DataObject, account_id: int, asset: str) -> int:
        available = self.model.available(account_id, asset)
        choices = [st.integers(1, available // 4), st.just(available)] if available >= 4 else []
        return data.draw(st.one_of(*choices, amount_strategy(asset)), label="amount")

    # --- orders: account side, then market side ----------------------------------------------

    def build_order(self, account_id: int, it: Intent) -> PlaceOrder:
        """A valid PlaceOrder (sizes, notional and flags as ``Engine.build_order`` checks them)."""
        symbol, side = it.symbol, it.side
        spec = self.model.specs[symbol]
        mid = MID_TICKS[symbol]
        best = self.model.best(symbol, opposite(side))
        if it.price < AGGRESSIVE:
            through = it.price if it.price < AGGRESSIVE - 1 else -1
            price = (best or mid) + (through if side == BID else -through)
        elif it.price < FAR:
            price = mid + it.price - AGGRESSIVE - SPREAD_TICKS
        else:
            price = mid * 3 // 5 if side == BID else mid * 7 // 5
            if self.model.in_band(symbol, price):  # no active price yet: do not drag the market away
                price = mid
        min_steps = max(spec.min_qty_steps, -(-spec.min_notional_quote // (price * spec.quote_per_tick_step)))
        qty = max(it.size, min_steps)
        order_id = self.next_order_id
        self.next_order_id += 1
        kind, tif, post_only = it.shape
        head = (order_id, account_id, symbol, side)
        tail = (it.stp, it.client_id)
        if kind == LIMIT:
            return PlaceOrder(*head, LIMIT, tif, price, qty, 0, post_only, *tail)
        if kind == "qty":
            return PlaceOrder(*head, MARKET, tif, 0, qty, 0, False, *tail)
        quote = it.size * spec.min_notional_quote + it.size * 7_919 % 1_000  # odd atoms too
        return PlaceOrder(*head, MARKET, tif, 0, 0, quote, False, *tail)

    def hold_place(self, cmd: PlaceOrder) -> bool:
        """The account actor's part: check funds and client id, hold. True if forwarded."""
        model = self.model
        spec = model.specs[cmd.symbol]
        account = self.venue.accounts[cmd.account_id]
        decided = account.decide_place(cmd, spec)
        bid = cmd.side == BID
        asset = spec.quote if bid else spec.base
        available = model.available(cmd.account_id, asset)
        cid = cmd.client_id
        if cid != NO_CLIENT_ID and (cid in model.client_ids(cmd.account_id) or (cmd.account_id, cid) in model.pending_cids):
            assert isinstance(decided, Rejection) and decided.code == "INVALID_ORDER", (cmd, decided)
            return False
        if cmd.order_type == LIMIT:
            need = cmd.price_ticks * cmd.qty_steps * spec.quote_per_tick_step if bid else cmd.qty_steps * spec.base_per_step
        elif bid:
            need = cmd.quote_qty or available
        else:
            need = cmd.qty_steps * spec.base_per_step if cmd.qty_steps else available
        if need <= 0 or need > available:
            assert isinstance(decided, Rejection) and decided.code == "INSUFFICIENT_FUNDS", (cmd, decided, available)
            return False
        assert decided == (asset, need), (cmd, decided, need)
        account.hold(cmd.order_id, asset, need, cid)
        cmd.lock = need
        model.held[cmd.account_id][asset] += need
        if cid != NO_CLIENT_ID:
            model.pending_cids.add((cmd.account_id, cid))
        return True

    def finish_place(self, cmd: PlaceOrder) -> None:
        """The market actor's decision, then the account settles it."""
        market = self.venue.markets[cmd.symbol]
        spec = self.model.specs[cmd.symbol]
        decided = market.decide_place(cmd, self.tick())
        expected_refusal = self.model.state[cmd.symbol] in (CLOSED, CANCEL_ONLY) or (
            cmd.order_type == MARKET and self.model.state[cmd.symbol] in (LIMIT_ONLY, POST_ONLY)
        )
        account = self.venue.accounts[cmd.account_id]
        account.release_hold(cmd.order_id, cmd.client_id, cmd.lock)  # as the account actor does
        self.model.held[cmd.account_id][spec.quote if cmd.side == BID else spec.base] -= cmd.lock
        self.model.pending_cids.discard((cmd.account_id, cmd.client_id))
        if expected_refusal:
            assert isinstance(decided, Rejection), (cmd, decided)
            note_event("place: refused by market state")
            return
        assert isinstance(decided, OrderPlaced), (cmd, decided)
        self.check_placed(cmd, decided)
        note_event(f"place: {cmd.order_type} {decided.status} {decided.expiry_reason}".strip())
        if len(decided.fills) > 1:
            note_event("place: several fills")
        if decided.stp_cancelled:
            note_event("place: STP cancelled makers")
        self.apply(decided)

    def check_placed(self, cmd: PlaceOrder, e: OrderPlaced) -> None:
        model = self.model
        spec = model.specs[cmd.symbol]
        echo = (
            cmd.order_id, cmd.account_id, cmd.symbol, cmd.side, cmd.order_type, cmd.tif, cmd.price_ticks,
            cmd.qty_steps, cmd.quote_qty, cmd.post_only, cmd.stp, cmd.client_id, cmd.lock, self.now,
        )
        got = (
            e.order_id, e.account_id, e.symbol, e.side, e.order_type, e.tif, e.price_ticks,
            e.qty_steps, e.quote_qty, e.post_only, e.stp, e.client_id, e.lock, e.ts_us,
        )
        assert got == echo, (got, echo)
        assert (e.status == EXPIRED) == bool(e.expiry_reason), e
        state = model.state[cmd.symbol]

        def early(reason: str) -> None:
            assert (e.status, e.expiry_reason, e.fills, e.stp_cancelled) == (EXPIRED, reason, [], []), (cmd, e)

        if cmd.order_type == LIMIT:
            if not model.in_band(cmd.symbol, cmd.price_ticks):
                return early(R_PRICE_OUT_OF_BOUNDS)
            if (cmd.post_only or state == POST_ONLY) and model.crosses(cmd.symbol, cmd.side, cmd.price_ticks):
                return early(R_POST_ONLY_TAKER if cmd.post_only else R_POST_ONLY_MODE)
        bid = cmd.side == BID
        max_steps: int
        max_quote: int | None
        if cmd.order_type == LIMIT:
            max_steps, max_quote = cmd.qty_steps, None
        elif bid:
            max_steps, max_quote = (cmd.qty_steps or 1 << 62), cmd.lock
        elif cmd.qty_steps:
            max_steps, max_quote = cmd.qty_steps, None
        else:
            max_steps, max_quote = cmd.lock // spec.base_per_step, cmd.quote_qty
        ref = model.walk(cmd, max_steps, max_quote)
        # all or nothing: the whole quantity, or for an order sized in quote, until its quote runs out
        complete = ref.filled == cmd.qty_steps if cmd.qty_steps else ref.quote_bound
        if cmd.tif == FOK and (ref.stopped or not complete):
            return early(R_FILL_OR_KILL)
        # the trades: exactly the reference matcher's, with consecutive ids and fees rounded up
        trade_id = model.next_trade_id[cmd.symbol]
        expected = []
        for i, (maker, steps) in enumerate(ref.fills):
            base = steps * spec.base_per_step
            quote = maker.price * steps * spec.quote_per_tick_step
            taker_gets, maker_gets = (base, quote) if bid else (quote, base)
            expected.append((
                trade_id + i, maker.order_id, maker.account_id, maker.price, steps,
                fee_atoms(maker_gets, spec.maker_fee_bps), fee_atoms(taker_gets, spec.taker_fee_bps),
            ))
        fills = [attrs.astuple(f) for f in e.fills]
        assert fills == expected, (cmd, fills, expected)
        assert e.stp_cancelled == ref.stp_cancelled, (cmd, e.stp_cancelled, ref.stp_cancelled)
        # the taker never pays more than it held, and what rests stays covered
        paid = ref.quote if bid else ref.filled * spec.base_per_step
        assert paid <= cmd.lock, (cmd, paid)
        # the final status
        if ref.stopped:
            outcome = (EXPIRED, R_SELF_TRADE)
        elif cmd.order_type == LIMIT:
            if ref.filled == cmd.qty_steps:
                outcome = (FILLED, "")
            elif cmd.tif == IOC:
                outcome = (EXPIRED, R_IMMEDIATE_OR_CANCEL)
            else:
                outcome = (PARTIALLY_FILLED if ref.filled else NEW, "")
                rest = cmd.price_ticks * (cmd.qty_steps - ref.filled) * spec.quote_per_tick_step if bid else (
                    (cmd.qty_steps - ref.filled) * spec.base_per_step
                )
                assert rest <= cmd.lock - paid, (cmd, rest, paid)
        elif cmd.qty_steps:
            if ref.filled == cmd.qty_steps:
                outcome = (FILLED, "")
            else:
                outcome = (EXPIRED, R_INSUFFICIENT_FUNDS if ref.quote_bound else R_INSUFFICIENT_LIQUIDITY)
        elif ref.quote_bound:  # the quote is spent, or too small for one step
            outcome = (FILLED, "") if ref.filled else (EXPIRED, R_INVALID_QUANTITY)
        else:
            short = not bid and ref.filled == max_steps
            outcome = (EXPIRED, R_INSUFFICIENT_FUNDS if short else R_INSUFFICIENT_LIQUIDITY)
        assert (e.status, e.expiry_reason) == outcome, (cmd, e, outcome)
        if cmd.order_type == MARKET and not cmd.qty_steps:
            assert ref.quote <= cmd.quote_qty, (cmd, ref.quote)

    def hold_amend(self, cmd: AmendOrder) -> str | None:
        """The account actor's part of an amendment: hold the worst-case increase.

        Returns the held asset when the amendment goes on to the market.
        """
        model = self.model
        spec = model.specs[cmd.symbol]
        account = self.venue.accounts[cmd.account_id]
        decided = account.decide_amend_hold(cmd, spec)
        o = model.orders.get(cmd.order_id)
        if o is None or o.account_id != cmd.account_id or o.symbol != cmd.symbol:
            # An order of another market is "not found" too: sizing its hold with this
            # market's spec would hold the wrong asset (test_amend_naming_another_market).
            assert isinstance(decided, Rejection) and decided.code == "RESOURCE_NOT_FOUND", (cmd, decided)
            return None
        asset, lock = model.lock_of(o)
        price = cmd.price_ticks or o.price
        total = cmd.qty_steps or o.remaining
        if o.side == BID:
            need = price * total * spec.quote_per_tick_step - lock
        else:
            need = total * spec.base_per_step - lock
        need = max(need, 0)
        if need > model.available(cmd.account_id, asset):
            assert isinstance(decided, Rejection) and decided.code == "INSUFFICIENT_FUNDS", (cmd, decided)
            return None
        assert decided == (asset, need), (cmd, decided, need)
        account.hold(cmd.order_id, asset, need, NO_CLIENT_ID)
        cmd.hold = need
        model.held[cmd.account_id][asset] += need
        return asset

    def finish_amend(self, cmd: AmendOrder, hold_asset: str) -> None:
        model = self.model
        decided = self.venue.markets[cmd.symbol].decide_amend(cmd, self.tick())
        self.venue.accounts[cmd.account_id].release_hold(cmd.order_id, NO_CLIENT_ID, cmd.hold)
        model.held[cmd.account_id][hold_asset] -= cmd.hold
        o = model.orders.get(cmd.order_id)
        expected: OrderAmended | str
        if model.state[cmd.symbol] in (CLOSED, CANCEL_ONLY):
            expected = "TRADING_PAUSED"
        elif o is None or o.account_id != cmd.account_id or o.symbol != cmd.symbol:
            expected = "RESOURCE_NOT_FOUND"
        else:
            price = cmd.price_ticks or o.price
            total = cmd.qty_steps or o.qty
            executed = o.qty - o.remaining
            after = MOrder(o.order_id, o.account_id, o.symbol, o.side, price, total, total - executed, o.client_id, 0)
            if total <= executed:
                expected = "INVALID_QUANTITY"
            elif price != o.price and (not model.in_band(cmd.symbol, price) or model.crosses(cmd.symbol, o.side, price)):
                expected = "INVALID_PRICE"
            elif price * total * model.specs[cmd.symbol].quote_per_tick_step < model.specs[cmd.symbol].min_notional_quote:
                expected = "INVALID_ORDER"  # the amended order must meet the minimum notional, as a new one does
            elif model.lock_of(after)[1] - model.lock_of(o)[1] > cmd.hold:
                expected = "INSUFFICIENT_FUNDS"
            else:
                expected = OrderAmended(
                    o.order_id, o.account_id, o.symbol, price, total, model.lock_of(after)[1], cmd.hold, self.now
                )
        if isinstance(expected, str):
            assert isinstance(decided, Rejection) and decided.code == expected, (cmd, decided, expected)
            note_event(f"amend: {expected}")
            return
        assert decided == expected, (cmd, decided, expected)
        note_event("amend: applied")
        self.apply(decided)

    def resolve_cancel(self, cmd: CancelOrder) -> bool:
        """The account actor's part of a cancel: resolve a client id."""
        if cmd.order_id >= 0:
            return True
        by_cid = self.model.client_ids(cmd.account_id)
        cmd.order_id = self.venue.accounts[cmd.account_id].client_ids.get(cmd.client_id, -1)
        assert cmd.order_id == by_cid.get(cmd.client_id, -1)
        return cmd.order_id >= 0

    def finish_cancel(self, cmd: CancelOrder) -> None:
        model = self.model
        decided = self.venue.markets[cmd.symbol].decide_cancel(cmd, self.tick())
        o = model.orders.get(cmd.order_id)
        if model.state[cmd.symbol] == CLOSED:
            assert isinstance(decided, Rejection) and decided.code == "TRADING_PAUSED", decided
        elif o is None or o.account_id != cmd.account_id or o.symbol != cmd.symbol:
            assert isinstance(decided, Rejection) and decided.code == "RESOURCE_NOT_FOUND", decided
        else:
            assert decided == OrderCancelled(o.order_id, o.account_id, o.symbol, self.now), decided
            self.apply(decided)

    # --- drawing commands ---------------------------------------------------------------------

    def draw_place(self, data: st.DataObject) -> PlaceOrder:
        users = self.users()
        account_id = data.draw(st.sampled_from(users), label="account")
        it = data.draw(intents(), label="order")
        if it.side == TAKE:  # a taker meets someone else's orders (explicit sides cover STP)
            depth = {s: self.model.side_orders(it.symbol, s) for s in (BID, ASK)}
            it.side = ASK if len(depth[BID]) > len(depth[ASK]) else BID
            makers = depth[opposite(it.side)]
            if makers and makers[0].account_id == account_id:
                account_id = users[(users.index(account_id) + 1) % len(users)]
        return self.build_order(account_id, it)

    def draw_amend(self, data: st.DataObject) -> AmendOrder:
        orders = sorted(self.model.orders)
        pick = data.draw(st.integers(0, 9), label="which order") if orders else 0
        if pick:
            o = self.model.orders[data.draw(st.sampled_from(orders), label="order id")]
            account_id, symbol, order_id = o.account_id, o.symbol, o.order_id
            if pick == 1:  # the owner names another market: must be "not found"
                symbol = next(s for s in SYMBOLS if s != o.symbol)
        else:  # a missing order, or one that belongs to someone else
            account_id = data.draw(st.sampled_from(self.users()), label="account")
            symbol = data.draw(st.sampled_from(SYMBOLS), label="symbol")
            order_id = data.draw(st.sampled_from([*orders, self.next_order_id + 7]), label="order id")
        price = data.draw(st.sampled_from([0, 0, 1]), label="change price")
        if price:
            mid = MID_TICKS[symbol]
            price = mid + data.draw(st.integers(-SPREAD_TICKS, SPREAD_TICKS), label="price offset")
            if data.draw(st.integers(0, 9), label="far") == 0:
                price = mid * 3 // 5
        qty = data.draw(st.sampled_from([0, 0, 1]), label="change qty")
        if qty:
            qty = data.draw(st.integers(1, 50), label="new total qty")
        if not price and not qty:
            qty = data.draw(st.integers(1, 50), label="new total qty")
        return AmendOrder(account_id, symbol, order_id, NO_CLIENT_ID, price, qty)

    def draw_cancel(self, data: st.DataObject) -> CancelOrder:
        orders = sorted(self.model.orders)
        if orders and data.draw(st.integers(0, 9), label="cancel known order") > 0:
            o = self.model.orders[data.draw(st.sampled_from(orders), label="order id")]
            if o.client_id >= 0 and data.draw(st.booleans(), label="by client id"):
                return CancelOrder(o.account_id, o.symbol, -1, o.client_id)
            return CancelOrder(o.account_id, o.symbol, o.order_id)
        account_id = data.draw(st.sampled_from(self.users()), label="account")
        symbol = data.draw(st.sampled_from(SYMBOLS), label="symbol")
        if data.draw(st.booleans(), label="by client id"):
            return CancelOrder(account_id, symbol, -1, data.draw(st.integers(1, 3), label="client id"))
        return CancelOrder(account_id, symbol, data.draw(st.sampled_from([*orders, 10**9]), label="order id"))

    # --- the one rule -----------------------------------------------------------------------
    # One rule drawing its command keeps every example trading (hypothesis' swarm testing
    # would switch whole rules off, and its repeated steps repeat the first kind: ``place``).

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        self.healthy = False
        kind = data.draw(st.sampled_from(COMMANDS), label="command")
        getattr(self, f"do_{kind}")(data)

    # --- commands -------------------------------------------------------------------------------

    def do_place(self, data: st.DataObject) -> None:
        """One to three orders, each through the whole account -> market -> settle path."""
        for _ in range(data.draw(st.integers(1, 3), label="orders")):
            cmd = self.draw_place(data)
            if self.hold_place(cmd):
                self.venue.check_invariants(idle=False)
                self.finish_place(cmd)

    def do_quote(self, data: st.DataObject) -> None:
        """A bid then an ask, ``depth`` ticks either side of the mid: resting liquidity for
        takers to meet, or (negative depth) an ask that trades with the bid."""
        depth = data.draw(st.integers(-3, SPREAD_TICKS), label="depth")
        for side, sign in ((BID, -1), (ASK, 1)):
            account_id = data.draw(st.sampled_from(self.users()), label="account")
            it = data.draw(intents(), label="order")
            it.side, it.shape, it.price = side, (LIMIT, GTC, False), AGGRESSIVE + SPREAD_TICKS + sign * depth
            cmd = self.build_order(account_id, it)
            if self.hold_place(cmd):
                self.finish_place(cmd)

    def do_batch(self, data: st.DataObject) -> None:
        """Several commands in flight together: accounts decide and hold first, markets decide after.

        This is one account-actor batch followed by the market actors' batches: later
        holds see earlier ones, markets see the book as earlier decisions left it.
        """
        forwarded: list[tuple[Any, str]] = []
        for _ in range(data.draw(st.integers(2, 4), label="batch size")):
            kind = data.draw(st.sampled_from(["place", "amend", "place", "cancel", "funds"]), label="kind")
            if kind == "place":
                cmd: Any = self.draw_place(data)
                if self.hold_place(cmd):
                    forwarded.append((cmd, ""))
            elif kind == "amend":
                cmd = self.draw_amend(data)
                held = self.hold_amend(cmd)
                if held is not None:
                    forwarded.append((cmd, held))
            elif kind == "cancel":
                cmd = self.draw_cancel(data)
                if self.resolve_cancel(cmd):
                    forwarded.append((cmd, ""))
            else:  # decided and applied at once, against what the holds left available
                self.do_funds(data)
            self.venue.check_invariants(idle=False)
        if sum(type(c) is AmendOrder for c, _ in forwarded) > 1:
            note_event("batch: several amends in flight")
        for cmd, asset in forwarded:
            if type(cmd) is PlaceOrder:
                self.finish_place(cmd)
            elif type(cmd) is AmendOrder:
                self.finish_amend(cmd, asset)
            else:
                self.finish_cancel(cmd)
            self.venue.check_invariants(idle=False)
            self.check_model(idle=False)

    def do_amend(self, data: st.DataObject) -> None:
        by_client_id = data.draw(st.booleans(), label="by client id")
        cmd = self.draw_amend(data)
        if by_client_id and cmd.order_id in self.model.orders and self.model.orders[cmd.order_id].client_id >= 0:
            # the account actor resolves a client id to the order id before holding
            cid = self.model.orders[cmd.order_id].client_id
            cmd.order_id = self.venue.accounts[cmd.account_id].client_ids.get(cid, -1)
        held = self.hold_amend(cmd)
        if held is not None:
            self.venue.check_invariants(idle=False)
            self.finish_amend(cmd, held)

    def do_cancel(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 2), label="one order (else all)"):
            cmd = self.draw_cancel(data)
            if self.resolve_cancel(cmd):
                self.finish_cancel(cmd)
            return
        owners = sorted({(o.account_id, o.symbol) for o in self.model.orders.values()})
        if owners and data.draw(st.integers(0, 3), label="someone with orders"):
            account_id, symbol = data.draw(st.sampled_from(owners), label="account, symbol")
        else:
            account_id = data.draw(st.sampled_from(self.users()), label="account")
            symbol = data.draw(st.sampled_from(SYMBOLS), label="symbol")
        decided = self.venue.markets[symbol].decide_cancel_all(account_id, self.tick())
        mine = sorted(o.order_id for o in self.model.orders.values() if o.account_id == account_id and o.symbol == symbol)
        if self.model.state[symbol] == CLOSED:
            assert decided == Rejection("TRADING_PAUSED", f"Market {symbol} is closed"), decided
            return
        assert not isinstance(decided, Rejection), decided
        assert sorted(e.order_id for e in decided) == mine, (decided, mine)
        for e in decided:
            assert e == OrderCancelled(e.order_id, account_id, symbol, self.now), e
            self.apply(e)

    def do_funds(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["deposit", "withdraw", "transfer", "request", "decide"]), label="funds")
        asset = data.draw(st.sampled_from(ASSETS), label="asset")
        users = self.users()
        if kind == "deposit":
            account_id = data.draw(st.sampled_from(users), label="account")
            self.deposit_now(account_id, asset, data.draw(amount_strategy(asset), label="amount"))
        elif kind == "withdraw":
            account_id = data.draw(st.sampled_from(users), label="account")
            self.withdraw_now(account_id, asset, self.draw_amount(data, account_id, asset))
        elif kind == "request":
            account_id = data.draw(st.sampled_from(users), label="account")
            self.request_withdrawal_now(account_id, asset, self.draw_amount(data, account_id, asset))
        elif kind == "decide" and self.model.requests:
            request_id = data.draw(st.sampled_from(sorted(self.model.requests)), label="request")
            self.decide_withdrawal_now(request_id, data.draw(st.booleans(), label="approve"))
        else:
            pairs = [(a, b) for a in users for b in users if self.model.parents[b] == a]
            pairs += [(b, a) for a, b in pairs]
            if pairs and data.draw(st.integers(0, 5), label="related") > 0:
                source, target = data.draw(st.sampled_from(pairs), label="pair")
            else:  # unrelated accounts (or itself): refused
                source = data.draw(st.sampled_from(users), label="from")
                target = data.draw(st.sampled_from(users), label="to")
            self.transfer_now(source, target, asset, self.draw_amount(data, source, asset))

    def do_state(self, data: st.DataObject) -> None:
        symbol = data.draw(st.sampled_from(SYMBOLS), label="symbol")
        state = data.draw(st.sampled_from([OPEN, *MARKET_STATES]), label="state")
        decided = self.venue.markets[symbol].decide_state(SetMarketState(symbol, state), self.tick())
        if state == self.model.state[symbol]:
            assert isinstance(decided, Rejection) and decided.code == "PRECONDITION_FAILED", decided
            return
        assert decided == MarketStateChanged(symbol, state, self.now), decided
        self.apply(decided)

    def do_onboard(self, data: st.DataObject) -> None:
        """Open an account (main or sub-account, funded or not), or register an API key."""
        api_key = data.draw(st.booleans(), label="api key")
        if api_key or len(self.model.parents) > MAX_ACCOUNTS:
            account_id = data.draw(st.sampled_from(self.users()), label="account")
            self.apply(ApiKeyAdded(account_id, fuzz_key(len(self.model.keys) + 1), self.tick()))
            return
        mains = [a for a in self.users() if self.model.parents[a] == -1]
        parent = data.draw(st.sampled_from([-1, *mains]), label="parent")
        country = data.draw(st.sampled_from(["", "US", "DE", "JP"]), label="country")
        category = data.draw(st.sampled_from(["retail", "professional", "eligible_counterparty"]), label="category")
        account_id = self.create(parent, country, category)
        if data.draw(st.booleans(), label="fund it"):
            for asset in ASSETS:
                self.deposit_now(account_id, asset, DEPOSIT_MAX[asset] // 4)

    # --- checks after every step -----------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        self.venue.check_invariants()
        self.check_model(idle=True)
        self.healthy = True

    def check_model(self, *, idle: bool) -> None:
        venue, model = self.venue, self.model
        if idle:
            assert not model.pending_cids
        assert set(venue.accounts) == set(model.parents)
        totals: Counter[str] = Counter()
        for account_id, account in venue.accounts.items():
            assert account.parent_id == model.parents[account_id]
            assert nz(account.balances) == nz(model.balances[account_id]), (account_id, account.balances, model.balances[account_id])
            assert nz(account.net_deposits) == nz(model.deposits[account_id]), account_id
            assert nz(account.locked) == nz(model.locked(account_id)), (account_id, account.locked)
            assert nz(account.held) == nz(model.held[account_id]), (account_id, account.held, model.held[account_id])
            assert nz(account.reserved) == nz(model.reserved[account_id]), (account_id, account.reserved)
            assert {i: r.status for i, r in account.withdrawals.items()} == {
                i: r[3] for i, r in model.requests.items() if r[0] == account_id
            }, account_id
            if idle:
                assert not account.holds and not account.pending_client_ids, (account_id, account.holds)
            assert account.client_ids == model.client_ids(account_id), account_id
            assert set(account.orders) == {o.order_id for o in model.orders.values() if o.account_id == account_id}
            totals.update(account.balances)
        # conservation against the deposits and withdrawals this test made
        assert nz(totals) == nz(model.external), (totals, model.external)
        for symbol, market in venue.markets.items():
            assert market.state == model.state[symbol]
            assert market.last_price == model.last_price[symbol]
            assert market.next_trade_id == model.next_trade_id[symbol]
            for side in (BID, ASK):
                book = [
                    (o.order_id, o.account_id, o.price_ticks, o.qty_steps, o.remaining_steps, o.client_id)
                    for _, level in market.book.levels(side) for o in level.values()
                ]
                expected = [
                    (o.order_id, o.account_id, o.price, o.qty, o.remaining, o.client_id)
                    for o in model.side_orders(symbol, side)
                ]
                assert book == expected, (symbol, side, book, expected)
        assert venue.api_keys == model.keys

    # --- at the end: replay, codec, commuting ------------------------------------------------------

    def teardown(self) -> None:
        if not self.healthy:  # a step failed: let its error speak, not a consequence of it
            return
        live = self.venue.state_hash()
        replayed = replay(self.log)
        assert replayed.state_hash() == live, "replaying the event log does not rebuild the live state"

        decoded: list[Event] = []
        by_rows = Venue(CONFIG)  # recovery's path: checked rows applied without building events
        i = 0
        while i < len(self.log):
            size = self.rnd.randint(1, 16)
            chunk = self.log[i:i + size]
            payload = encode_events(chunk)
            back = decode_events(payload)
            assert back == chunk, "codec round trip changed events"
            assert encode_events(back) == payload, "codec encoding is not canonical"
            decoded.extend(back)
            by_rows.replay_rows(decode_rows(payload))
            i += size
        by_events = replay(decoded)
        assert by_events.state_hash() == live, "replaying the decoded journal differs"
        assert full_state(by_rows) == full_state(by_events), "replay_rows leaves a different state than apply"

        shuffled, swaps = commute(self.log, self.rnd)
        note_event(f"commuted swaps: {'0' if not swaps else '1-9' if swaps < 10 else '10+'}")
        assert replay(shuffled, check_each=True).state_hash() == live, "concurrent events do not commute"


def replay(events: list[Event], *, check_each: bool = False) -> Venue:
    venue = Venue(CONFIG)
    for e in events:
        venue.apply(e)
        if check_each:
            venue.check_invariants()
    venue.check_invariants()
    return venue


# --- §3.3: which neighbours may arrive in either order ---------------------------------------------


def touched(e: Event) -> set[int]:
    t = type(e)
    if t is OrderPlaced:
        return {e.account_id, FEE_ACCOUNT_ID, *(f.maker_account_id for f in e.fills)}
    if t is Transferred:
        return {e.from_account_id, e.to_account_id}
    if t is MarketStateChanged:
        return set()
    return {e.account_id}  # type: ignore[union-attr]


def may_swap(a: Event, b: Event) -> bool:
    """True when ``b`` can be applied before ``a`` (they are adjacent, ``a`` first) in a real run.

    * A deposit comes from outside: moving it earlier never takes funds from anyone.
    * A transfer into X decided by S can land before a market event that does not
      touch S (X only gets the funds sooner).
    * A transfer into X can land after a fill of X's resting order (X not the taker)
      or after a cancel: the race between the sender's actor and a market actor, both
      sending to X. Those events only spend funds that were already locked.
    Nothing may pass the ``AccountCreated`` of an account it touches.
    """
    if type(a) is AccountCreated or type(b) is AccountCreated:
        return False
    if type(b) is Deposited:
        return True
    if type(b) is Transferred:
        return type(a) in (OrderPlaced, OrderCancelled, OrderAmended) and b.from_account_id not in touched(a)
    if type(a) is Transferred and a.from_account_id not in touched(b):
        to = a.to_account_id
        if type(b) is OrderCancelled:
            return True
        if type(b) is OrderPlaced:
            return b.account_id != to and any(f.maker_account_id == to for f in b.fills)
    return False


def commute(log: list[Event], rnd: random.Random) -> tuple[list[Event], int]:
    """Swap allowed neighbours at random, walking back to front so an event can move far."""
    events = list(log)
    swaps = 0
    for _ in range(3):
        for i in range(len(events) - 2, -1, -1):
            if may_swap(events[i], events[i + 1]) and rnd.random() < 0.5:
                events[i], events[i + 1] = events[i + 1], events[i]
                swaps += 1
    return events, swaps


def test_amend_naming_another_market() -> None:
    """Two amends of one order in flight, one naming the wrong market (found by the machine).

    The account sized the second hold with BTC_USDC's spec, in BTC, under the order's one
    hold entry: releasing the first amend's SOL hold then took it out of BTC, leaving
    SOL held forever and BTC held negative, i.e. BTC available that the account did not
    own (a withdrawal of it drove the balance negative). Fixed: the account answers
    "not found" for an order of another market, as the market does.
    """
    venue = Venue(CONFIG)
    venue.apply(AccountCreated(1, -1, "", "retail", 1))
    venue.apply(Deposited(1, "SOL", 10**9, 2))
    venue.apply(Deposited(1, "BTC", 10**8, 3))
    account, sol = venue.accounts[1], venue.markets["SOL_USDC"]
    place = PlaceOrder(1, 1, "SOL_USDC", ASK, LIMIT, GTC, 10_000, 10, 0, False, REJECT_TAKER, NO_CLIENT_ID)
    place.lock = 10 * sol.spec.base_per_step
    assert account.decide_place(place, sol.spec) == ("SOL", place.lock)
    account.hold(1, "SOL", place.lock, NO_CLIENT_ID)
    placed = sol.decide_place(place, 4)
    account.release_hold(1, NO_CLIENT_ID, place.lock)
    assert isinstance(placed, OrderPlaced) and placed.status == NEW
    venue.apply(placed)

    # one account-actor batch: both amends are held before any market answers
    right = AmendOrder(1, "SOL_USDC", 1, NO_CLIENT_ID, 0, 20)
    right.hold = 10 * sol.spec.base_per_step
    assert account.decide_amend_hold(right, sol.spec) == ("SOL", right.hold)
    account.hold(1, "SOL", right.hold, NO_CLIENT_ID)
    wrong = AmendOrder(1, "BTC_USDC", 1, NO_CLIENT_ID, 0, 20)
    refused = account.decide_amend_hold(wrong, venue.specs["BTC_USDC"])
    assert isinstance(refused, Rejection) and refused.code == "RESOURCE_NOT_FOUND", refused

    amended = sol.decide_amend(right, 5)
    account.release_hold(1, NO_CLIENT_ID, right.hold)
    assert isinstance(amended, OrderAmended)
    venue.apply(amended)
    venue.check_invariants()
    assert account.available("BTC") == 10**8


TestVenueMachine = VenueMachine.TestCase
TestVenueMachine.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
