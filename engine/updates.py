"""What the publisher derives from durable events, as protocol-neutral records (ints in, ints out).

Adapters turn these into their wire formats: Backpack JSON over REST and
WebSocket, FIX market data and execution reports. Nothing here knows a socket
or a venue; ``engine/publisher.py`` makes them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import attrs

from engine.messages import OrderView

# Kline intervals in seconds; "1month" is calendar months (0 marks it).
INTERVALS: Final[dict[str, int]] = {
    "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
    "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200, "1w": 604800,
    "1month": 0,
}
_WEEK_OFFSET_S: Final = 4 * 86400  # 1970-01-01 was a Thursday; weeks start on Monday 00:00 UTC

# OrderUpdate kinds (Backpack's event names are the most widely understood spelling)
ACCEPTED: Final = "orderAccepted"
FILL: Final = "orderFill"
CANCELLED_KIND: Final = "orderCancelled"
EXPIRED_KIND: Final = "orderExpired"
MODIFIED: Final = "orderModified"


# --- updates (protocol-neutral) -------------------------------------------------


@attrs.define(slots=True)
class DepthUpdate:
    symbol: str
    first_id: int
    last_id: int
    bids: list[tuple[int, int]]  # (price_ticks, qty_steps); qty 0 removes the level
    asks: list[tuple[int, int]]
    ts_us: int


@attrs.define(slots=True)
class TradeRecord:
    symbol: str
    trade_id: int
    price_ticks: int
    qty_steps: int
    quote: int  # quote atoms
    buyer_order_id: int
    seller_order_id: int
    is_buyer_maker: bool
    ts_us: int


@attrs.define(slots=True)
class BookTop:
    symbol: str
    bid_ticks: int  # 0 when the side is empty
    bid_steps: int
    ask_ticks: int
    ask_steps: int
    update_id: int
    ts_us: int


@attrs.define(slots=True)
class FillInfo:
    trade_id: int
    price_ticks: int
    qty_steps: int
    is_maker: bool
    fee: int
    fee_asset: str


@attrs.define(slots=True)
class OrderUpdate:
    account_id: int
    kind: str
    view: OrderView
    ts_us: int
    fill: FillInfo | None = None


@attrs.define(slots=True)
class BalanceUpdate:
    account_id: int
    asset: str
    available: int
    locked: int
    ts_us: int


@attrs.define(slots=True)
class FillRecord:
    account_id: int
    symbol: str
    order_id: int
    client_id: int
    side: str
    fill: FillInfo
    ts_us: int


@attrs.define(slots=True)
class FundsRecord:
    account_id: int
    asset: str
    amount: int
    kind: str  # "deposit" | "withdrawal"
    record_id: int  # the wire id: a deposit's running number; a withdrawal's id, shared with requests
    ts_us: int


@attrs.define(slots=True)
class Candle:
    start_s: int
    end_s: int
    open: int
    high: int
    low: int
    close: int
    volume_steps: int = 0
    quote: int = 0
    trades: int = 0


@attrs.define(slots=True)
class TickerStats:
    symbol: str
    first: int  # ticks; 0 when the market never traded
    last: int
    high: int
    low: int
    volume_steps: int
    quote: int
    trades: int


Update = DepthUpdate | TradeRecord | BookTop | OrderUpdate | BalanceUpdate
Listener = Callable[[list[Update]], None]


def bucket(ts_s: int, interval: str) -> tuple[int, int]:
    """The [start, end) seconds of the candle of ``interval`` that contains ``ts_s``."""
    seconds = INTERVALS[interval]
    if seconds == 0:
        day = datetime.fromtimestamp(ts_s, UTC)
        first = datetime(day.year, day.month, 1, tzinfo=UTC)
        after = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
        return int(first.timestamp()), int(after.timestamp())
    offset = _WEEK_OFFSET_S if interval == "1w" else 0
    start = (ts_s - offset) // seconds * seconds + offset
    return start, start + seconds
