"""Engine and publisher integers -> Backpack's JSON shapes (decimal strings, mixed time units).

Time units follow Backpack exactly (reference/backpack-api.md §1): order
``createdAt`` in ms, history timestamps as naive ISO strings, depth
``timestamp`` and every WebSocket ``E``/``T`` in µs, klines as
``YYYY-MM-DD HH:MM:SS`` (REST) and ISO 8601 (WebSocket).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.config import MarketConfig
from engine.messages import LIMIT, NO_CLIENT_ID, OrderView
from engine.spec import AssetSpec, MarketSpec
from engine.units import format_units
from engine.updates import (
    BalanceUpdate,
    BookTop,
    Candle,
    DepthUpdate,
    FillRecord,
    FundsRecord,
    OrderUpdate,
    TickerStats,
    TradeRecord,
)
from engine.views import order_json

PERCENT_SCALE = 8

__all__ = ["format_units", "order_json"]  # re-exported for the route handlers


def iso_naive(ts_us: int) -> str:
    """Backpack's history timestamps: ``2025-07-27T17:39:00.092`` (UTC, ms, no zone)."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def kline_time(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso8601(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def asset_json(asset: AssetSpec) -> dict[str, Any]:
    return {"symbol": asset.symbol, "displayName": asset.display_name, "coingeckoId": None, "tokens": []}


def market_json(spec: MarketSpec, config: MarketConfig, state: str) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "baseSymbol": spec.base,
        "quoteSymbol": spec.quote,
        "marketType": "SPOT",
        "filters": {
            "price": {
                "minPrice": spec.format_tick(),
                "maxPrice": None,
                "tickSize": spec.format_tick(),
                "minMultiplier": config.price_band_min_multiplier,
                "maxMultiplier": config.price_band_max_multiplier,
            },
            "quantity": {
                "minQuantity": spec.format_qty(spec.min_qty_steps),
                "maxQuantity": None,
                "stepSize": spec.format_step(),
            },
        },
        "orderBookState": state,
        "visible": True,
        "createdAt": "1970-01-01T00:00:00",
    }


def depth_json(spec: MarketSpec, bids: list[tuple[int, int]], asks: list[tuple[int, int]], update_id: int, ts_us: int) -> dict[str, Any]:
    """REST depth: both sides ascending by price (best bid last), as Backpack sends them."""
    return {
        "asks": [[spec.format_price(p), spec.format_qty(q)] for p, q in asks],
        "bids": [[spec.format_price(p), spec.format_qty(q)] for p, q in reversed(bids)],
        "lastUpdateId": str(update_id),
        "timestamp": ts_us,
    }


def _percent(change: int, base: int) -> str:
    if base == 0:
        return "0"
    scaled = abs(change) * 10**PERCENT_SCALE // base
    return format_units(-scaled if change < 0 else scaled, PERCENT_SCALE)


def ticker_json(spec: MarketSpec, t: TickerStats) -> dict[str, Any]:
    """Every field a string, as Backpack's ``Ticker`` requires: a market that never traded
    has no prices, and shows "0" for them (ccxt reads a zero price as none)."""
    price = spec.format_price
    return {
        "symbol": t.symbol,
        "firstPrice": price(t.first),
        "lastPrice": price(t.last),
        "priceChange": price(t.last - t.first),
        "priceChangePercent": _percent(t.last - t.first, t.first),
        "high": price(t.high),
        "low": price(t.low),
        "volume": spec.format_qty(t.volume_steps),
        "quoteVolume": spec.format_quote(t.quote),
        "trades": str(t.trades),
    }


def kline_json(spec: MarketSpec, c: Candle) -> dict[str, Any]:
    return {
        "start": kline_time(c.start_s),
        "end": kline_time(c.end_s),
        "open": spec.format_price(c.open),
        "high": spec.format_price(c.high),
        "low": spec.format_price(c.low),
        "close": spec.format_price(c.close),
        "volume": spec.format_qty(c.volume_steps),
        "quoteVolume": spec.format_quote(c.quote),
        "trades": str(c.trades),
    }


def trade_json(spec: MarketSpec, t: TradeRecord) -> dict[str, Any]:
    return {
        "id": t.trade_id,
        "price": spec.format_price(t.price_ticks),
        "quantity": spec.format_qty(t.qty_steps),
        "quoteQuantity": spec.format_quote(t.quote),
        "timestamp": t.ts_us // 1000,
        "isBuyerMaker": t.is_buyer_maker,
    }


def history_order_json(view: OrderView, spec: MarketSpec) -> dict[str, Any]:
    out = order_json(view, spec)
    out["createdAt"] = iso_naive(view.created_us)
    return out


def fill_json(spec: MarketSpec, decimals: int, f: FillRecord) -> dict[str, Any]:
    return {
        "clientId": None if f.client_id == NO_CLIENT_ID else str(f.client_id),
        "fee": format_units(f.fill.fee, decimals),
        "feeSymbol": f.fill.fee_asset,
        "isMaker": f.fill.is_maker,
        "orderId": str(f.order_id),
        "price": spec.format_price(f.fill.price_ticks),
        "quantity": spec.format_qty(f.fill.qty_steps),
        "side": f.side,
        "symbol": f.symbol,
        "systemOrderType": None,
        "timestamp": iso_naive(f.ts_us),
        "tradeId": f.fill.trade_id,
    }


