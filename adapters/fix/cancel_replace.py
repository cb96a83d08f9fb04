"""Cancels and replaces over FIX: OrderCancelRequest F and OrderCancelReplaceRequest G, and OrderCancelReject 9.

A request names its order as a status request does (``status.OrderStatus.find``).
It is refused with OrderCancelReject, 102 saying why: 1 for an unknown order,
0 ("too late") for a closed one, with its OrderID and final status; 6 for a
ClOrdID that a live order or a request in flight has; 3 when it does not follow
the chain of requests in flight (``modifications.InFlight``); 99 for another
Symbol or Side, a replace asking for another TimeInForce or changing neither
price nor quantity, and the engine's own refusals. Only limit orders are replaced.

A request the engine refuses because its order closed meanwhile (a fill, an
expiry, another cancel) waits in ``closing`` until the publisher has the fact
that closed it, then is answered too late with the order's final status
(``answer_closing``, run after each publisher batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.codec import Field, Message
from adapters.fix.modifications import CANCEL, REPLACE, InFlight, Modification
from adapters.fix.reports import FIX_SIDE, FIX_TIF, ORD_STATUS, SIDES, TIFS
from adapters.fix.session import Session
from adapters.fix.status import OrderStatus
from engine.messages import NO_CLIENT_ID, AmendOrder, CancelOrder, OrderView, Rejection
from engine.publisher import Publisher
from engine.results import Result
from engine.spec import MarketSpec
from engine.units import DecimalError

# cancels and replaces whose order closed before the engine reached them: (session, request, order, replace)
Closing = list[tuple[Session, Message, OrderView, bool]]


class CancelReplace:
    """Cancels and replaces for one exchange application: its ClOrdIDs, its requests in flight, its live orders."""

    def __init__(self, engine: Any, publisher: Publisher, ids: ClOrdIds, status: OrderStatus, pending: InFlight,
                 closing: Closing, live: Callable[[int, int], bool]) -> None:
        self.engine = engine
        self.publisher = publisher
        self.ids = ids
        self.status = status
        self.pending = pending
        self.closing = closing
        self.live = live  # whether an order is in flight, acknowledged or open (``ExchangeApplication._live``)

    def modify(self, session: Session, m: Message, *, replace: bool) -> None:
        account = session.config.account_id
        orig = m.get(41) or ""
        view = self.status.find(account, None, orig, m.get(37))
        if view is None:
            closed = self.status.find_closed(account, m.get(37), orig)
            if closed is not None:
                too_late(session, m, replace, closed)
            else:
                cancel_reject(session, m, "Unknown order", 1, replace)
            return
        problem = _changed_identity(view, m, replace)
        if problem is not None:
            cancel_reject(session, m, problem, 99, replace, view)
            return
        new = m.get(11) or ""
        if self._taken(account, new, view.order_id):
            cancel_reject(session, m, f"Duplicate ClOrdID {new!r} of a live order", 6, replace, view)
            return
        problem = self._out_of_chain(view.order_id, orig)
        if problem is not None:
            cancel_reject(session, m, problem, 3, replace, view)
            return
        command: AmendOrder | CancelOrder
        if replace:
            amend = self._amend_command(account, self.engine.venue.specs[view.symbol], view, m)
            if isinstance(amend, Rejection):
                cancel_reject(session, m, amend.message, 99, replace, view)
                return
            command = amend
            modification = Modification(REPLACE, new, orig, amend.price_ticks, amend.qty_steps)
        else:
            command = CancelOrder(account, view.symbol, view.order_id, NO_CLIENT_ID)
            modification = Modification(CANCEL, new, orig)
        if self.pending.latest(view.order_id) is None:  # 41 may be an older name: report the one it replaces
            modification.orig = self.ids.cl_ord_id(view.order_id) or orig
        self.pending.add(account, view.order_id, modification)
        refused = self.engine.submit(account, command, _Modified(self, session, m, view, replace, modification))
        if refused is not None:
            self.pending.refused(account, view.order_id, modification)
            cancel_reject(session, m, refused.message, 99, replace, view)

    def _taken(self, account: int, cl_ord_id: str, order_id: int) -> bool:
        """Whether a cancel or replace may not give ``order_id`` this ClOrdID: a request in flight gives it,
        or another live order has it (accepted, the ClOrdID would leave that order and name this one)."""
        if self.pending.order_id(account, cl_ord_id) is not None:
            return True
        other = self.ids.order_id(account, cl_ord_id)
        return other is not None and other != order_id and self.live(account, other)

    def _out_of_chain(self, order_id: int, orig: str) -> str | None:
        """Why a request cannot follow the cancel or replace of this order still in flight (102=3): it must
        name that request's ClOrdID in 41 (FIX: the last non-rejected ClOrdID), and nothing follows a cancel."""
        latest = self.pending.latest(order_id)
        if latest is None:
            return None
        if latest.kind == CANCEL:
            return f"A cancel of this order is pending (ClOrdID {latest.cl_ord_id!r})"
        if orig != latest.cl_ord_id:
            return f"A replace of this order is pending: OrigClOrdID (41) must be its ClOrdID {latest.cl_ord_id!r}"
        return None

    def _amend_command(self, account: int, spec: MarketSpec, view: OrderView, m: Message) -> AmendOrder | Rejection:
        """The engine's amendment for a G: the new price and total quantity as asked (0 where absent), so the
        result is the same whatever replaces in flight before it do (``InFlight.price_and_qty``)."""
        if (m.get(40) or "2") != "2":
            return Rejection("INVALID_ORDER", "Only limit orders can be replaced (40=2)")
        try:
            price = spec.price_ticks(m.get(44)) if m.get(44) else 0
            qty = spec.qty_steps(m.get(38)) if m.get(38) else 0
        except DecimalError as exc:
            return Rejection("INVALID_ORDER", str(exc))
        now = self.pending.price_and_qty(view.order_id, view.price_ticks, view.qty_steps)
        if (price or now[0], qty or now[1]) == now:
            return Rejection("INVALID_ORDER", "Replace changes neither price (44) nor quantity (38)")
        return AmendOrder(account, spec.symbol, view.order_id, NO_CLIENT_ID, price, qty)

    def modified(self, session: Session, m: Message, view: OrderView, replace: bool, modification: Modification,
                 result: Result) -> None:
        if result.rejection is not None:
            self.pending.refused(view.account_id, view.order_id, modification)
            if result.rejection.code == "RESOURCE_NOT_FOUND":  # it was open when found: it closed meanwhile
                self.closing.append((session, m, view, replace))
                self.answer_closing()
            else:
                cancel_reject(session, m, result.rejection.message, 99, replace, view)

    def answer_closing(self) -> None:
        """Answer the requests in ``closing`` whose order the publisher no longer lists as open.

        The engine's refusal can arrive before the publisher applies the fact that
        closed the order (it is durable already, so it comes in the publisher's next batches).
        """
        waiting = []
        for session, m, view, replace in self.closing:
            if self.publisher.open_order(view.account_id, view.symbol, view.order_id, None) is not None:
                waiting.append((session, m, view, replace))
                continue
            closed = self.status.closed_order(view.account_id, view.order_id)
            if closed is not None:
                too_late(session, m, replace, closed)
            else:  # beyond the bounded history: its final status is not known here
                cancel_reject(session, m, "Unknown order", 1, replace)
        self.closing[:] = waiting  # the list the application checks after each batch


