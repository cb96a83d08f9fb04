"""ExecutionReport bodies: the text of every report the exchange application sends about an order.

Three writers that give the same bytes for the same facts (a test holds them
equal): ``fields`` builds the generic field list (status answers and mass
status, which add their own fields); ``execution`` writes a durable update's
body straight in ascending tag order, the adapter's hot path (one per order
event); ``acknowledgement`` is ``execution`` of a new order's accepted view in
one template, with no OrderView built at all.

Quantities and prices repeat (orders use a few sizes and prices), so each
market's recent texts are remembered (``_Texts``). ExecIDs are the caller's;
ClOrdIDs come from the ClOrdID file (``cl_ord_ids.ClOrdIds``), else from the
order's Satchel client id. The FIX codes of sides, order types, times in force
and self-trade prevention are kept here both ways (``FIX_SIDE``, ``SIDES``...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.codec import Field, Timestamps
from engine.messages import (
    ASK,
    BID,
    CANCELLED,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NO_CLIENT_ID,
    PARTIALLY_FILLED,
    REJECT_BOTH,
    REJECT_MAKER,
    REJECT_TAKER,
    OrderPlaced,
    OrderView,
)
from engine.spec import MarketSpec

AVG_PX_EXTRA_DECIMALS: Final = 4
TEXTS_KEEP: Final = 4096
SOH: Final = "\x01"
FIX_SIDE: Final = {BID: "1", ASK: "2"}
FIX_TIF: Final = {GTC: "1", IOC: "3", FOK: "4"}
ORD_STATUS: Final = {"New": "0", PARTIALLY_FILLED: "1", FILLED: "2", CANCELLED: "4", EXPIRED: "C"}
# and the other way, for requests (the mapping is in ``exchange``'s docstring)
SIDES: Final = {"1": BID, "2": ASK}
ORD_TYPES: Final = {"1": MARKET, "2": LIMIT}
TIFS: Final = {"0": GTC, "1": GTC, "3": IOC, "4": FOK}
STP: Final = {"1": REJECT_TAKER, "2": REJECT_MAKER, "3": REJECT_BOTH}


class Reports:
    """Report writer for one engine's markets (its specs are read per report: they are the venue's)."""

    def __init__(self, engine: Any, ids: ClOrdIds, wall_us: Callable[[], int]) -> None:
        self.engine = engine
        self.ids = ids
        self.wall_us = wall_us
        self.times = Timestamps()
        self.texts: dict[str, _Texts] = {}  # per symbol: formatted quantities and prices of recent reports
        # the TransactTime text of the last acknowledgement and its event time (a market pass stamps its events alike)
        self._acked_at = 0
        self._acked_text = ""

    def now(self) -> str:
        """SendingTime-style text of the current time (for reports of no durable fact: rejections)."""
        return self.times.millis(self.wall_us())

    def acknowledgement(self, e: OrderPlaced) -> bytes:
        """``execution(accepted_view(e), "0", "<id>N", ...)`` in one template.

        One per new order: no OrderView, OrderUpdate or part list is built for
        the acknowledgement, only this text. What follows the order's ids
        depends only on its terms, which orders repeat: it is remembered per
        market (``_Texts.ack_terms``).
        """
        texts = self.texts.get(e.symbol)  # ``_market``, inlined: once per order
        if texts is None or texts.spec is not self.engine.venue.specs[e.symbol]:
            texts = self._market(e.symbol)[1]
        order_id = e.order_id
        cl_ord_id = self.ids.current.get(order_id)  # ``_cl_ord_id``, inlined: once per order
        if cl_ord_id is None and e.client_id != NO_CLIENT_ID:
            cl_ord_id = str(e.client_id)
        key = (e.qty_steps, e.price_ticks, e.side, e.order_type, e.tif, e.quote_qty)
        terms = texts.acks.get(key)
        if terms is None:
            terms = texts.ack_terms(key)
        ts_us = e.ts_us
        if ts_us != self._acked_at or not ts_us:
            self._acked_at = ts_us
            self._acked_text = self.times.millis(ts_us or self.wall_us())
        text = (
            f"1={e.account_id}\x016=0\x01{f'11={cl_ord_id}{SOH}' if cl_ord_id else ''}14={texts.zero}\x01"
            f"17={order_id}N\x01{'18=6' + SOH if e.post_only else ''}37={order_id}\x01"
            f"{terms[0]}{self._acked_text}{terms[1]}"
        )
        return text.encode("latin-1")

    def execution(self, view: OrderView, exec_type: str, exec_id: str, ts_us: int,
                  fill: tuple[int, int] | None, text: str | None, orig: str | None) -> bytes:
        """The body of an ExecutionReport for a durable update, written straight in ascending tag order:
        the same bytes as ``encode_body(fields(...))`` without building and sorting a field list."""
        spec, texts = self._market(view.symbol)
        qty = texts.qty
        status = view.status
        live = status == "New" or status == PARTIALLY_FILLED
        cl_ord_id = self._cl_ord_id(view.order_id, view.client_id)
        limit = view.order_type == LIMIT
        parts = [f"1={view.account_id}\x016={avg_px(spec, view)}\x01"]
        if cl_ord_id:
            parts.append(f"11={cl_ord_id}\x01")
        parts.append(f"14={qty(view.executed_steps)}\x0117={exec_id}\x01")
        if view.post_only:
            parts.append("18=6\x01")
        if fill is not None:
            parts.append(f"31={texts.price(fill[0])}\x0132={qty(fill[1])}\x01")
        parts.append(f"37={view.order_id}\x01")
        if view.qty_steps:
            parts.append(f"38={qty(view.qty_steps)}\x01")
        parts.append(f"39={ORD_STATUS.get(status, '0')}\x0140={'2' if limit else '1'}\x01")
        if orig is not None:
            parts.append(f"41={orig}\x01")
        if limit:
            parts.append(f"44={texts.price(view.price_ticks)}\x01")
        parts.append(f"54={FIX_SIDE[view.side]}\x0155={view.symbol}\x01")
        if text is not None:
            parts.append(f"58={text}\x01")
        leaves = max(view.qty_steps - view.executed_steps, 0) if live else 0
        parts.append(f"59={FIX_TIF.get(view.tif, '1')}\x0160={self.times.millis(ts_us or self.wall_us())}\x01"
                     f"150={exec_type}\x01151={qty(leaves)}\x01")
        if not view.qty_steps and view.quote_qty:
            parts.append(f"152={spec.format_quote(view.quote_qty)}\x01")
        return "".join(parts).encode("latin-1")

    def fields(self, view: OrderView, exec_type: str, exec_id: str, extra: list[Field], ts_us: int = 0) -> list[Field]:
        """The report's fields as a list, ``extra`` last (the session encoder orders them)."""
        spec = self.engine.venue.specs[view.symbol]
        live = view.status in ("New", PARTIALLY_FILLED)
        leaves = max(view.qty_steps - view.executed_steps, 0) if live else 0
        status = ORD_STATUS.get(view.status, "0")
        body: list[Field] = [
            (1, str(view.account_id)), (6, avg_px(spec, view)), (14, spec.format_qty(view.executed_steps)),
            (17, exec_id), (37, str(view.order_id)), (39, status), (40, "2" if view.order_type == LIMIT else "1"),
            (54, FIX_SIDE[view.side]), (55, view.symbol), (59, FIX_TIF.get(view.tif, "1")), (150, exec_type),
            (151, spec.format_qty(leaves)), (60, self.times.millis(ts_us or self.wall_us())),
        ]
        cl_ord_id = self._cl_ord_id(view.order_id, view.client_id)
        if cl_ord_id:
            body.append((11, cl_ord_id))
        if view.qty_steps:
            body.append((38, spec.format_qty(view.qty_steps)))
        elif view.quote_qty:
            body.append((152, spec.format_quote(view.quote_qty)))
        if view.order_type == LIMIT:
            body.append((44, spec.format_price(view.price_ticks)))
        if view.post_only:
            body.append((18, "6"))
        body.extend(extra)
        return body

    def _cl_ord_id(self, order_id: int, client_id: int) -> str | None:
        """The order's ClOrdID, else its Satchel client id (orders placed over REST), else None."""
        cl_ord_id = self.ids.current.get(order_id)
        if cl_ord_id is None and client_id != NO_CLIENT_ID:
            cl_ord_id = str(client_id)
        return cl_ord_id

    def _market(self, symbol: str) -> tuple[MarketSpec, _Texts]:
        spec = self.engine.venue.specs[symbol]
        texts = self.texts.get(symbol)
        if texts is None or texts.spec is not spec:
            texts = self.texts[symbol] = _Texts(spec)
        return spec, texts


