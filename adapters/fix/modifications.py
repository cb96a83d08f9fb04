"""Cancels and replaces in flight: each order's ClOrdID chain while the engine has not answered.

FIX lets a client send a replace or cancel before the previous replace of the
same order is answered, naming in OrigClOrdID (41) the ClOrdID of that replace:
41 is "the last non-rejected ClOrdID". The engine takes an account's commands
in the order they were submitted, so the requests of one order take effect in
that order; each is reported under its own ClOrdID (11), with 41 the ClOrdID it
replaced. This module keeps that chain: the requests of each order in
submission order, and the ClOrdIDs they give, so a chained request finds its
order and a new ClOrdID already in flight counts as taken.

Invariants: every name in ``names`` belongs to exactly one request in
``by_order``; a request leaves when it takes effect (its report) or is refused
(its Result). A refused link is cut out of the chain: the next request then
replaces what the refused one would have.
"""

from __future__ import annotations

from typing import Final

CANCEL: Final = "F"
REPLACE: Final = "G"


class Modification:
    """One cancel (F) or replace (G) sent to the engine and not yet settled."""

    __slots__ = ("cl_ord_id", "kind", "orig", "price_ticks", "qty_steps")

    def __init__(self, kind: str, cl_ord_id: str, orig: str, price_ticks: int = 0, qty_steps: int = 0) -> None:
        self.kind = kind
        self.cl_ord_id = cl_ord_id  # the order's ClOrdID once this takes effect
        self.orig = orig  # the ClOrdID it replaces (41 in its report)
        self.price_ticks = price_ticks  # a replace's new price and total quantity (0: unchanged)
        self.qty_steps = qty_steps


class InFlight:
    """The modifications in flight, per order and by the ClOrdID they give."""

    def __init__(self) -> None:
        self.by_order: dict[int, list[Modification]] = {}  # order id -> in submission order
        self.names: dict[tuple[int, str], int] = {}  # (account, ClOrdID of a request in flight) -> order id

    def order_id(self, account: int, cl_ord_id: str) -> int | None:
        return self.names.get((account, cl_ord_id)) if self.names else None

    def latest(self, order_id: int) -> Modification | None:
        queued = self.by_order.get(order_id)
        return queued[-1] if queued else None

    def price_and_qty(self, order_id: int, price_ticks: int, qty_steps: int) -> tuple[int, int]:
        """The order's price and total quantity once the replaces in flight take effect (given its current ones)."""
        for modification in self.by_order.get(order_id, ()):
            price_ticks = modification.price_ticks or price_ticks
            qty_steps = modification.qty_steps or qty_steps
        return price_ticks, qty_steps

    def add(self, account: int, order_id: int, modification: Modification) -> None:
        self.by_order.setdefault(order_id, []).append(modification)
        if modification.cl_ord_id:
            self.names[(account, modification.cl_ord_id)] = order_id

    def settled(self, account: int, order_id: int, kind: str) -> Modification | None:
        """The oldest request of ``kind`` took effect (the engine reports an order's changes in order)."""
        queued = self.by_order.get(order_id)
        if queued is None:
            return None
        found = next((m for m in queued if m.kind == kind), None)
        if found is not None:
            self._remove(account, order_id, found)
        return found

    def refused(self, account: int, order_id: int, modification: Modification) -> None:
        """The engine refused it: the request after it now replaces what it would have."""
        queued = self.by_order.get(order_id, [])
        if modification in queued:
            index = queued.index(modification)
            if index + 1 < len(queued):
                queued[index + 1].orig = modification.orig
            self._remove(account, order_id, modification)

    def _remove(self, account: int, order_id: int, modification: Modification) -> None:
        queued = self.by_order[order_id]
        queued.remove(modification)
        if not queued:
            del self.by_order[order_id]
        if self.names.get((account, modification.cl_ord_id)) == order_id:
            del self.names[(account, modification.cl_ord_id)]