def funds_json(r: FundsRecord, decimals: int) -> dict[str, Any]:
    quantity = format_units(r.amount, decimals)
    common = {"id": r.record_id, "symbol": r.asset, "quantity": quantity, "createdAt": iso_naive(r.ts_us),
              "transactionHash": None, "subaccountId": None}
    if r.kind == "deposit":
        return {**common, "source": "administrator", "status": "confirmed", "fromAddress": None, "toAddress": None,
                "providerId": None}
    return {**common, "blockchain": "Satchel", "clientId": None, "identifier": None, "fee": "0",
            "status": "confirmed", "toAddress": None, "isInternal": True, "triggerAt": None}


# --- WebSocket payloads (short keys, µs) --------------------------------------------------


def ws_depth(spec: MarketSpec, d: DepthUpdate, now_us: int) -> dict[str, Any]:
    return {
        "e": "depth", "E": now_us, "s": d.symbol,
        "a": [[spec.format_price(p), spec.format_qty(q)] for p, q in d.asks],
        "b": [[spec.format_price(p), spec.format_qty(q)] for p, q in d.bids],
        "U": d.first_id, "u": d.last_id, "T": d.ts_us,
    }


def ws_trade(spec: MarketSpec, t: TradeRecord, now_us: int) -> dict[str, Any]:
    return {
        "e": "trade", "E": now_us, "s": t.symbol, "p": spec.format_price(t.price_ticks),
        "q": spec.format_qty(t.qty_steps), "b": str(t.buyer_order_id), "a": str(t.seller_order_id),
        "t": t.trade_id, "T": t.ts_us, "m": t.is_buyer_maker,
    }


def ws_book_ticker(spec: MarketSpec, b: BookTop, now_us: int) -> dict[str, Any]:
    return {
        "e": "bookTicker", "E": now_us, "s": b.symbol,
        "a": spec.format_price(b.ask_ticks) if b.ask_ticks else None,
        "A": spec.format_qty(b.ask_steps),
        "b": spec.format_price(b.bid_ticks) if b.bid_ticks else None,
        "B": spec.format_qty(b.bid_steps),
        "u": str(b.update_id), "T": b.ts_us or now_us,
    }


def ws_ticker(spec: MarketSpec, t: TickerStats, now_us: int) -> dict[str, Any]:
    price = spec.format_price
    return {
        "e": "ticker", "E": now_us, "s": t.symbol, "o": price(t.first), "c": price(t.last),
        "h": price(t.high), "l": price(t.low), "v": spec.format_qty(t.volume_steps),
        "V": spec.format_quote(t.quote), "n": t.trades,
    }


def ws_kline(spec: MarketSpec, c: Candle, closed: bool, now_us: int) -> dict[str, Any]:
    return {
        "e": "kline", "E": now_us, "s": spec.symbol, "t": iso8601(c.start_s), "T": iso8601(c.end_s),
        "o": spec.format_price(c.open), "c": spec.format_price(c.close), "h": spec.format_price(c.high),
        "l": spec.format_price(c.low), "v": spec.format_qty(c.volume_steps), "n": c.trades, "X": closed,
    }


def ws_order_update(spec: MarketSpec, u: OrderUpdate, decimals: dict[str, int], now_us: int) -> dict[str, Any]:
    v = u.view
    out: dict[str, Any] = {
        "e": u.kind, "E": now_us, "s": v.symbol, "S": v.side, "o": v.order_type.upper(), "f": v.tif,
        "y": v.post_only, "r": False, "V": v.stp, "X": v.status, "i": str(v.order_id),
        "z": spec.format_qty(v.executed_steps), "Z": spec.format_quote(v.executed_quote), "T": u.ts_us, "O": "USER",
    }
    if v.client_id != NO_CLIENT_ID:
        out["c"] = v.client_id
    if v.qty_steps:
        out["q"] = spec.format_qty(v.qty_steps)
    if v.quote_qty:
        out["Q"] = spec.format_quote(v.quote_qty)
    if v.order_type == LIMIT:
        out["p"] = spec.format_price(v.price_ticks)
    if u.kind == "orderExpired" and v.expiry_reason:
        out["R"] = v.expiry_reason
    if u.fill is not None:
        f = u.fill
        out.update({
            "t": f.trade_id, "l": spec.format_qty(f.qty_steps), "L": spec.format_price(f.price_ticks),
            "m": f.is_maker, "n": format_units(f.fee, decimals[f.fee_asset]), "N": f.fee_asset,
        })
    return out


def ws_balance(b: BalanceUpdate, decimals: int, now_us: int) -> dict[str, Any]:
    return {
        "e": "balanceUpdate", "E": now_us, "a": b.asset, "A": format_units(b.available, decimals),
        "L": format_units(b.locked, decimals), "S": "0", "T": b.ts_us,
    }