class _Texts:
    """A market's quantities and prices as report text, remembered (orders repeat the same few sizes and prices)."""

    __slots__ = ("acks", "prices", "qtys", "spec", "zero")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.qtys: dict[int, str] = {}
        self.prices: dict[int, str] = {}
        self.zero = spec.format_qty(0)
        # (qty steps, price ticks, side, order type, time in force, quote qty) -> an acknowledgement's text from
        # OrderQty (38) to TransactTime's "60=", and after its value
        self.acks: dict[tuple[int, int, str, str, str, int], tuple[str, str]] = {}

    def ack_terms(self, key: tuple[int, int, str, str, str, int]) -> tuple[str, str]:
        """The two texts of ``acks[key]``, made and remembered (a full cache starts over)."""
        steps, ticks, side, order_type, tif, quote_qty = key
        quantity = self.qty(steps) if steps else self.zero
        limit = order_type == LIMIT
        terms = (
            f"{f'38={quantity}{SOH}' if steps else ''}39=0\x0140={'2' if limit else '1'}\x01"
            f"{f'44={self.price(ticks)}{SOH}' if limit else ''}54={FIX_SIDE[side]}\x0155={self.spec.symbol}\x01"
            f"59={FIX_TIF.get(tif, '1')}\x0160=",
            f"\x01150=0\x01151={quantity}\x01"
            f"{f'152={self.spec.format_quote(quote_qty)}{SOH}' if not steps and quote_qty else ''}",
        )
        if len(self.acks) >= TEXTS_KEEP:
            self.acks.clear()
        self.acks[key] = terms
        return terms

    def qty(self, steps: int) -> str:
        text = self.qtys.get(steps)
        return text if text is not None else _remember(self.qtys, steps, self.spec.format_qty)

    def price(self, ticks: int) -> str:
        text = self.prices.get(ticks)
        return text if text is not None else _remember(self.prices, ticks, self.spec.format_price)


def _remember(texts: dict[int, str], value: int, render: Callable[[int], str]) -> str:
    """Render and keep ``value``'s text; a full cache starts over (bounded memory)."""
    if len(texts) >= TEXTS_KEEP:
        texts.clear()
    text = texts[value] = render(value)
    return text


def avg_px(spec: MarketSpec, view: OrderView) -> str:
    """Quantity-weighted average fill price, exact to the tick scale plus a few decimals (half-up)."""
    if not view.executed_steps:
        return "0"
    scale = spec.tick_scale + AVG_PX_EXTRA_DECIMALS
    # price units (10**-scale) = quote atoms / (steps * quote per tick-step) * tick_units * 10**extra
    numerator = view.executed_quote * spec.tick_units * 10**AVG_PX_EXTRA_DECIMALS
    denominator = view.executed_steps * spec.quote_per_tick_step
    units = (2 * numerator + denominator) // (2 * denominator)
    text = str(units).rjust(scale + 1, "0")
    whole, frac = text[:-scale], text[-scale:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole
