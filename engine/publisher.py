"""Market data and account updates, built only from durable events (ints in, ints out).

The publisher keeps a *shadow* ``Venue`` that holds only durable facts. At
start (``Publisher.rebuild``) it replays the journal from genesis through the
same code as live batches, so trades, klines, tickers, fills and order
histories (and every market's update id) are what they were before the
restart; then it subscribes to ``JournalActor.subscribe()`` at exactly the
record it stopped reading (see ``rebuild``). It applies events with the same
``Venue.apply`` replay uses, so its books, balances and open orders are exactly
the durable state, never ahead of it; adapters read that state through
``PublisherReads`` (``engine/publisher_reads.py``). One publisher serves every
adapter of an engine (``engine/publisher_service.py``).

What it derives, per batch, in journal order (the records are in ``engine/updates.py``):
    * per market, one ``DepthUpdate`` with absolute level sizes and the update
      ids it covers: every event that changes a market's book takes the next
      id of that market's counter, so ``first_id == previous last_id + 1`` and
      ``depth(symbol)``'s ``update_id`` is on the same counter (a client syncs
      snapshot + stream with no gap);
    * ``TradeRecord`` per fill (bounded ring per market), klines for every
      interval (bounded per interval), the inputs of a rolling 24 h ticker;
    * ``BookTop`` when a market's best bid or ask changes;
    * per account: ``OrderUpdate`` (accepted, fill, cancelled, expired,
      modified), ``BalanceUpdate`` for each touched asset, and bounded histories
      of fills, closed orders, deposits and withdrawals. Amounts reserved by
      pending withdrawal requests count as locked in balances.

Listeners (the WebSocket adapter, later FIX drop copies) get each batch's
updates once, synchronously; they must not block. No sockets and no wire
formats live here.

Limits: the rebuild reads the whole journal (about as fast as recovery's replay
from genesis; bench/publisher_bench.py), because no shorter tail is guaranteed
to hold an account's newest ``HISTORY_KEEP`` fills. If the journal drops the
publisher for falling behind, it catches up from disk from the exact event it
had reached, so listeners see every update once and update ids never jump.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from engine import publisher_state
from engine.audit import collector_paused, is_control
from engine.codec import decode_events
from engine.journal import ZERO_HASH, JournalCorrupt, JournalReader
from engine.messages import (
    ASK,
    BID,
    CANCELLED,
    EXPIRED,
    FEE_ACCOUNT_ID,
    FILLED,
    Deposited,
    Event,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    OrderView,
    Transferred,
    WithdrawalApproved,
    WithdrawalRejected,
    WithdrawalRequested,
    Withdrawn,
)
from engine.publisher_reads import Histories, MarketData, PublisherReads, top_of
from engine.updates import (
    ACCEPTED,
    CANCELLED_KIND,
    EXPIRED_KIND,
    FILL,
    MODIFIED,
    BalanceUpdate,
    BookTop,
    Candle,
    DepthUpdate,
    FillInfo,
    FillRecord,
    FundsRecord,
    Listener,
    OrderUpdate,
    TradeRecord,
    Update,
    bucket,
)
from engine.venue import Venue

if TYPE_CHECKING:
    from engine.journal_actor import JournalActor
    from engine.runtime import Engine

log = logging.getLogger("satchel.publisher")

SYNC_TAIL_RECORDS: Final = 256  # at most this many records are read on the event loop at the boundary
MAX_THREADED_PASSES: Final = 8  # then the boundary step reads whatever is left (the engine outran us)

_ENDED: Final = (FILLED, EXPIRED, CANCELLED)  # statuses after which a placed order does not rest


class PositionMismatch(Exception):
    """The journal holds fewer events after a position than the publisher had applied there."""


class Publisher(PublisherReads):
    """Derived, durable-only state plus fan-out to listeners. See the module docstring."""

    def __init__(self, venue: Venue) -> None:
        self.listeners: list[Listener] = []
        # Set by a listener that reports acceptances itself (the FIX adapter answers each
        # placement from its Result). Asked once per placement, in journal order, but only
        # while that listener is the only one; True means it has reported this acceptance,
        # so its ``orderAccepted`` update (and view) is not built at all. With any other
        # listener registered it is not asked and every update is built as before.
        self.accepted_reported: Callable[[OrderPlaced], bool] | None = None
        self._skipped_accepts = False
        # What a listener registered with ``narrow`` needs (see there); any other listener gets everything.
        self._wants_depth: dict[Listener, Callable[[], bool]] = {}
        self.resyncs = 0
        self.events = 0  # applied in total (rebuild included)
        self.source = ""  # how ``rebuild`` made it, for the log and tests
        self._base = (0, ZERO_HASH)  # journal position where the live subscription starts
        self._followed = 0  # events applied from the subscription since ``_base``
        self._funds_seq = 0
        self._rx: trio.MemoryReceiveChannel[tuple[int, list[Event]]] | None = None
        # The journal record through which every event is applied here, while following the
        # journal; reads wait for it (``reached``) so they see every answer already sent.
        self.applied_seq = 0
        self._advanced: trio.Event | None = None  # set when applied_seq moves, if a read waits
        self._sent_balances: dict[tuple[int, str], tuple[int, int]] = {}  # only changes are published
        super().__init__(venue)

    def narrow(self, listener: Listener, *, depth: Callable[[], bool]) -> None:
        """Declare what ``listener`` (already in ``listeners``) needs: no balance updates, and depth only while ``depth()``.

        ``DepthUpdate``, ``BookTop`` and ``BalanceUpdate`` are derived per batch
        from the touched levels and balances (``_finish``); when every listener has
        narrowed and none wants them, that work is skipped. Update ids still
        advance with every book change, so a subscriber that starts later syncs a
        snapshot with the stream as before, and its first ``BookTop`` is the
        current one. A listener removed from ``listeners`` is simply not asked.
        """
        self._wants_depth[listener] = depth

    def _wanted(self) -> tuple[bool, bool]:
        """(depth, balances): whether any listener needs them; everything with no listener (the caller reads the updates)."""
        if not self.listeners:
            return True, True
        narrowed = self._wants_depth
        depth = False
        for listener in self.listeners:
            wants = narrowed.get(listener)
            if wants is None:
                return True, True
            depth = depth or wants()
        return depth, False

    # --- running against an engine -------------------------------------------------

    @classmethod
    async def rebuild(cls, engine: Engine) -> Publisher:
        """The state saved at the last clean stop plus the journal after it (or all of it), then subscribe.

        See ``publisher_state`` for the saved state, used only when a signed
        checkpoint vouches for it. The bulk is read in a worker thread (nothing
        else touches this publisher yet, and it has no listeners), pass after
        pass while the engine keeps writing; the last
        short stretch is read in the trio thread in the same step as
        ``subscribe()``, so the first live batch is the one right after the
        last event read: no gap, no duplicate.
        """
        started = time.monotonic()
        with collector_paused():
            loaded = await trio.to_thread.run_sync(publisher_state.resume, engine, engine.journal.durable_seq)
            if loaded is not None:
                publisher, reader = loaded
                try:
                    await publisher._replay(engine, reader, 0)
                except (JournalCorrupt, PositionMismatch) as exc:
                    log.warning("publisher state does not fit this journal (%s); replaying from genesis", exc)
                    loaded = None
            if loaded is None:
                publisher = cls(Venue(engine.config))
                await publisher._replay(engine, JournalReader(engine.directory), 0)
        publisher.source = "saved state + tail" if loaded is not None else "replayed from genesis"
        log.info("publisher ready at journal seq %d (%d events, %s) in %.2fs", publisher._base[0], publisher.events,
                 publisher.source, time.monotonic() - started)
        return publisher

    async def _replay(self, engine: Engine, reader: JournalReader, skip: int) -> None:
        journal = engine.journal
        for _ in range(MAX_THREADED_PASSES):
            target = journal.durable_seq
            if target - reader.seq <= SYNC_TAIL_RECORDS:
                break
            await trio.to_thread.run_sync(partial(self.catch_up, reader, target, skip, quiet=True))
            skip = 0
        self._follow(reader, journal, skip, quiet=True)

    def catch_up(self, reader: JournalReader, upto: int, skip: int = 0, *, quiet: bool = False) -> None:
        """Apply the durable event records after ``reader``'s position through seq ``upto``.

        ``skip``: events at the start already applied (from the live subscription).
        ``quiet``: state and histories only (``apply_quiet``), for the rebuild.
        """
        apply = self.apply_quiet if quiet else self.apply_batch
        for record in reader.read(upto):
            payload = record.payload
            if is_control(payload):
                continue
            events = decode_events(payload)
            if skip:
                if skip >= len(events):
                    skip -= len(events)
                    continue
                events, skip = events[skip:], 0
            apply(events)
        if skip:
            raise PositionMismatch(f"the journal through seq {upto} holds {skip} fewer events than the publisher applied")

    def _follow(self, reader: JournalReader, journal: JournalActor, skip: int = 0, *, quiet: bool = False) -> None:
        """Read to the durable end and subscribe, with no await in between (the exact boundary)."""
        self.catch_up(reader, journal.durable_seq, skip, quiet=quiet)
        if quiet:
            self.settle_tops()
        self._base = (reader.seq, reader.hash)
        self._followed = 0
        self._rx = journal.subscribe()
        self._applied(reader.seq)

    async def run(self, engine: Engine, *, task_status: trio.TaskStatus[Publisher] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply durable batches until cancelled; if the journal drops us, catch up from disk.

        Events applied since the last boundary are counted, so the catch-up
        resumes exactly after them and listeners see every update once.
        """
        assert self._rx is not None, "use await Publisher.rebuild(engine) to run against an engine"
        task_status.started(self)
        while True:
            rx = self._rx
            async with rx:
                async for seq, events in rx:
                    self.apply_batch(events)
                    self._followed += len(events)
                    self._applied(seq)
            self.resyncs += 1
            log.warning("publisher fell behind the journal; catching up from disk")
            seq, prev_hash = self._base
            self._follow(JournalReader(engine.directory, seq, prev_hash), engine.journal, self._followed)

    def _applied(self, seq: int) -> None:
        self.applied_seq = seq
        advanced = self._advanced
        if advanced is not None:
            self._advanced = None
            advanced.set()

    async def reached(self, seq: int) -> None:
        """Return once every event through journal record ``seq`` is applied here: at once (no
        checkpoint) when it is, else after the batches already on their way from the journal.

        The journal answers a command the moment its events are durable and hands them to
        this publisher in the same step, so they are applied one task switch later. A read
        that waits for the ``durable_event_seq`` it arrived at sees every answer sent before it.
        """
        while self.applied_seq < seq:
            if self._advanced is None:
                self._advanced = trio.Event()
            await self._advanced.wait()

    # --- applying ----------------------------------------------------------------------

    def apply_quiet(self, events: Sequence[Event]) -> None:
        """Apply a batch for state and histories only: no updates, no listeners (the rebuild).

        Histories, trades, klines and update ids come out exactly as through
        ``apply_batch`` (the rebuild test compares them); skipping the per-fill
        order views and depth/balance diffs nobody is listening for makes a
        rebuild about twice as fast. Call ``settle_tops`` afterwards.
        """
        self.events += len(events)
        venue = self.venue
        for e in events:
            t = type(e)
            if t is OrderPlaced:
                self._placed_quiet(e)  # type: ignore[arg-type]
            elif t is OrderCancelled:
                market = venue.markets[e.symbol]  # type: ignore[union-attr]
                view = market.view(market.book.orders[e.order_id])  # type: ignore[union-attr]
                venue.apply(e)
                self._data[e.symbol].update_id += 1  # type: ignore[union-attr]
                view.status = CANCELLED
                self._history(e.account_id).orders.append(view)  # type: ignore[union-attr]
            elif t is OrderAmended:
                venue.apply(e)
                self._data[e.symbol].update_id += 1  # type: ignore[union-attr]
            else:
                venue.apply(e)
                self._funds(e, {})

    def _placed_quiet(self, e: OrderPlaced) -> None:
        market = self.venue.markets[e.symbol]
        orders = market.book.orders
        fills = e.fills
        makers = [orders[f.maker_order_id] for f in fills]
        stp = [orders[order_id] for order_id in e.stp_cancelled]
        rests = e.status not in (FILLED, EXPIRED, CANCELLED)
        self.venue.apply_placed(e)
        data = self._data[e.symbol]
        if fills or stp or rests:
            data.update_id += 1
        if fills:
            spec = market.spec
            qpts = spec.quote_per_tick_step
            bid_is_taker = e.side == BID
            maker_side = ASK if bid_is_taker else BID
            taker_asset, maker_asset = (spec.base, spec.quote) if bid_is_taker else (spec.quote, spec.base)
            taker_fills = self._history(e.account_id).fills
            for f, maker in zip(fills, makers, strict=True):
                quote = f.price_ticks * f.qty_steps * qpts
                data.trades.append(TradeRecord(
                    e.symbol, f.trade_id, f.price_ticks, f.qty_steps, quote,
                    e.order_id if bid_is_taker else f.maker_order_id,
                    f.maker_order_id if bid_is_taker else e.order_id,
                    not bid_is_taker, e.ts_us,
                ))
                self._kline(data, f.price_ticks, f.qty_steps, quote, e.ts_us)
                taker_fill = FillInfo(f.trade_id, f.price_ticks, f.qty_steps, False, f.taker_fee, taker_asset)
                taker_fills.append(FillRecord(e.account_id, e.symbol, e.order_id, e.client_id, e.side, taker_fill, e.ts_us))
                history = self._history(f.maker_account_id)
                if maker.remaining_steps == 0:
                    view = market.view(maker)
                    view.status = FILLED
                    history.orders.append(view)
                maker_fill = FillInfo(f.trade_id, f.price_ticks, f.qty_steps, True, f.maker_fee, maker_asset)
                history.fills.append(FillRecord(f.maker_account_id, e.symbol, f.maker_order_id, maker.client_id,
                                                maker_side, maker_fill, e.ts_us))
        for order in stp:
            view = market.view(order)
            view.status = CANCELLED
            self._history(order.account_id).orders.append(view)
        if not rests:
            self._history(e.account_id).orders.append(market.view_placed(e))

    def at_position(self, seq: int, record_hash: bytes) -> None:
        """Everything through journal record ``seq`` (hash ``record_hash``) is applied: the position
        ``publisher_state.save`` names (for a publisher fed by ``catch_up`` alone, like the replica)."""
        self._base = (seq, record_hash)
        self._followed = 0

    def settle_tops(self) -> None:
        """Best bid/ask as of now, so the first live batch reports only real changes."""
        for symbol, market in self.venue.markets.items():
            self._data[symbol].top = top_of(market.book)

    def apply_batch(self, events: Sequence[Event]) -> list[Update]:
        """Apply one durable batch, notify listeners once, and return its updates.

        What the listeners want (``_wanted``) is asked once, before the batch: nothing
        in it can change the answer (listeners are called only at its end). Touched
        levels and balances are collected only when wanted (update ids advance
        regardless), and an order that rests untouched, most of the flow, is handled
        in this loop: ``_placed``'s common case written out, without the level list,
        the depth entry and the balance keys nobody reads (~0.5 us per order).
        """
        want_depth, want_balances = self._wanted()
        depth: dict[str, tuple[int, set[tuple[str, int]], int]] | None = {} if want_depth else None
        balances: dict[tuple[int, str], int] = {}
        updates: list[Update] = []
        self.events += len(events)
        apply_placed, data = self.venue.apply_placed, self._data
        reported = self.accepted_reported if len(self.listeners) == 1 else None
        for e in events:
            t = type(e)
            if t is OrderPlaced:
                placed: OrderPlaced = e  # type: ignore[assignment]  # checked just above, without isinstance's cost
                if placed.fills or placed.stp_cancelled or placed.status in _ENDED or depth is not None:
                    self._placed(placed, depth, balances, updates)
                    continue
                # rests untouched, no depth wanted: ``_placed``'s common case
                apply_placed(placed)
                data[placed.symbol].update_id += 1
                if reported is None or not reported(placed):  # ``_accept``, inlined: once per order
                    updates.append(OrderUpdate(placed.account_id, ACCEPTED, accepted_view(placed), placed.ts_us))
                else:
                    self._skipped_accepts = True
                if want_balances:
                    spec = self.venue.specs[placed.symbol]
                    balances[placed.account_id, spec.base] = balances[placed.account_id, spec.quote] = placed.ts_us
            elif t is OrderCancelled:
                self._cancelled(e, depth, balances, updates)  # type: ignore[arg-type]
            elif t is OrderAmended:
                self._amended(e, depth, balances, updates)  # type: ignore[arg-type]
            else:
                self.venue.apply(e)
                self._funds(e, balances)
        self._finish(depth or {}, balances if want_balances else {}, updates)
        if updates or self._skipped_accepts:
            self._skipped_accepts = False
            for listener in self.listeners:
                listener(updates)
        return updates

    def _accept(self, e: OrderPlaced, reported: Callable[[OrderPlaced], bool] | None, updates: list[Update]) -> None:
        """The order's accepted update, unless the one listener sent it already (``reported``: ``accepted_reported``
        while there is exactly one listener); then the listener still hears of this batch, even if nothing else is in it."""
        if reported is None or not reported(e):
            updates.append(OrderUpdate(e.account_id, ACCEPTED, accepted_view(e), e.ts_us))
        else:
            self._skipped_accepts = True

    def _touch(self, depth: dict[str, tuple[int, set[tuple[str, int]], int]] | None, symbol: str,
               levels: Iterable[tuple[str, int]], ts_us: int) -> None:
        """Record the levels an event changes (``depth`` None: nobody wants them); the event takes the market's next update id."""
        data = self._data[symbol]
        data.update_id += 1
        if depth is None:
            return
        entry = depth.get(symbol)
        if entry is None:
            depth[symbol] = (data.update_id, set(levels), ts_us)
        else:
            entry[1].update(levels)
            depth[symbol] = (entry[0], entry[1], ts_us)

    def _placed(self, e: OrderPlaced, depth: Any, balances: dict[tuple[int, str], int], updates: list[Update]) -> None:
        market = self.venue.markets[e.symbol]
        spec = market.spec
        book = market.book
        maker_side = ASK if e.side == BID else BID
        if e.fills or e.stp_cancelled:
            makers = [book.orders[f.maker_order_id] for f in e.fills]
            stp = [book.orders[order_id] for order_id in e.stp_cancelled]
            levels = [(maker_side, f.price_ticks) for f in e.fills] + [(o.side, o.price_ticks) for o in stp]
        else:  # most placements touch no other order: no comprehensions to run
            makers, stp, levels = [], [], []
        rests = e.status not in _ENDED
        if rests:
            levels.append((e.side, e.price_ticks))
        self.venue.apply_placed(e)
        if levels:
            self._touch(depth, e.symbol, levels, e.ts_us)
        self._accept(e, self.accepted_reported if len(self.listeners) == 1 else None, updates)
        base, quote_asset = spec.base, spec.quote
        if rests and not e.fills and not stp:  # the common case: it rests untouched (no view of its end state)
            balances[e.account_id, base] = balances[e.account_id, quote_asset] = e.ts_us
            return
        taker_view = market.view_placed(e)
        executed_steps = executed_quote = 0
        data = self._data[e.symbol]
        for f, maker in zip(e.fills, makers, strict=True):
            quote = f.price_ticks * f.qty_steps * spec.quote_per_tick_step
            bid_is_taker = e.side == BID
            trade = TradeRecord(
                e.symbol, f.trade_id, f.price_ticks, f.qty_steps, quote,
                e.order_id if bid_is_taker else f.maker_order_id,
                f.maker_order_id if bid_is_taker else e.order_id,
                not bid_is_taker, e.ts_us,
            )
            data.trades.append(trade)
            updates.append(trade)
            self._kline(data, f.price_ticks, f.qty_steps, quote, e.ts_us)
            executed_steps += f.qty_steps
            executed_quote += quote
            status = FILLED if executed_steps == e.qty_steps else "PartiallyFilled"
            taker_fill = FillInfo(f.trade_id, f.price_ticks, f.qty_steps, False, f.taker_fee,
                                  base if e.side == BID else quote_asset)
            self._fill(e.account_id, e.symbol, e.order_id, e.client_id, e.side,
                       _progress(taker_view, executed_steps, executed_quote, status), taker_fill, e.ts_us, updates)
            maker_view = market.view(maker)
            if maker.remaining_steps == 0:
                maker_view.status = FILLED
                self._history(f.maker_account_id).orders.append(maker_view)
            maker_fill = FillInfo(f.trade_id, f.price_ticks, f.qty_steps, True, f.maker_fee,
                                  base if maker_side == BID else quote_asset)
            self._fill(f.maker_account_id, e.symbol, f.maker_order_id, maker.client_id, maker_side, maker_view,
                       maker_fill, e.ts_us, updates)
            balances[f.maker_account_id, base] = balances[f.maker_account_id, quote_asset] = e.ts_us
        for order in stp:
            view = market.view(order)
            view.status = CANCELLED
            self._history(order.account_id).orders.append(view)
            updates.append(OrderUpdate(order.account_id, CANCELLED_KIND, view, e.ts_us))
        if e.status == EXPIRED:
            updates.append(OrderUpdate(e.account_id, EXPIRED_KIND, taker_view, e.ts_us))
        if not rests:
            self._history(e.account_id).orders.append(taker_view)
        balances[e.account_id, base] = balances[e.account_id, quote_asset] = e.ts_us

    def _fill(self, account_id: int, symbol: str, order_id: int, client_id: int, side: str, view: OrderView,
              fill: FillInfo, ts_us: int, updates: list[Update]) -> None:
        updates.append(OrderUpdate(account_id, FILL, view, ts_us, fill))
        self._history(account_id).fills.append(FillRecord(account_id, symbol, order_id, client_id, side, fill, ts_us))

    def _cancelled(self, e: OrderCancelled, depth: Any, balances: dict[tuple[int, str], int], updates: list[Update]) -> None:
        market = self.venue.markets[e.symbol]
        order = market.book.orders[e.order_id]
        view = market.view(order)
        self.venue.apply(e)
        self._touch(depth, e.symbol, [(order.side, order.price_ticks)], e.ts_us)
        view.status = CANCELLED
        self._history(e.account_id).orders.append(view)
        updates.append(OrderUpdate(e.account_id, CANCELLED_KIND, view, e.ts_us))
        spec = market.spec
        balances[e.account_id, spec.quote if order.side == BID else spec.base] = e.ts_us

    def _amended(self, e: OrderAmended, depth: Any, balances: dict[tuple[int, str], int], updates: list[Update]) -> None:
        market = self.venue.markets[e.symbol]
        order = market.book.orders[e.order_id]
        old_price = order.price_ticks
        self.venue.apply(e)
        self._touch(depth, e.symbol, [(order.side, old_price), (order.side, order.price_ticks)], e.ts_us)
        updates.append(OrderUpdate(e.account_id, MODIFIED, market.view(order), e.ts_us))
        spec = market.spec
        balances[e.account_id, spec.quote if order.side == BID else spec.base] = e.ts_us

    def _funds(self, e: Event, balances: dict[tuple[int, str], int]) -> None:
        t = type(e)
        if t is Deposited or t is Withdrawn:
            if t is Deposited:
                self._funds_seq += 1
                kind, record_id = "deposit", self._funds_seq
            else:  # its id is shared with withdrawal requests: one list, one id space on the wire
                kind, record_id = "withdrawal", e.withdrawal_id  # type: ignore[union-attr]
            record = FundsRecord(e.account_id, e.asset, e.amount, kind, record_id, e.ts_us)  # type: ignore[union-attr]
            self._history(e.account_id).funds.append(record)  # type: ignore[union-attr]
            balances[e.account_id, e.asset] = e.ts_us  # type: ignore[union-attr]
        elif t is Transferred:
            balances[e.from_account_id, e.asset] = e.ts_us  # type: ignore[union-attr]
            balances[e.to_account_id, e.asset] = e.ts_us  # type: ignore[union-attr]
        elif t is WithdrawalRequested or t is WithdrawalApproved or t is WithdrawalRejected:
            balances[e.account_id, e.asset] = e.ts_us  # type: ignore[union-attr]  # reserved counts as locked

    def _kline(self, data: MarketData, price: int, steps: int, quote: int, ts_us: int) -> None:
        ts_s = ts_us // 1_000_000
        klines = data.klines
        newest = klines["1s"]
        # the common case: inside the current 1s candle, hence inside every interval's current one
        same = bool(newest) and newest[-1].start_s <= ts_s < newest[-1].end_s
        for name, candles in klines.items():
            last = candles[-1] if candles else None
            if not same and (last is None or ts_s >= last.end_s):
                start, end = bucket(ts_s, name)
                last = Candle(start, end, price, price, price, price)
                candles.append(last)
            assert last is not None
            if price > last.high:
                last.high = price
            elif price < last.low:
                last.low = price
            last.close = price
            last.volume_steps += steps
            last.quote += quote
            last.trades += 1

    def _finish(self, depth: dict[str, tuple[int, set[tuple[str, int]], int]],
                balances: dict[tuple[int, str], int], updates: list[Update]) -> None:
        """The batch's depth, top-of-book and balance updates (``apply_batch`` passes only what is wanted)."""
        for symbol, (first_id, levels, ts_us) in depth.items():
            market = self.venue.markets[symbol]
            steps = market.book.level_steps
            data = self._data[symbol]
            bids = sorted((p, steps.get((BID, p), 0)) for side, p in levels if side == BID)
            asks = sorted((p, steps.get((ASK, p), 0)) for side, p in levels if side == ASK)
            updates.append(DepthUpdate(symbol, first_id, data.update_id, bids, asks, ts_us))
            top = top_of(market.book)
            if top != data.top:
                data.top = top
                updates.append(BookTop(symbol, *top, data.update_id, ts_us))
        for (account_id, asset), ts_us in balances.items():
            if account_id == FEE_ACCOUNT_ID:
                continue
            account = self.venue.accounts[account_id]
            locked = account.locked.get(asset, 0) + account.reserved.get(asset, 0)
            now = (account.balances.get(asset, 0) - locked, locked)
            if self._sent_balances.get((account_id, asset), (0, 0)) != now:
                self._sent_balances[account_id, asset] = now
                updates.append(BalanceUpdate(account_id, asset, now[0], now[1], ts_us))

    def _history(self, account_id: int) -> Histories:
        history = self._histories.get(account_id)
        if history is None:
            history = self._histories[account_id] = Histories()
        return history


def accepted_view(e: OrderPlaced) -> OrderView:
    """The order as the ``orderAccepted`` update shows it: placed, nothing executed yet.

    Built straight from the event (one per order), so an adapter that answers a
    placement from its Result shows exactly what this publisher would.
    """
    return OrderView(
        e.order_id, e.account_id, e.symbol, e.side, e.order_type, e.tif, e.price_ticks, e.qty_steps, e.quote_qty,
        0, 0, "New", e.expiry_reason, e.post_only, e.stp, e.client_id, e.ts_us,
    )


def _progress(view: OrderView, executed_steps: int, executed_quote: int, status: str) -> OrderView:
    """A copy of ``view`` at an earlier point of its placement (one or more per order, so positional:
    ``attrs.evolve`` cost as much as the rest of applying the placement)."""
    return OrderView(
        view.order_id, view.account_id, view.symbol, view.side, view.order_type, view.tif, view.price_ticks,
        view.qty_steps, view.quote_qty, executed_steps, executed_quote, status, view.expiry_reason, view.post_only,
        view.stp, view.client_id, view.created_us,
    )
