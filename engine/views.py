"""Engine integers -> Backpack's wire shapes (decimal strings, millisecond times)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.messages import LIMIT, NO_CLIENT_ID, OrderView
from engine.spec import MarketSpec
from engine.units import format_units
from engine.withdrawals import WithdrawalRequest


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


def iso_naive(ts_us: int) -> str:
    """Backpack's history timestamps: ``2025-07-27T17:39:00.092`` (UTC, ms, no zone)."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def withdrawal_json(r: WithdrawalRequest, decimals: int) -> dict[str, Any]:
    """Backpack's ``Withdrawal`` object for one queued request (no fee: the venue charges none)."""
    return {
        "id": r.request_id,
        "blockchain": r.blockchain,
        "clientId": r.client_ref or None,
        "identifier": r.tx_hash or None,
        "quantity": format_units(r.amount, decimals),
        "fee": "0",
        "fiatFee": None,
        "fiatState": None,
        "fiatSymbol": None,
        "providerId": None,
        "symbol": r.asset,
        "status": r.status,
        "subaccountId": None,
        "toAddress": r.address,
        "transactionHash": r.tx_hash or None,
        "createdAt": iso_naive(r.created_us),
        "isInternal": False,
        "bankName": None,
        "bankIdentifier": None,
        "accountIdentifier": None,
        "triggerAt": None,
    }
