"""What a command returns to its caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from engine.messages import Event, OrderView, Rejection


class Result:
    """The outcome of one command: a rejection, or the state it produced and the events behind it.

    ``order`` is the order's state after the command (place, cancel, amend);
    ``orders`` lists several (cancel-all); ``value`` carries other answers
    (a new account id). ``events`` are the journaled facts, already durable.

    A placed order's view is built on first access (``view`` is called with
    ``events[0]``): pipelined callers that only count acknowledgements never pay
    for it, and the market passes one prebuilt callable instead of a closure per order.
    """

    __slots__ = ("_order", "_view", "events", "orders", "rejection", "value")

    def __init__(
        self, rejection: Rejection | None = None, order: OrderView | None = None,
        orders: list[OrderView] | None = None, events: list[Event] | None = None, value: Any = None,
        view: Callable[[Any], OrderView] | None = None,
    ) -> None:
        self.rejection = rejection
        self._order = order
        self._view = view
        self.orders: Sequence[OrderView] = orders if orders is not None else []
        self.events = events if events is not None else []
        self.value = value

    @property
    def ok(self) -> bool:
        return self.rejection is None

    @property
    def order(self) -> OrderView | None:
        if self._order is None and self._view is not None:
            self._order = self._view(self.events[0])
        return self._order

    @staticmethod
    def placed(event: Event, view: Callable[[Any], OrderView]) -> Result:
        """The hot path's result (one per order): see ``_Placed`` and ``placed_result``."""
        return placed_result(event, view)

    def __repr__(self) -> str:
        if self.rejection is not None:
            return f"Result(rejection={self.rejection!r})"
        return f"Result(order={self.order!r}, orders={self.orders!r}, events={self.events!r}, value={self.value!r})"


class _Placed(Result):
    """A placed order's ``Result`` (one per order, so built with three stores instead of six).

    The fields that are always empty for it are class attributes, which shadow
    the inherited slots for reads; nothing writes them after construction.
    """

    __slots__ = ()
    rejection = None
    orders: Sequence[OrderView] = ()  # immutable: shared by every placed result
    value = None

    # No Python __init__: ``placed_result`` allocates with one C-level call and sets the three slots.
    __init__ = object.__init__


def placed_result(event: Event, view: Callable[[Any], OrderView]) -> Result:
    """A placed order's ``Result``: ``event`` and the view to build on first access.

    A plain function over a C-level allocation: the market actor calls it inline
    (a Python-to-Python call), where ``_Placed(event, view)`` went through the
    type call and an ``__init__`` frame entered from C.
    """
    result: Result = _Placed()
    result._order = None
    result._view = view
    result.events = [event]
    return result