class _Modified:
    """The sink of one cancel or replace: the engine's Result goes to ``CancelReplace.modified``."""

    __slots__ = ("cancels", "m", "modification", "replace", "session", "view")

    def __init__(self, cancels: CancelReplace, session: Session, m: Message, view: OrderView, replace: bool,
                 modification: Modification) -> None:
        self.cancels = cancels
        self.session = session
        self.m = m
        self.view = view
        self.replace = replace
        self.modification = modification

    def set(self, value: Result) -> None:
        self.cancels.modified(self.session, self.m, self.view, self.replace, self.modification, value)


def too_late(session: Session, m: Message, replace: bool, closed: OrderView) -> None:
    """OrderCancelReject for a filled, cancelled or expired order: its OrderID, its OrdStatus (2, 4, C), 102=0."""
    cancel_reject(session, m, f"Too late to cancel: the order is {closed.status.lower()}", 0, replace, closed)


def cancel_reject(session: Session, m: Message, text: str, reason: int, replace: bool,
                  view: OrderView | None = None) -> None:
    """OrderCancelReject (9): CxlRejReason ``reason`` (102), with the order's OrderID and status where known."""
    status = ORD_STATUS.get(view.status, "0") if view is not None else "8"
    body: list[Field] = [
        (37, str(view.order_id) if view is not None else "NONE"), (11, m.get(11) or ""), (41, m.get(41) or ""),
        (39, status), (434, "2" if replace else "1"), (102, str(reason)), (58, text),
    ]
    session.send("9", body)


def _changed_identity(view: OrderView, m: Message, replace: bool) -> str | None:
    """Why a cancel or replace cannot go ahead: it names the order with another Symbol or Side, or
    (a replace) asks for another TimeInForce. FIX lets a replace change price and quantity only;
    accepting the rest silently would leave the client believing in an order the venue does not have."""
    if m.get(55) != view.symbol:
        return f"Symbol (55) must be the order's, {view.symbol}"
    if SIDES.get(m.get(54) or "") != view.side:
        return f"Side (54) cannot be changed: the order's is {FIX_SIDE[view.side]}"
    tif = m.get(59)
    if replace and tif is not None and TIFS.get(tif) != view.tif:
        return f"TimeInForce (59) cannot be changed: the order's is {FIX_TIF.get(view.tif, '1')}"
    return None
