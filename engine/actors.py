"""Trio actors: each owns one piece of venue state and is the only code that changes it.

Loop shape (all actors): wait for one message, drain the inbox without
blocking (``receive_nowait``) up to ``BATCH_MAX``, decide and apply each
message in order (so later messages see earlier effects), hand the batch's
events to the journal, and only then forward anything to other actors. One
channel operation per batch instead of per order is what makes a pure-Python
actor pipeline fast (reference/performance.md §5: ~50k vs ~700k orders/s).

Waits can only point one way, so the actors cannot deadlock:
intake -> account: ``send_nowait``, full means "overloaded" at once;
account -> market: ``MarketActor.post`` (a list append plus one wake-up per
pass), full means "overloaded" (holds released);
market -> account and anyone -> journal: may ``await`` (accounts and the
journal never wait on markets).

Replies and published events leave only through the journal actor
(``engine/journal_actor.py``) after the fsync that covers them (durable before
visible).

Idle fast path: when an account actor has nothing queued and no batch in
progress, intake (``admit``) and markets (``settle``/``release_now``) call
its handlers directly instead of queueing a one-message batch. Nothing can run
in between (no await), so the result is exactly what the actor would have done,
without a task switch per order; anything queued keeps FIFO order by going
through the inbox. Only the account actor's own methods touch its state.

The per-order path (one limit order that rests or trades): ``Engine.submit`` ->
``AccountActor.admit`` (``Account.reserve_place`` holds what it may spend, the
command joins its market's queue) -> ``MarketActor.run`` (``Market.place``
decides and applies it in one step) -> the journal -> ``_forward``: the taker
settles in one call (``settle_own``/``settle_taker``, bound straight to the
account's methods), each idle maker fill by fill (``settle_fill``), the fee
account once per trade. Anything unusual takes the general ``settle(e)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final

import trio

from engine import withdrawals
from engine.channels import Delivery, Sink, drain, send
from engine.journal_actor import JOURNAL_INBOX_SIZE
from engine.messages import (
    FEE_ACCOUNT_ID,
    NO_CLIENT_ID,
    WITHDRAWAL_COMMANDS,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Deposit,
    Deposited,
    Event,
    Fill,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    Rejection,
    SetMarketState,
    Transfer,
    Transferred,
    Withdraw,
    Withdrawn,
)
from engine.results import Result, placed_result
from engine.venue import placed_parties

if TYPE_CHECKING:
    from engine.account import Account
    from engine.market import Market
    from engine.runtime import Engine
    from engine.spec import MarketSpec

log = logging.getLogger("satchel.actors")

ACCOUNT_INBOX_SIZE: Final = 8192
MARKET_QUEUE_MAX: Final = 8192  # commands waiting for one market (~0.2 s of work); beyond this intake is refused
MARKET_BATCH_MAX: Final = 4096  # commands a market handles per pass before the journal hears of them

# account inbox message kinds
CMD: Final = 0  # (CMD, command, sink)
EVENTS: Final = 1  # (EVENTS, [event, ...], None): facts decided elsewhere to apply
REFUSED: Final = 2  # (REFUSED, [(order_id, client_id, atoms)], None): a market refused; drop the holds


def _complete_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run to its end, here, a coroutine that cannot wait (``MarketActor.pass_now`` checked first).

    Its awaits are channel sends into inboxes with room, which complete
    without a checkpoint, so the actor's own code runs unchanged in the
    caller's step.
    """
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("a market pass run in the caller's step had to wait")


