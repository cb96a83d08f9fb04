"""The exchange application behind FIX sessions: orders in, execution reports and market data out.

Requests go to the engine with ``Engine.submit`` (non-blocking, FIFO per
account, a full engine answers "overloaded" at once). Replies that change
nothing (rejections) come from the command's result, and so does a new
order's acknowledgement (150=0): the journal actor delivers the Result after
its fsync, and the report is the one the publisher would build from the same
OrderPlaced (``publisher.accepted_view``), one task switch sooner
(``_placed``); while this application is the publisher's only listener, the
publisher does not build that update at all (``_accepted_reported``). The
orders of one TCP read reach the market as one batch, decided in the reader's
own step when the market is idle (``session.Intake``, the engine's
``hold_markets``/``release_markets``). Every later state change is reported from the durable events
through ``engine.publisher.Publisher``, so an ExecutionReport never leaves
before the journal has the fact, and fills of resting orders caused by other
accounts (REST, another session) are reported like any other. Requests that
read the publisher wait while it has not yet applied an acknowledged order
(``_defer``). Every report of an account goes to all its sessions, drop-copy
sessions included; a session that is not connected keeps them in its store for
a ResendRequest after it logs on again.

Mapping: 54=1/2 -> Bid/Ask; 40=1/2 -> Market/Limit; 59=0/1 -> GTC, 3 -> IOC,
4 -> FOK; ExecInst 18 containing 6 -> post-only; custom tag 7928 (1 RejectTaker,
2 RejectMaker, 3 RejectBoth) -> self-trade prevention; OrderQty 38 or, for
market orders, CashOrderQty 152. ExecIDs are derived from the facts
(``<order>N``, ``<trade>T<order>``, ``<order>C``, ``<order>X``,
``<order>R<time>``) so they stay unique across restarts.

OrderStatusRequest and OrderMassStatusRequest are answered by ``status.py``.

A request over the session's rate limit (``throttle.py``) reaches ``refuse``: it is
answered in its turn with its type's rejection naming the limit, and nothing else.

SecurityListRequest and MarketDataRequest are served by ``market_data.py``
from the same durable batches; the reports' text is written by ``reports.py``.

OrderCancelRequest and OrderCancelReplaceRequest are answered by
``cancel_replace.py``; the ClOrdID chain they make while the engine has not
answered them is kept in ``modifications.InFlight``. ClOrdIDs are kept in
``cl_ord_ids.ClOrdIds`` (a file under the FIX store directory when the service
runs), so an order placed before a daemon restart is still cancelled, replaced
and queried by its ClOrdID after it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs

from adapters.fix import reports
from adapters.fix.cancel_replace import CancelReplace, Closing, cancel_reject
from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.codec import Field, Message
from adapters.fix.dictionary import STP_TAG, Validated
from adapters.fix.market_data import MarketData
from adapters.fix.modifications import CANCEL, REPLACE, InFlight
from adapters.fix.reports import Reports
from adapters.fix.session import Session
from adapters.fix.status import OrderStatus
from engine.messages import FILLED, CancelAllOrders, OrderPlaced, PlaceOrder, Rejection
from engine.publisher import Publisher, accepted_view
from engine.results import Result
from engine.updates import ACCEPTED, CANCELLED_KIND, EXPIRED_KIND, FILL, MODIFIED, DepthUpdate, OrderUpdate, TradeRecord

log = logging.getLogger("satchel.fix.exchange")

MAX_DEFERRED: Final = 10_000  # requests held while the publisher catches up (``_defer``)
# ``_build``'s tables, bound here rather than imported by name: CPython 3.11 compiles ``NAME.get(...)`` of an
# imported name as an attribute load, which makes a bound method per call, four per order
SIDES: Final = reports.SIDES
ORD_TYPES: Final = reports.ORD_TYPES
TIFS: Final = reports.TIFS
STP: Final = reports.STP
SUPPORTED: Final = frozenset({"D", "F", "G", "H", "q", "AF", "x", "V"})


class _Sink:
    """Receives an engine Result (synchronously, from the journal actor) and calls back."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Result], None]) -> None:
        self.callback = callback

    def set(self, value: Result) -> None:
        self.callback(value)


