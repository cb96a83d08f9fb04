"""What a command returns to its caller."""

from __future__ import annotations

from typing import Any

import attrs

from engine.messages import Event, OrderView, Rejection


@attrs.define(slots=True)
class Result:
    """The outcome of one command: a rejection, or the state it produced and the events behind it.

    ``order`` is the order's state after the command (place, cancel, amend);
    ``orders`` lists several (cancel-all); ``value`` carries other answers
    (a new account id). ``events`` are the journaled facts, already durable.
    """

    rejection: Rejection | None = None
    order: OrderView | None = None
    orders: list[OrderView] = attrs.Factory(list)
    events: list[Event] = attrs.Factory(list)
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.rejection is None