class MarketActor:
    """Owns one market: matches, cancels, amends, changes state."""

    def __init__(self, engine: Engine, market: Market) -> None:
        self.engine = engine
        self.market = market
        self.view_placed = market.view_placed  # one bound method for every Result, not one per order
        # Commands wait in a plain list; the channel only carries wake-ups, at most one
        # outstanding. Queuing a command is a list append, not a channel send (a send
        # costs a few microseconds of trio bookkeeping, as much as matching the order).
        self.queue: list[tuple[Any, Sink | None]] = []
        self.woken = False
        self.tx, self.rx = trio.open_memory_channel[None](1)
        self.busy = False

    def post(self, cmd: Any, sink: Sink | None) -> bool:
        """Queue a command for this market; False (nothing queued) when the queue is full."""
        queue = self.queue
        if len(queue) >= MARKET_QUEUE_MAX:
            return False
        queue.append((cmd, sink))
        if not self.woken:
            held = self.engine.held_markets
            if held is None:
                self._wake()
            else:  # a batch of intake is in progress: its end runs or wakes us (``Engine.release_markets``)
                held[self] = None
        return True

    def _wake(self) -> None:
        self.woken = True
        self.tx.send_nowait(None)
        self.engine.pending += 1

    def pass_now(self) -> bool:
        """Run the pass the actor would run next, here in the caller's step; False when it cannot.

        For ``Engine.release_markets``: an adapter that submitted the commands of
        one read has the market decide them at once, one task switch sooner than
        the actor would (an order in flight alone waits for three steps instead of
        four: the reader's, the journal's, the publisher's). Only when nothing in
        the pass can wait, so it is exactly the actor's pass: the actor is idle,
        the commands fit in one pass, the journal's inbox has room, and no account
        inbox can fill (a pass posts at most two messages to an account, and
        ``engine.pending`` bounds what any inbox holds). The journal commits the
        pass here too when it is idle and this is the scheduler pass's first such
        commit (``JournalActor.commit_now``), else takes it through its inbox; replies
        leave after its fsync either way.
        """
        engine = self.engine
        queue = self.queue
        if (self.busy or self.woken or not queue or len(queue) > MARKET_BATCH_MAX
                or engine.journal.queued >= JOURNAL_INBOX_SIZE or engine.pending + 2 > ACCOUNT_INBOX_SIZE):
            return False
        self.queue = []
        self.busy = True
        try:
            now = engine.clock()
            events: list[Event] = []
            deliveries: list[Delivery] = []
            refused: dict[int, list[tuple[int, int, int]]] = {}
            for cmd, sink in queue:
                self._handle(cmd, sink, now, events, deliveries, refused)
            if not engine.journal.commit_now(events, deliveries):
                _complete_now(engine.journal.submit(events, deliveries))
            _complete_now(self._forward(events, refused))
        finally:
            self.busy = False
        return True

    def wake_if_queued(self) -> None:
        """Wake the actor for commands queued during a batch of intake it could not run at once."""
        if self.queue and not self.woken:
            self._wake()

    async def run(self) -> None:
        engine = self.engine
        clock = engine.clock
        async for _ in self.rx:
            self.woken = False
            self.busy = True
            items = self.queue
            if len(items) > MARKET_BATCH_MAX:
                items, self.queue = items[:MARKET_BATCH_MAX], items[MARKET_BATCH_MAX:]
                self._wake()  # the rest is the next pass's
            else:
                self.queue = []
            now = clock()
            events: list[Event] = []
            deliveries: list[Delivery] = []
            refused: dict[int, list[tuple[int, int, int]]] = {}
            place, view, add_event, add_delivery = self.market.place, self.view_placed, events.append, deliveries.append
            for cmd, sink in items:
                if type(cmd) is PlaceOrder:  # _handle's first case, inline: nearly every command
                    placed = place(cmd, now)
                    if type(placed) is OrderPlaced:
                        add_event(placed)
                        if sink is not None:
                            add_delivery((sink, placed_result(placed, view)))
                        continue
                self._handle(cmd, sink, now, events, deliveries, refused)
            await engine.journal.submit(events, deliveries)
            await self._forward(events, refused)
            engine.pending -= 1
            self.busy = False

    def _handle(
        self, cmd: Any, sink: Sink | None, now: int, events: list[Event],
        deliveries: list[Delivery], refused: dict[int, list[tuple[int, int, int]]],
    ) -> None:
        market = self.market
        t = type(cmd)
        if t is PlaceOrder:
            placed = market.place(cmd, now)
            if type(placed) is OrderPlaced:
                events.append(placed)
                if sink is not None:
                    deliveries.append((sink, placed_result(placed, self.view_placed)))
                return
            refused.setdefault(cmd.account_id, []).append((cmd.order_id, cmd.client_id, cmd.lock))
            if sink is not None:
                deliveries.append((sink, Result(rejection=placed)))  # type: ignore[arg-type]
            return
        if t is CancelOrder:
            decided = market.decide_cancel(cmd, now)
            if type(decided) is OrderCancelled:
                view = market.view(market.book.orders[decided.order_id])
                market.apply_cancelled(decided)
                view.status = "Cancelled"
                events.append(decided)
                deliveries.append((sink, Result(order=view, events=[decided])))  # type: ignore[arg-type]
            else:
                deliveries.append((sink, Result(rejection=decided)))  # type: ignore[arg-type]
            return
        if t is CancelAllOrders:
            views, cancelled = [], market.decide_cancel_all(cmd.account_id, now)
            if isinstance(cancelled, Rejection):
                deliveries.append((sink, Result(rejection=cancelled)))  # type: ignore[arg-type]
                return
            for decided in cancelled:
                view = market.view(market.book.orders[decided.order_id])
                market.apply_cancelled(decided)
                view.status = "Cancelled"
                views.append(view)
            events.extend(cancelled)
            deliveries.append((sink, Result(orders=views, events=list(cancelled))))  # type: ignore[arg-type]
            return
        if t is AmendOrder:
            amended = market.decide_amend(cmd, now)
            if isinstance(amended, OrderAmended):
                market.apply_amended(amended)
                events.append(amended)
                deliveries.append((sink, Result(order=market.view(market.book.orders[amended.order_id]), events=[amended])))  # type: ignore[arg-type]
            else:
                refused.setdefault(cmd.account_id, []).append((cmd.order_id, NO_CLIENT_ID, cmd.hold))
                deliveries.append((sink, Result(rejection=amended)))  # type: ignore[arg-type]
            return
        if t is SetMarketState:
            changed = market.decide_state(cmd, now)
            if isinstance(changed, Rejection):
                deliveries.append((sink, Result(rejection=changed)))  # type: ignore[arg-type]
            else:
                market.apply_state(changed)
                events.append(changed)
                deliveries.append((sink, Result(events=[changed])))  # type: ignore[arg-type]
            return
        raise AssertionError(f"market actor got {cmd!r}")

    async def _forward(self, events: list[Event], refused: dict[int, list[tuple[int, int, int]]]) -> None:
        """Tell every account its share of the batch's facts (after journaling them).

        An idle account actor applies them at once (the module docstring says why);
        a busy one gets them as one message. Idleness cannot change during the
        loop (no await), so each account sees its facts in batch order either way.
        """
        accounts = self.engine.account_actors
        spec = self.market.spec
        fee_account = self.engine.venue.accounts[FEE_ACCOUNT_ID]
        later: dict[int, list[Event]] = {}
        for e in events:
            t = type(e)
            parties: Iterable[int]
            if t is OrderPlaced:
                if not e.fills:  # type: ignore[union-attr]  # rested or expired untouched: only the taker is involved
                    actor = accounts[e.account_id]  # type: ignore[union-attr]
                    if actor.busy or actor.queued:
                        later.setdefault(e.account_id, []).append(e)  # type: ignore[union-attr]
                    else:
                        actor.settle_own(e, spec)  # type: ignore[arg-type]
                    continue
                if e.account_id == FEE_ACCOUNT_ID or fee_account.orders or fee_account.holds:  # type: ignore[union-attr]
                    # the fee account trades (never in practice): every party applies the whole event
                    parties = placed_parties(e)  # type: ignore[arg-type]
                else:
                    actor = accounts[e.account_id]  # type: ignore[union-attr]
                    if actor.busy or actor.queued:
                        later.setdefault(e.account_id, []).append(e)  # type: ignore[union-attr]
                    else:
                        actor.settle_taker(e, spec)  # type: ignore[arg-type]
                    self._settle_makers(e, spec, later)  # type: ignore[arg-type]
                    continue
            elif t is OrderCancelled or t is OrderAmended:
                parties = (e.account_id,)  # type: ignore[union-attr]
            else:
                continue
            for account_id in parties:
                actor = accounts[account_id]
                if actor.busy or actor.queued:
                    later.setdefault(account_id, []).append(e)
                else:
                    actor.settle(e)
        for account_id, evs in later.items():
            await accounts[account_id].post((EVENTS, evs, None))
        for account_id, orders in refused.items():
            actor = accounts[account_id]
            if not actor.release_now(orders):
                await actor.post((REFUSED, orders, None))

    def _settle_makers(self, e: OrderPlaced, spec: MarketSpec, later: dict[int, list[Event]]) -> None:
        """The makers' and the fee account's parts of a trade (the taker's is settled by the caller).

        An idle maker settles fill by fill (``Account.settle_maker_fill``); a busy
        one gets the whole event once, as ``settle`` would apply it. Idleness does
        not change inside ``_forward`` (no await), so each account applies all of
        its part one way or the other, in batch order. The same as every party
        calling ``settle(e)`` (``placed_parties``), without the per-party dispatch
        and without each maker walking every fill.
        """
        accounts = self.engine.account_actors
        fees = False
        for f in e.fills:
            actor = accounts[f.maker_account_id]
            if actor.busy or actor.queued:
                queued = later.setdefault(f.maker_account_id, [])
                if not queued or queued[-1] is not e:
                    queued.append(e)
            else:
                actor.settle_fill(f, spec)
            if not fees and (f.maker_fee > 0 or f.taker_fee > 0):  # as placed_parties decides
                fees = True
        if fees:
            actor = accounts[FEE_ACCOUNT_ID]
            if actor.busy or actor.queued:
                later.setdefault(FEE_ACCOUNT_ID, []).append(e)
            else:
                actor.settle_fees(e, spec)


