"""Order intake: the text of a new order, cancel or amend checked against its market's static filters.

Everything here depends only on the market's spec (tick, step, minimum size and
notional, field combinations), never on state, so it runs before anything is
queued and refuses with Backpack's error codes; what depends on state is
decided by the owning actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from engine.builders import builder
from engine.market import below_min_notional
from engine.messages import (
    CLIENT_ID_MAX,
    GTC,
    LIMIT,
    MARKET,
    NO_CLIENT_ID,
    ORDER_TYPES,
    SIDES,
    STP_MODES,
    TIME_IN_FORCE,
    PlaceOrder,
    Rejection,
)
from engine.spec import MarketSpec
from engine.units import MAX_AMOUNT, DecimalError


class Invalid(Exception):
    """A field that does not parse; carries the rejection that names it."""

    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


# Parsed prices and quantities, per market (``MarketIntake``): order flow repeats the same
# few thousand strings, and a dict hit costs ~0.1 us against ~2 us for parsing. Only
# successful parses are cached, keyed by the exact input text.
_PARSE_CACHE_MAX: Final = 65_536
# valid side, timeInForce, selfTradePrevention -> the same value as the engine's constant: a
# resting order keeps these strings for its lifetime, one shared object each instead of a copy
# per request parsed off the wire. One str-keyed lookup per field: a (side, tif, stp) tuple key
# cost ~500 instructions per order more (tuple built, hashed, compared item by item, freed).
OWN_SIDE: Final = {s: s for s in SIDES}
OWN_TIF: Final = {t: t for t in TIME_IN_FORCE}
OWN_STP: Final = {p: p for p in STP_MODES}
# PlaceOrder(...) as a plain function (engine.builders, same object): the intake builds one per order
new_place_order: Final = builder(PlaceOrder, defaults=True)


class MarketIntake:
    """What ``Engine.build_order``'s plain-limit path reads of one market, in one object.

    Its spec's symbol, factors and filters, and the engine's parse caches for
    the market (``ticks``, ``steps``, filled by ``price``/``qty``): one dict
    lookup per order instead of the spec, two caches keyed by symbol and five
    spec attributes (~350 instructions per order). The caches belong to the
    engine, so engines with different tick or step sizes for one symbol (in
    one process: tests, tools) never share a parse.
    """

    __slots__ = ("base_per_step", "min_notional_quote", "min_qty_steps", "quote_per_tick_step", "spec", "steps",
                 "symbol", "ticks")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.quote_per_tick_step = spec.quote_per_tick_step
        self.base_per_step = spec.base_per_step
        self.min_qty_steps = spec.min_qty_steps
        self.min_notional_quote = spec.min_notional_quote
        self.ticks: dict[Any, int] = {}
        self.steps: dict[Any, int] = {}

    def price(self, text: Any) -> int:
        return _parse_cached(self.ticks, self.spec.price_ticks, "INVALID_PRICE", text)

    def qty(self, text: Any) -> int:
        return _parse_cached(self.steps, self.spec.qty_steps, "INVALID_QUANTITY", text)


def _parse_cached(cache: dict[Any, int], parse: Callable[[Any], int], code: str, text: Any) -> int:
    try:
        return cache[text]
    except (KeyError, TypeError):  # TypeError: unhashable input, refused by parse below
        pass
    try:
        value = parse(text)
    except DecimalError as exc:
        raise Invalid(Rejection(code, str(exc))) from None
    if type(text) is str:  # never cache a non-string that happens to hash like one (1 == 1.0 == True)
        if len(cache) >= _PARSE_CACHE_MAX:
            cache.clear()
        cache[text] = value
    return value


def _quote(spec: MarketSpec, text: Any) -> int:
    try:
        return spec.quote_amount(text)
    except DecimalError as exc:
        raise Invalid(Rejection("INVALID_QUANTITY", str(exc))) from None


def _enum_problem(side: str, order_type: str, tif: str, stp: str, client_id: Any) -> Rejection | None:
    if side not in SIDES:
        return Rejection("INVALID_ORDER", f"Invalid side {side!r}: expected Bid or Ask")
    if order_type not in ORDER_TYPES:
        return Rejection("INVALID_ORDER", f"Invalid orderType {order_type!r}: expected Limit or Market")
    if tif not in TIME_IN_FORCE:
        return Rejection("INVALID_ORDER", f"Invalid timeInForce {tif!r}: expected GTC, IOC or FOK")
    if stp not in STP_MODES:
        return Rejection("INVALID_ORDER", f"Invalid selfTradePrevention {stp!r}: expected RejectTaker, RejectMaker or RejectBoth")
    if client_id is not None and (type(client_id) is not int or not 0 <= client_id <= CLIENT_ID_MAX):
        return Rejection("INVALID_CLIENT_REQUEST", "clientId must be an unsigned 32-bit integer")
    return None


def order_target(order_id: Any, client_id: Any) -> tuple[int, int] | Rejection:
    if (order_id is None) == (client_id is None):
        return Rejection("INVALID_CLIENT_REQUEST", "Give exactly one of orderId or clientId")
    if order_id is not None:
        if type(order_id) is not int or order_id <= 0:
            return Rejection("INVALID_CLIENT_REQUEST", "orderId must be a positive integer")
        return order_id, NO_CLIENT_ID
    if type(client_id) is not int or not 0 <= client_id <= CLIENT_ID_MAX:
        return Rejection("INVALID_CLIENT_REQUEST", "clientId must be an unsigned 32-bit integer")
    return -1, client_id


def checked_order(
    spec: MarketSpec, intake: MarketIntake, order_id: int, account_id: int, side: str, order_type: str, tif: str,
    stp: str, quantity: str | None, quote_quantity: str | None, price: str | None, post_only: bool,
    client_id: int | None,
) -> PlaceOrder | Rejection:
    """Any new order, every field checked against the market's filters, named ``order_id`` if it passes (the
    engine's general path; ``Engine.build_order`` takes plain limit orders it has seen the prices of faster)."""
    problem = _enum_problem(side, order_type, tif, stp, client_id)
    if problem is not None:
        return problem
    if type(post_only) is not bool:
        return Rejection("INVALID_CLIENT_REQUEST", "postOnly must be true or false")
    try:
        if order_type == LIMIT:
            if price is None or quantity is None:
                return Rejection("INVALID_ORDER", "Limit orders require price and quantity")
            if quote_quantity is not None:
                return Rejection("INVALID_ORDER", "quoteQuantity is only for market orders")
            if post_only and tif != GTC:
                return Rejection("INVALID_ORDER", "postOnly orders must be GTC")
            price_ticks, qty_steps, quote = intake.price(price), intake.qty(quantity), 0
            notional = spec.notional(price_ticks, qty_steps)
        else:
            if price is not None:
                return Rejection("INVALID_ORDER", "Market orders take no price")
            if post_only:
                return Rejection("INVALID_ORDER", "Market orders cannot be postOnly")
            if (quantity is None) == (quote_quantity is None):
                return Rejection("INVALID_ORDER", "Market orders need exactly one of quantity or quoteQuantity")
            price_ticks = 0
            qty_steps = intake.qty(quantity) if quantity is not None else 0
            quote = _quote(spec, quote_quantity) if quote_quantity is not None else 0
            notional = quote or spec.min_notional_quote
    except Invalid as bad:
        return bad.rejection
    if qty_steps and qty_steps < spec.min_qty_steps:
        return Rejection("INVALID_QUANTITY", f"Quantity is below the minimum {spec.format_qty(spec.min_qty_steps)}")
    small = below_min_notional(spec, notional)
    if small is not None:
        return small
    if notional >= MAX_AMOUNT or qty_steps * spec.base_per_step >= MAX_AMOUNT:
        return Rejection("INVALID_QUANTITY", "Order is too large")
    side, tif, stp = OWN_SIDE[side], OWN_TIF[tif], OWN_STP[stp]  # the engine's own string objects
    return PlaceOrder(
        order_id, account_id, spec.symbol, side, LIMIT if order_type == LIMIT else MARKET, tif,
        price_ticks, qty_steps, quote, post_only, stp, NO_CLIENT_ID if client_id is None else client_id,
    )
