"""Order status over FIX: OrderStatusRequest H and OrderMassStatusRequest AF, and finding the order a request names.

An order is named by OrderID (37) or by ClOrdID (11: one it has had, or one a
cancel or replace in flight gives it, or a Satchel client id for orders placed
elsewhere); open orders come from the publisher's durable state, closed ones
from its bounded history. A mass status answers the oldest ``MAX_STATUS_REPORTS``
open orders, a slice at a time (``session.Backlog``): each report reads the order
as it is when built, so none contradicts one sent before it; the last says how
many were left out.
"""

from __future__ import annotations

from typing import Any, Final

from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.codec import Field, Message, is_number
from adapters.fix.modifications import InFlight
from adapters.fix.reports import Reports
from adapters.fix.session import MAX_BACKLOG, Session
from engine.messages import OrderView
from engine.publisher import Publisher

MAX_STATUS_REPORTS: Final = 1_000  # reports in one OrderMassStatusRequest answer (the oldest orders)


class OrderStatus:
    """Status answers for one exchange application: its ClOrdIDs, its cancels and replaces in flight, its ExecIDs."""

    def __init__(self, engine: Any, publisher: Publisher, reports: Reports, ids: ClOrdIds, pending: InFlight,
                 boot_us: int) -> None:
        self.engine = engine
        self.publisher = publisher
        self.reports = reports
        self.ids = ids
        self.pending = pending
        self.boot_us = boot_us
        self.status_answers = 0  # status answers so far: part of their ExecIDs

    def find(self, account: int, symbol: str | None, cl_ord_id: str, order_id_text: str | None) -> OrderView | None:
        """An open order by OrderID (37), else by ClOrdID; in ``symbol``'s market, or any (None)."""
        if symbol is not None and symbol not in self.engine.venue.specs:
            return None
        if order_id_text and is_number(order_id_text):
            return self.publisher.open_order(account, symbol, int(order_id_text), None)
        order_id = self.order_id(account, cl_ord_id)
        if order_id is not None:
            return self.publisher.open_order(account, symbol, order_id, None)
        if is_number(cl_ord_id):  # orders placed elsewhere with a Satchel client id
            return self.publisher.open_order(account, symbol, None, int(cl_ord_id))
        return None

    def order_status(self, session: Session, m: Message) -> None:
        """OrderStatusRequest: the order's state now (open, else from the bounded history), or Unknown order."""
        account = session.config.account_id
        view = self.find(account, m.get(55) or "", m.get(11) or "", m.get(37)) or self.find_closed(
            account, m.get(37), m.get(11) or "")
        if view is None:
            body: list[Field] = [
                (37, m.get(37) or "NONE"), (11, m.get(11) or ""), (17, self._status_exec_id(0)), (150, "I"), (39, "8"),
                (55, m.get(55) or ""), (54, m.get(54) or "1"), (151, "0"), (14, "0"), (6, "0"), (58, "Unknown order"),
            ]
            if m.get(790):
                body.append((790, m.get(790) or ""))
            session.send("8", body)
            return
        extra: list[Field] = [(790, m.get(790) or "")] if m.get(790) else []
        session.send("8", self.reports.fields(view, "I", self._status_exec_id(view.order_id), extra))

    def _status_exec_id(self, order_id: int) -> str:
        """Unique within and across runs: the start time of this process and a counter."""
        self.status_answers += 1
        return f"{order_id}S{self.boot_us}-{self.status_answers}"

    def find_closed(self, account: int, order_id_text: str | None, cl_ord_id: str) -> OrderView | None:
        """A filled, cancelled or expired order, by OrderID (37) else ClOrdID, from the publisher's bounded history."""
        order_id = int(order_id_text) if order_id_text and is_number(order_id_text) else None
        if order_id is None:
            order_id = self.order_id(account, cl_ord_id)
        return self.closed_order(account, order_id) if order_id is not None else None

    def order_id(self, account: int, cl_ord_id: str) -> int | None:
        """The order a ClOrdID names: one a cancel or replace in flight gives it, or one it has had."""
        order_id = self.pending.order_id(account, cl_ord_id)
        return order_id if order_id is not None else self.ids.order_id(account, cl_ord_id)

    def closed_order(self, account: int, order_id: int) -> OrderView | None:
        for view in reversed(self.publisher.closed_orders(account)):
            if view.order_id == order_id:
                return view
        return None

    def mass_status(self, session: Session, m: Message) -> None:
        """OrderMassStatusRequest: the oldest ``MAX_STATUS_REPORTS`` open orders, a slice at a time (``_MassStatus``)."""
        account = session.config.account_id
        symbol = m.get(55) if m.get(585) == "1" else None
        order_ids = self._open_order_ids(account, symbol)
        req_id = m.get(584) or ""
        if not order_ids:
            session.send("8", [
                (37, "NONE"), (17, self._status_exec_id(0)), (150, "I"), (39, "8"), (55, symbol or "NONE"), (54, "1"),
                (151, "0"), (14, "0"), (6, "0"), (584, req_id), (911, "0"), (912, "Y"), (58, "No open orders"),
            ])
            return
        job = _MassStatus(self, account, req_id, order_ids[:MAX_STATUS_REPORTS], len(order_ids))
        if not session.add_backlog(job):
            session.business_reject(m, 0, f"Too many long answers in progress ({MAX_BACKLOG}); retry later", req_id)

    def _open_order_ids(self, account: int, symbol: str | None) -> list[int]:
        """The account's open orders (in ``symbol``'s market, or all), oldest first: ids only, no views built."""
        state = self.publisher.venue.accounts.get(account)
        if state is None:
            return []
        if symbol is None:
            return sorted(state.orders)
        return sorted(order_id for order_id, order in state.orders.items() if order.symbol == symbol)

    def mass_status_step(self, session: Session, job: _MassStatus) -> bool:
        """One slice of a mass status answer; each report reads the order as it is now (an order closed since the
        request is reported closed, from the history), so no report contradicts one sent before it."""
        order_ids = job.order_ids
        count = len(order_ids)
        sent = 0
        while job.index < count:
            if session.slice_full(sent):
                return False
            order_id = order_ids[job.index]
            job.index += 1
            extra: list[Field] = [(584, job.req_id), (911, str(count))]
            if job.index == count:
                extra.append((912, "Y"))
                if job.total > count:
                    extra.append((58, f"Only the oldest {count} of {job.total} open orders are reported"))
            view = (self.publisher.open_order(job.account, None, order_id, None)
                    or self.closed_order(job.account, order_id))
            if view is not None:
                session.send("8", self.reports.fields(view, "I", self._status_exec_id(order_id), extra))
            else:  # closed since the request and already beyond the bounded history
                session.send("8", [
                    (37, str(order_id)), (17, self._status_exec_id(order_id)), (150, "I"), (39, "8"), (55, "NONE"),
                    (54, "1"), (151, "0"), (14, "0"), (6, "0"), *extra[:3], (58, "Unknown order"),
                ])
            sent += 1
        return True


class _MassStatus:
    """An OrderMassStatusRequest being answered (``session.Backlog``): the order ids to report, and how far it got."""

    __slots__ = ("account", "index", "order_ids", "req_id", "status", "total")

    def __init__(self, status: OrderStatus, account: int, req_id: str, order_ids: list[int], total: int) -> None:
        self.status = status
        self.account = account
        self.req_id = req_id
        self.order_ids = order_ids
        self.total = total  # open orders when asked (more than ``order_ids`` when capped)
        self.index = 0

    def step(self, session: Session) -> bool:
        return self.status.mass_status_step(session, self)
