"""Engine integers -> Backpack's wire shapes (decimal strings, millisecond times)."""

from __future__ import annotations

from typing import Any

from engine.messages import LIMIT, NO_CLIENT_ID, OrderView
from engine.spec import MarketSpec


def order_json(view: OrderView, spec: MarketSpec) -> dict[str, Any]:
    """Backpack's ``Order`` object for one order."""
    out: dict[str, Any] = {
        "id": str(view.order_id),
        "clientId": None if view.client_id == NO_CLIENT_ID else view.client_id,
        "symbol": view.symbol,
        "side": view.side,
        "orderType": view.order_type,
        "timeInForce": view.tif,
        "selfTradePrevention": view.stp,
        "quantity": spec.format_qty(view.qty_steps) if view.qty_steps else None,
        "executedQuantity": spec.format_qty(view.executed_steps),
        "executedQuoteQuantity": spec.format_quote(view.executed_quote),
        "status": view.status,
        "createdAt": view.created_us // 1000,
        "reduceOnly": False,
        "triggerPrice": None,
        "triggerQuantity": None,
        "relatedOrderId": None,
    }
    if view.order_type == LIMIT:
        out["price"] = spec.format_price(view.price_ticks)
        out["postOnly"] = view.post_only
    else:
        out["quoteQuantity"] = spec.format_quote(view.quote_qty) if view.quote_qty else None
    if view.expiry_reason:
        out["expiryReason"] = view.expiry_reason
    return out