class _Placement:
    """The sink of one NewOrderSingle: the engine's Result (durable, from the journal actor) goes to ``_placed``.

    ``prepare`` builds the acknowledgement's body while the journal's fdatasync
    is under way (``Sink``), so only its sequencing and sending wait for the disk.
    """

    __slots__ = ("ack", "app", "cmd", "message", "session")

    def __init__(self, app: ExchangeApplication, session: Session, message: Message, cmd: PlaceOrder) -> None:
        self.app = app
        self.session = session
        self.message = message
        self.cmd = cmd
        self.ack: bytes | None = None

    def prepare(self, value: Result) -> None:
        placed = value.events[0] if value.events else None
        if value.rejection is None and type(placed) is OrderPlaced:
            self.ack = self.app.reports.acknowledgement(placed)

    def set(self, value: Result) -> None:
        self.app._placed(self.session, self.message, self.cmd, value, self.ack)


class ExchangeApplication:
    """FIX order entry, drop copy and market data on the engine's public API."""

    def __init__(self, engine: Any, publisher: Publisher, *, wall_us: Callable[[], int],
                 cl_ord_ids: ClOrdIds | None = None) -> None:
        self.engine = engine
        self.publisher = publisher
        self.wall_us = wall_us
        self.sessions: dict[int, list[Session]] = {}
        self.ids = cl_ord_ids if cl_ord_ids is not None else ClOrdIds()
        self.reports = Reports(engine, self.ids, wall_us)
        self.pending = InFlight()  # cancels and replaces sent to the engine, per order (``modifications``)
        self.closing: Closing = []  # cancels and replaces refused because their order closed meanwhile
        self.disconnect_cancels = 0  # cancel-on-disconnect CancelAllOrders without their Result (``drained``)
        self.market_data = MarketData(engine, publisher, wall_us)
        self.rejects = 0
        self.boot_us = wall_us()
        self.status = OrderStatus(engine, publisher, self.reports, self.ids, self.pending, self.boot_us)
        self.cancel_replace = CancelReplace(engine, publisher, self.ids, self.status, self.pending, self.closing,
                                            self._live)
        self.placing = 0  # NewOrderSingles submitted whose Result has not come back...
        self.inflight: dict[int, None] = {}  # ...their order ids, oldest first (ids grow in submission order)
        self.amends = 0  # replace reports so far: part of their ExecIDs (two amends may share a timestamp)
        self.acked: set[int] = set()  # orders acknowledged from their Result, not yet seen in a publisher batch
        self.acks_sent = 0  # acknowledgements from Results so far...
        self.acks_published = 0  # ...and how many of them the publisher has reached (the same order: the journal's)
        # [newest order in flight then, acks to wait for (None until those orders are answered), the answer
        # (``_dispatch`` or ``_refuse``), the session, the request, the answer's third argument]
        self.deferred: deque[list[Any]] = deque()
        publisher.listeners.append(self.on_updates)
        publisher.narrow(self.on_updates, depth=self.market_data.subscribed)  # FIX sends no balances
        if publisher.accepted_reported is None:
            publisher.accepted_reported = self._accepted_reported

    def close(self) -> None:
        """Stop following the publisher (it may be shared and outlive us) and close the ClOrdID file."""
        if self.on_updates in self.publisher.listeners:
            self.publisher.listeners.remove(self.on_updates)
        if self.publisher.accepted_reported == self._accepted_reported:
            self.publisher.accepted_reported = None
        self.ids.close()

    def _accepted_reported(self, e: OrderPlaced) -> bool:
        """The publisher asks (in journal order, while we are its only listener) whether this placement's
        acknowledgement went out from its Result (``_placed``): then it builds no update we would skip.

        The same bookkeeping as ``_on_updates`` does for an acknowledged order's update.
        """
        acked = self.acked
        if e.order_id in acked:
            acked.discard(e.order_id)
            self.acks_published += 1
            return True
        return False

    def register(self, session: Session) -> None:
        """Serve ``session``; its store's flush, which precedes every write to its socket, writes our ClOrdIDs too."""
        self.sessions.setdefault(session.config.account_id, []).append(session)
        session.store.flush_also = self.ids.flush

    # --- session callbacks -----------------------------------------------------------------

    def on_logon(self, session: Session) -> None:
        log.info("FIX session %s logged on (account %d)", session.name, session.config.account_id)

    def on_disconnect(self, session: Session) -> None:
        self.market_data.drop(session)
        if session.config.cancel_on_disconnect and not session.config.drop_copy:
            account = session.config.account_id
            symbols = {v.symbol for v in self.publisher.open_orders(account)}
            if self.inflight or self.acked:  # orders the publisher does not list yet may be this account's
                symbols = set(self.engine.venue.specs)
            for symbol in sorted(symbols):
                self.disconnect_cancels += 1
                refused = self.engine.submit(account, CancelAllOrders(account, symbol), _Sink(self._cancelled))
                if refused is not None:
                    self.disconnect_cancels -= 1
                    log.warning("cancel on disconnect of %s in %s refused: %s", session.name, symbol, refused.message)

    def _cancelled(self, result: Result) -> None:
        self.disconnect_cancels -= 1

    def drained(self) -> bool:
        """Whether the cancels of cancel-on-disconnect sessions are done and their reports are in the
        session stores (the service's stop waits for it after every session has logged out)."""
        return not self.disconnect_cancels and self.publisher.applied_seq >= self.engine.journal.durable_event_seq

    def on_message(self, session: Session, message: Message, parts: Validated) -> None:
        if message.msg_type == "D" and not self.deferred and not session.config.drop_copy:
            self._new_order(session, message, parts)  # the common case, without the dispatch below
            return
        if self._waits(message):
            self._defer(self._dispatch, session, message, parts)
            return
        self._dispatch(session, message, parts)

    def refuse(self, session: Session, message: Message, text: str) -> None:
        if self._waits(message):
            self._defer(self._refuse, session, message, text)
        else:
            self._refuse(session, message, text)

    def _waits(self, message: Message) -> bool:
        """Whether a request must wait for the orders placed before it (``_defer``)."""
        if self.deferred:
            return True
        return message.msg_type != "D" and (bool(self.inflight) or self.acks_published < self.acks_sent)

    def _refuse(self, session: Session, m: Message, text: str) -> None:
        """A request over the rate limit: D -> ExecutionReport 150=8 103=99; F, G -> OrderCancelReject 102=99 with
        the order's OrderID and status where known; V -> MarketDataRequestReject 281=2 (insufficient bandwidth);
        q -> OrderMassCancelReport 531=0; anything else -> BusinessMessageReject 380=0; ``text`` in 58."""
        msg_type = m.msg_type
        if msg_type == "D":
            self._reject_order(session, m, text, 99)
        elif msg_type in ("F", "G"):
            account, orig, order_id = session.config.account_id, m.get(41) or "", m.get(37)
            view = self.status.find(account, None, orig, order_id) or self.status.find_closed(account, order_id, orig)
            cancel_reject(session, m, text, 99, msg_type == "G", view)
        elif msg_type == "V":
            self.market_data.reject(session, m, "2", text)
        elif msg_type == "q":
            self._mass_cancel_report(session, m, "0", 0, text)
        else:
            session.business_reject(m, 0, text)

    def _dispatch(self, session: Session, message: Message, parts: Validated) -> None:
        msg_type = message.msg_type
        if msg_type not in SUPPORTED:
            session.business_reject(message, 3, "Unsupported Message Type")
            return
        if session.config.drop_copy and msg_type not in ("x", "V", "H", "AF"):
            session.business_reject(message, 6, "Drop-copy sessions cannot send orders")
            return
        _HANDLERS[msg_type](self, session, message, parts)

    def _defer(self, answer: Callable[[Session, Message, Any], None], session: Session, message: Message,
               arg: Any) -> None:
        """Hold a request until the orders placed before it are answered and the publisher has them.

        Cancels, replaces and queries read the publisher. A NewOrderSingle that
        arrived before them (often in the same socket read) may still be in
        flight, or acknowledged from its Result (``_placed``) but not yet in a
        publisher batch; read now, the request would not find that order. New
        orders need not wait (``_new_order`` counts the in-flight and acknowledged
        ones as live), unless something before them is waiting. A request waits
        only for the orders submitted before it, and then for the acknowledgements
        sent so far, which the publisher reaches in the order they were sent
        (journal order): a steady stream of new orders never holds it back longer.
        """
        if len(self.deferred) >= MAX_DEFERRED:
            session.business_reject(message, 0, "Too many requests waiting for the order state; retry")
            return
        newest = next(reversed(self.inflight)) if self.inflight else 0
        self.deferred.append([newest, None if newest else self.acks_sent, answer, session, message, arg])

    def _run_deferred(self) -> None:
        """The held requests whose earlier orders are answered and published, in arrival order."""
        deferred = self.deferred
        inflight = self.inflight
        while deferred:
            head = deferred[0]
            if head[1] is None:  # orders placed before it were in flight
                if inflight and next(iter(inflight)) <= head[0]:
                    return
                head[1] = self.acks_sent  # all answered: now wait for the publisher to reach their acks
            if head[1] > self.acks_published:
                return
            _, _, answer, session, message, arg = deferred.popleft()
            try:
                answer(session, message, arg)
            except Exception:  # as Session._process does: a bug answers this request, nothing more
                log.exception("FIX application failed on %s from %s", message.msg_type, session.name)
                session.business_reject(message, 0, "Internal error processing the message")

    # --- orders ---------------------------------------------------------------------------------

    def _new_order(self, session: Session, m: Message, parts: Validated) -> None:
        account = session.config.account_id
        get = m.get
        # the order's terms to the engine's (``build_order`` checks them against the market), written out: one per order
        side = SIDES.get(get(54, ""))
        ord_type = ORD_TYPES.get(get(40, ""))
        tif = TIFS.get(get(59, "1"))
        if side is None:
            built: PlaceOrder | Rejection = Rejection("INVALID_ORDER", "Side (54) must be 1 (buy) or 2 (sell)")
        elif ord_type is None:
            built = Rejection("INVALID_ORDER", "OrdType (40) must be 1 (market) or 2 (limit)")
        elif tif is None:
            built = Rejection("INVALID_ORDER", "TimeInForce (59) must be 0/1 (GTC), 3 (IOC) or 4 (FOK)")
        else:
            exec_inst = get(18)
            built = self.engine.build_order(
                account, get(55, ""), side, ord_type, quantity=get(38), quote_quantity=get(152), price=get(44),
                time_in_force=tif, post_only=exec_inst is not None and "6" in exec_inst.split(" "),
                self_trade_prevention=STP.get(get(STP_TAG, "1")),
            )
        if isinstance(built, Rejection):
            self._reject_order(session, m, built.message, 1 if "symbol" in built.message else 99)
            return
        cl_ord_id = get(11) or ""
        known = self.ids.order_id(account, cl_ord_id)
        if known is None and self.pending.names:  # the ClOrdID a cancel or replace in flight gives its order
            known = self.pending.names.get((account, cl_ord_id))
        if known is not None and self._live(account, known):
            self._reject_order(session, m, f"Duplicate ClOrdID {cl_ord_id!r} of a live order", 6)
            return
        self.ids.remember(account, cl_ord_id, built.order_id)
        self.inflight[built.order_id] = None  # before submit: a refusal by the account may answer within it
        refused = self.engine.submit(account, built, _Placement(self, session, m, built))
        if refused is not None:
            del self.inflight[built.order_id]
            self.ids.forget(account, built.order_id)
            self._reject_order(session, m, refused.message, 99)
        else:
            self.placing += 1

    def _placed(self, session: Session, m: Message, cmd: PlaceOrder, result: Result, ack: bytes | None) -> None:
        """A placement is durable (the journal actor delivers after its fsync): answer it now
        (``ack``: its acknowledgement's body, when ``_Placement.prepare`` built it).

        The acknowledgement (150=0) is the report the publisher would build from
        the same OrderPlaced (``_accepted``), sent here rather than one task
        switch later, when the publisher gets the batch; the publisher's copy is
        then skipped (``acked``). Everything after the acknowledgement (fills,
        expiry, cancels) still comes from the publisher, so each order's reports
        keep their journal order. The reports are written when the last
        placement in flight is answered, else at the end of the publisher's batch.
        """
        self.placing -= 1
        self.inflight.pop(cmd.order_id, None)
        try:
            if result.rejection is not None:
                self.ids.forget(cmd.account_id, cmd.order_id)
                self._reject_order(session, m, result.rejection.message, _ord_rej_reason(result.rejection))
            else:
                self._accepted(result, ack)
        except Exception:  # this runs in the journal actor: a bug here must not stop the engine
            log.exception("FIX answer to a placement failed")  # not in ``acked``: the publisher still reports it
        finally:
            if self.deferred:  # a request may have waited on this order alone (a refused one reaches no batch)
                self._run_deferred()
            if not self.placing:
                self._write_reports()

    def _accepted(self, result: Result, ack: bytes | None) -> None:
        placed = result.events[0] if result.events else None
        if type(placed) is not OrderPlaced:
            return  # not a placement's Result: the publisher reports it
        sessions = self.sessions.get(placed.account_id)
        if not sessions:
            return
        order_id = placed.order_id
        pending = self.pending.by_order
        if pending and order_id in pending:  # never for a new order; the general path handles it
            self._execution_report(OrderUpdate(placed.account_id, ACCEPTED, accepted_view(placed), placed.ts_us), sessions)
        else:
            encoded = ack if ack is not None else self.reports.acknowledgement(placed)
            for session in sessions:
                session.queue_report(encoded)  # written by flush_output at the end of the batch
        self.acked.add(order_id)
        self.acks_sent += 1

    def _reject_order(self, session: Session, m: Message, text: str, reason: int) -> None:
        self.rejects += 1
        body: list[Field] = [
            (37, "NONE"), (11, m.get(11) or ""), (17, f"J{self.boot_us}-{self.rejects}"), (150, "8"), (39, "8"),
            (55, m.get(55) or ""), (54, m.get(54) or "1"), (151, "0"), (14, "0"), (6, "0"),
            (103, str(reason)), (58, text), (60, self.reports.now()),
        ]
        for tag in (38, 40, 44, 59):
            value = m.get(tag)
            if value:
                body.append((tag, value))
        session.send("8", body)

    def _live(self, account: int, order_id: int) -> bool:
        """Whether the order is in flight, acknowledged, or open in any market."""
        return (order_id in self.inflight or order_id in self.acked
                or self.publisher.open_order(account, None, order_id, None) is not None)

    def _status(self, session: Session, m: Message, parts: Validated) -> None:
        self.status.order_status(session, m)

    def _mass_status(self, session: Session, m: Message, parts: Validated) -> None:
        self.status.mass_status(session, m)

    def _mass_cancel(self, session: Session, m: Message, parts: Validated) -> None:
        account = session.config.account_id
        kind = m.get(530) or ""
        if kind == "1":
            symbols = [m.get(55) or ""]
        elif kind == "7":
            symbols = sorted({v.symbol for v in self.publisher.open_orders(account)})
        else:
            self._mass_cancel_report(session, m, "0", 0, "MassCancelRequestType must be 1 (by symbol) or 7 (all)")
            return
        if any(s not in self.engine.venue.specs for s in symbols):
            self._mass_cancel_report(session, m, "0", 0, f"Unknown symbol {m.get(55)!r}")
            return
        if not symbols:
            self._mass_cancel_report(session, m, kind, 0, None)
            return
        left = [len(symbols)]
        affected = [0]
        problems: list[str] = []

        def done(result: Result) -> None:
            left[0] -= 1
            affected[0] += len(result.orders)
            if result.rejection is not None:
                problems.append(result.rejection.message)
            if left[0] == 0:
                problem = problems[0] if problems else None
                self._mass_cancel_report(session, m, "0" if problem else kind, affected[0], problem)

        for symbol in symbols:
            refused = self.engine.submit(account, CancelAllOrders(account, symbol), _Sink(done))
            if refused is not None:
                done(Result(rejection=refused))

    def _mass_cancel_report(self, session: Session, m: Message, response: str, affected: int, text: str | None) -> None:
        body: list[Field] = [(11, m.get(11) or ""), (37, f"MC-{m.get(11) or ''}"), (530, m.get(530) or ""),
                             (531, response), (533, str(affected))]
        if m.get(55):
            body.append((55, m.get(55) or ""))
        if text:
            body += [(532, "99"), (58, text)]
        session.send("r", body)

    # --- durable updates -> execution reports -------------------------------------------------------

    def on_updates(self, updates: list[Any]) -> None:
        """Publisher listener: one durable batch, in journal order (a failure is logged, never raised)."""
        try:
            self._on_updates(updates)
        except Exception:
            log.exception("FIX execution reports for a durable batch failed")
            self.acked.clear()  # never hold requests back on orders this batch did not get to
            self.acks_published = self.acks_sent
        finally:
            if self.closing:
                self.cancel_replace.answer_closing()
            if self.deferred:
                self._run_deferred()
            self._write_reports()

    def _write_reports(self) -> None:
        """The batch's reports leave now, in one write per connection (they were queued without a wake-up).

        Each write follows its store's flush, which puts these reports' records and the ClOrdIDs they
        name in the files. A file that cannot take them (a full disk) costs a log line, never the
        journal actor or the publisher this runs in.
        """
        for sessions in self.sessions.values():
            for session in sessions:
                try:
                    session.flush_output()
                except Exception:
                    log.exception("FIX output of %s failed", session.name)

    def _on_updates(self, updates: list[Any]) -> None:
        depth: list[DepthUpdate] = []
        trades: list[TradeRecord] = []
        last_quote_fill: set[int] | None = None  # found when the batch has an order without a base quantity
        acked = self.acked
        for index, update in enumerate(updates):
            kind = type(update)
            if kind is OrderUpdate:
                view = update.view
                if update.kind == ACCEPTED and view.order_id in acked:
                    acked.discard(view.order_id)  # answered from its Result (``_placed``)
                    self.acks_published += 1
                    continue
                sessions = self.sessions.get(update.account_id)
                if sessions:
                    if not view.qty_steps:
                        if last_quote_fill is None:
                            last_quote_fill = _last_quote_sized_fills(updates)
                        if index in last_quote_fill:
                            update = attrs.evolve(update, view=attrs.evolve(view, status=FILLED))
                    self._execution_report(update, sessions)
            elif kind is DepthUpdate:
                depth.append(update)
            elif kind is TradeRecord:
                trades.append(update)
        if depth or trades:
            self.market_data.on_book(depth, trades)

    def _execution_report(self, update: OrderUpdate, sessions: list[Session]) -> None:
        view = update.view
        order_id = view.order_id
        kind = update.kind
        fill: tuple[int, int] | None = None
        text: str | None = None
        if kind == ACCEPTED:
            exec_type, exec_id = "0", f"{order_id}N"
        elif kind == FILL:
            assert update.fill is not None
            exec_type, exec_id = "F", f"{update.fill.trade_id}T{order_id}"
            fill = (update.fill.price_ticks, update.fill.qty_steps)
        elif kind == CANCELLED_KIND:
            exec_type, exec_id = "4", f"{order_id}C"
        elif kind == EXPIRED_KIND:
            exec_type, exec_id = "C", f"{order_id}X"
            text = view.expiry_reason or "Expired"
        elif kind == MODIFIED:
            self.amends += 1
            exec_type, exec_id = "5", f"{order_id}R{update.ts_us}.{self.amends}"
        else:
            return
        orig = None
        if self.pending.by_order and kind in (CANCELLED_KIND, MODIFIED):
            settled = self.pending.settled(view.account_id, order_id, CANCEL if kind == CANCELLED_KIND else REPLACE)
            if settled is not None:
                self.ids.remember(view.account_id, settled.cl_ord_id, order_id)
                orig = settled.orig
        encoded = self.reports.execution(view, exec_type, exec_id, update.ts_us, fill, text, orig)
        for session in sessions:
            session.queue_report(encoded)  # written by flush_output at the end of the batch