class AccountActor:
    """Owns one account: risk checks, holds, settlement, deposits, withdrawals, transfers."""

    def __init__(self, engine: Engine, account: Account) -> None:
        self.engine = engine
        self.account = account
        self.tx, self.rx = trio.open_memory_channel[tuple[int, Any, Sink | None]](ACCOUNT_INBOX_SIZE)
        self.busy = False  # between taking a batch and finishing it (including its awaits)
        self.queued = 0  # messages in the inbox not yet taken
        # How the market actor settles this account's part of a trade while the actor is idle
        # (``MarketActor._forward``): the account's own methods, bound once here, since a
        # wrapper method would add a frame per order or fill.
        # settle_own: its order that traded nothing (the hold becomes its lock);
        # settle_taker: its order that traded (its makers are settled apart);
        # settle_fill: one fill against its resting order; settle_fees: the fee account's part.
        self.settle_own: Callable[[OrderPlaced, MarketSpec], None] = account.settle_unfilled
        self.settle_taker: Callable[[OrderPlaced, MarketSpec], None] = account.settle_taker
        self.settle_fill: Callable[[Fill, MarketSpec], None] = account.settle_maker_fill
        self.settle_fees: Callable[[OrderPlaced, MarketSpec], None] = account.settle_fees

    def post_nowait(self, item: tuple[int, Any, Sink | None]) -> None:
        """Queue a message; raises trio.WouldBlock when the inbox is full."""
        self.tx.send_nowait(item)
        self.queued += 1
        self.engine.pending += 1

    async def post(self, item: tuple[int, Any, Sink | None]) -> None:
        """Queue a message, waiting for room (only markets and accounts, never intake)."""
        self.queued += 1
        self.engine.pending += 1
        await send(self.tx, item)

    def admit(self, cmd: Any, sink: Sink) -> bool:
        """Handle an order command at once when nothing is queued or in progress here.

        Equivalent to the actor taking it as a one-message batch (no await runs in
        between, so nothing can interleave), minus a task switch per order.
        Order commands make no journal events at the account (holds are live-only),
        so there is nothing to journal before forwarding.
        """
        if self.busy or self.queued:
            return False
        if type(cmd) is PlaceOrder:  # the common case: _hold_place written out
            engine = self.engine
            spec = engine.venue.specs[cmd.symbol]
            refused = engine.gate_order(self.account, spec, cmd) if engine.gated else None
            if refused is None:
                refused = self.account.reserve_place(cmd, spec)
            if refused is not None:
                engine.deliver(sink, Result(rejection=refused))
                return True
            if not engine.market_actors[cmd.symbol].post(cmd, sink):
                self._overloaded(cmd.symbol, [(cmd, sink)])
            return True
        deliveries: list[Delivery] = []
        forwards: dict[str, list[tuple[Any, Sink | None]]] = {}
        self._command(cmd, sink, 0, [], deliveries, forwards)
        for target, value in deliveries:
            self.engine.deliver(target, value)
        for symbol, items in forwards.items():
            self._forward(symbol, items)
        return True

    def release_now(self, refused: list[tuple[int, int, int]]) -> bool:
        """Drop holds of refused commands at once when this actor is idle."""
        if self.busy or self.queued:
            return False
        for order_id, client_id, atoms in refused:
            self.account.release_hold(order_id, client_id, atoms)
        return True

    async def run(self) -> None:
        engine = self.engine
        account = self.account
        async for first in self.rx:
            self.busy = True
            batch = drain(self.rx, first)
            self.queued -= len(batch)
            now = engine.clock()
            events: list[Event] = []
            deliveries: list[Delivery] = []
            forwards: dict[str, list[tuple[Any, Sink | None]]] = {}
            for kind, payload, sink in batch:
                if kind == EVENTS:
                    for e in payload:
                        self.settle(e)
                elif kind == REFUSED:
                    for order_id, client_id, atoms in payload:
                        account.release_hold(order_id, client_id, atoms)
                else:
                    self._command(payload, sink, now, events, deliveries, forwards)
            if events or deliveries:
                await engine.journal.submit(events, deliveries)
            for e in events:
                if type(e) is Transferred and e.to_account_id != account.account_id:
                    await engine.account_actors[e.to_account_id].post((EVENTS, [e], None))
            for symbol, items in forwards.items():
                self._forward(symbol, items)
            engine.pending -= len(batch)
            self.busy = False

    def settle(self, e: Event) -> None:
        """Apply another actor's fact: from this actor's own loop, or directly while it is idle (see ``admit``)."""
        account = self.account
        t = type(e)
        if t is OrderPlaced:
            if e.account_id == account.account_id:  # type: ignore[union-attr]
                account.release_hold(e.order_id, e.client_id, e.lock)  # type: ignore[union-attr]
            account.apply_placed(e, self.engine.venue.specs[e.symbol])  # type: ignore[arg-type, union-attr]
        elif t is OrderCancelled:
            account.apply_cancelled(e)  # type: ignore[arg-type]
        elif t is OrderAmended:
            account.release_hold(e.order_id, NO_CLIENT_ID, e.hold)  # type: ignore[union-attr]
            account.apply_amended(e, self.engine.venue.specs[e.symbol])  # type: ignore[arg-type, union-attr]
        elif t is Transferred:
            account.apply_transferred(e)  # type: ignore[arg-type]
        else:
            raise AssertionError(f"account actor cannot settle {e!r}")

    def _command(
        self, cmd: Any, sink: Sink | None, now: int, events: list[Event],
        deliveries: list[Delivery], forwards: dict[str, list[tuple[Any, Sink | None]]],
    ) -> None:
        account = self.account
        venue = self.engine.venue
        t = type(cmd)
        if t is PlaceOrder:
            refused = self._hold_place(cmd)
            if refused is not None:
                deliveries.append((sink, Result(rejection=refused)))  # type: ignore[arg-type]
            else:
                forwards.setdefault(cmd.symbol, []).append((cmd, sink))
        elif t is CancelOrder:
            if cmd.order_id < 0:
                cmd.order_id = account.client_ids.get(cmd.client_id, -1)
                if cmd.order_id < 0:
                    deliveries.append((sink, Result(rejection=Rejection("RESOURCE_NOT_FOUND", "Order not found"))))  # type: ignore[arg-type]
                    return
            forwards.setdefault(cmd.symbol, []).append((cmd, sink))
        elif t is CancelAllOrders:
            forwards.setdefault(cmd.symbol, []).append((cmd, sink))
        elif t is AmendOrder:
            if cmd.order_id < 0:
                cmd.order_id = account.client_ids.get(cmd.client_id, -1)
            decided = account.decide_amend_hold(cmd, venue.specs[cmd.symbol])
            if type(decided) is Rejection:
                deliveries.append((sink, Result(rejection=decided)))  # type: ignore[arg-type]
                return
            asset, atoms = decided  # type: ignore[misc]
            account.hold(cmd.order_id, asset, atoms, -1)
            cmd.hold = atoms
            forwards.setdefault(cmd.symbol, []).append((cmd, sink))
        elif t in WITHDRAWAL_COMMANDS:
            self._withdrawal(cmd, sink, now, events, deliveries)
        else:
            self._funds(cmd, sink, now, events, deliveries)

    def _hold_place(self, cmd: PlaceOrder) -> Rejection | None:
        """Gate and fund a new order, holding what it may spend; or say why not."""
        engine = self.engine
        spec = engine.venue.specs[cmd.symbol]
        if engine.gated:
            denial = engine.gate_order(self.account, spec, cmd)
            if denial is not None:
                return denial
        return self.account.reserve_place(cmd, spec)

    def _funds(self, cmd: Any, sink: Sink | None, now: int, events: list[Event], deliveries: list[Delivery]) -> None:
        account = self.account
        venue = self.engine.venue
        t = type(cmd)
        decimals = venue.assets[cmd.asset].decimals
        decided: Deposited | Withdrawn | Transferred | Rejection
        if t is Deposit:
            decided = account.decide_deposit(cmd, now, venue.supply.get(cmd.asset, 0))
        elif t is Withdraw:
            decided = account.decide_withdraw(cmd, now, decimals)
        elif t is Transfer:
            other = venue.accounts[cmd.to_account_id]
            decided = account.decide_transfer(cmd, other.parent_id, now, decimals)
        else:
            raise AssertionError(f"account actor got {cmd!r}")
        if isinstance(decided, Rejection):
            deliveries.append((sink, Result(rejection=decided)))  # type: ignore[arg-type]
            return
        venue.apply_own(account, decided)
        events.append(decided)
        deliveries.append((sink, Result(events=[decided])))  # type: ignore[arg-type]

    def _withdrawal(self, cmd: Any, sink: Sink | None, now: int, events: list[Event], deliveries: list[Delivery]) -> None:
        """Request, approve or decline a queued withdrawal (engine/withdrawals.py decides)."""
        venue = self.engine.venue
        decided = withdrawals.decide(self.account, cmd, now, lambda asset: venue.assets[asset].decimals)
        if isinstance(decided, Rejection):
            deliveries.append((sink, Result(rejection=decided)))  # type: ignore[arg-type]
            return
        venue.apply_withdrawal(decided)
        events.append(decided)
        view = withdrawals.view(self.account, decided.request_id)  # as this fact left it
        deliveries.append((sink, Result(events=[decided], value=view)))  # type: ignore[arg-type]

    def _forward(self, symbol: str, items: list[tuple[Any, Sink | None]]) -> None:
        engine = self.engine
        market = engine.market_actors[symbol]
        for i, (cmd, sink) in enumerate(items):
            if not market.post(cmd, sink):
                self._overloaded(symbol, items[i:])
                return

    def _overloaded(self, symbol: str, items: list[tuple[Any, Sink | None]]) -> None:
        """Refuse commands the market has no room for, dropping what they held."""
        engine = self.engine
        overloaded = Rejection("TOO_MANY_REQUESTS", f"Engine overloaded: market {symbol} is busy, retry later")
        for cmd, sink in items:
            if type(cmd) is PlaceOrder:
                self.account.release_hold(cmd.order_id, cmd.client_id, cmd.lock)
            elif type(cmd) is AmendOrder:
                self.account.release_hold(cmd.order_id, NO_CLIENT_ID, cmd.hold)
            if sink is not None:
                engine.deliver(sink, Result(rejection=overloaded))


__all__ = ["FEE_ACCOUNT_ID", "AccountActor", "MarketActor"]
