"""The ExecutionReport writers (``adapters.fix.reports.Reports``) give the same bytes for the same facts."""

from __future__ import annotations

import itertools

import attrs

from adapters.fix.codec import Field, encode_body
from adapters.fix.exchange import ExchangeApplication
from engine.messages import (
    ASK,
    BID,
    CANCELLED,
    EXPIRED,
    FILLED,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NO_CLIENT_ID,
    OrderPlaced,
    OrderView,
)
from engine.publisher import accepted_view
from tests.adapters.fix.venue import SOL, FixVenue


def _views() -> list[OrderView]:
    base = OrderView(
        order_id=7, account_id=1, symbol=SOL, side=BID, order_type=LIMIT, tif=GTC, price_ticks=10_000, qty_steps=200,
        quote_qty=0, executed_steps=0, executed_quote=0, status="New", expiry_reason="", post_only=False,
        stp="RejectTaker", client_id=NO_CLIENT_ID, created_us=1,
    )
    views = []
    for status, post_only, client_id, side in itertools.product(
        ("New", "PartiallyFilled", FILLED, CANCELLED, EXPIRED), (False, True), (NO_CLIENT_ID, 42), (BID, ASK),
    ):
        views.append(attrs.evolve(base, status=status, post_only=post_only, client_id=client_id, side=side,
                                  executed_steps=50, executed_quote=50 * 10_000 * 10))
    views.append(attrs.evolve(base, order_type=MARKET, tif=IOC, price_ticks=0, qty_steps=0, quote_qty=123_456))
    views.append(attrs.evolve(base, order_type=MARKET, tif=IOC, price_ticks=0))
    return views


async def test_fast_execution_report_bytes_match_the_field_list_encoding(venue: FixVenue) -> None:
    app: ExchangeApplication = venue.info["application"]
    app.ids.remember(1, "named", 8)
    spec = venue.engine.venue.specs[SOL]
    for view in [*_views(), *(attrs.evolve(v, order_id=8) for v in _views())]:
        for fill, text, orig in ((None, None, None), ((10_001, 3), None, None), (None, "Expired: IOC", None),
                                 (None, None, "old-id"), ((9_999, 1), "t", "o")):
            extra: list[Field] = []
            if fill is not None:
                extra += [(31, spec.format_price(fill[0])), (32, spec.format_qty(fill[1]))]
            if text is not None:
                extra.append((58, text))
            if orig is not None:
                extra.append((41, orig))
            expected = encode_body(app.reports.fields(view, "F", "x1", extra, 1_700_000_000_123_456))
            assert app.reports.execution(view, "F", "x1", 1_700_000_000_123_456, fill, text, orig) == expected


async def test_acknowledgement_template_matches_the_report_of_the_accepted_view(venue: FixVenue) -> None:
    app: ExchangeApplication = venue.info["application"]
    app.ids.remember(1, "named", 8)
    base = OrderPlaced(
        order_id=7, account_id=1, symbol=SOL, side=BID, order_type=LIMIT, tif=GTC, price_ticks=10_000, qty_steps=200,
        quote_qty=0, post_only=False, stp="RejectTaker", client_id=NO_CLIENT_ID, lock=0, ts_us=1_700_000_000_123_456,
        status="New", expiry_reason="", fills=[], stp_cancelled=[],
    )
    events = [base, attrs.evolve(base, order_type=MARKET, tif=IOC, price_ticks=0, qty_steps=0, quote_qty=123_456),
              attrs.evolve(base, order_type=MARKET, tif=IOC, price_ticks=0)]
    for event, order_id, client_id, post_only, side in itertools.product(
        events, (7, 8), (NO_CLIENT_ID, 42), (False, True), (BID, ASK),
    ):
        placed = attrs.evolve(event, order_id=order_id, client_id=client_id, post_only=post_only, side=side)
        expected = app.reports.execution(accepted_view(placed), "0", f"{order_id}N", placed.ts_us, None, None, None)
        assert app.reports.acknowledgement(placed) == expected