def _last_quote_sized_fills(updates: list[Any]) -> set[int]:
    """Indexes of the last fill of each market order sized by quote that did not expire.

    Such an order has no base quantity, so its fills cannot say when it is done;
    all updates of one placement arrive in one batch, so its last fill is known
    here and reported as Filled (39=2).
    """
    last: dict[int, int] = {}
    expired: set[int] = set()
    for index, update in enumerate(updates):
        if type(update) is OrderUpdate and update.view.qty_steps == 0:
            if update.kind == FILL:
                last[update.view.order_id] = index
            elif update.kind == EXPIRED_KIND:
                expired.add(update.view.order_id)
    return {index for order_id, index in last.items() if order_id not in expired}


def _ord_rej_reason(rejection: Rejection) -> int:
    if rejection.code == "INSUFFICIENT_FUNDS":
        return 0
    if rejection.code in ("INVALID_QUANTITY",):
        return 13
    return 99


_HANDLERS: Final[dict[str, Callable[[ExchangeApplication, Session, Message, Validated], None]]] = {
    "D": ExchangeApplication._new_order,
    "F": lambda app, session, m, parts: app.cancel_replace.modify(session, m, replace=False),
    "G": lambda app, session, m, parts: app.cancel_replace.modify(session, m, replace=True),
    "H": ExchangeApplication._status,
    "q": ExchangeApplication._mass_cancel,
    "AF": ExchangeApplication._mass_status,
    "x": lambda app, session, m, parts: app.market_data.security_list(session, m),
    "V": lambda app, session, m, parts: app.market_data.request(session, m, parts),
}
