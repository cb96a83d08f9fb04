"""What adapters read from the publisher: its shadow venue and the data derived from it, durable facts only.

``Publisher`` (``engine/publisher.py``) keeps this state current from durable
journal batches and nothing else: a shadow ``Venue`` (books, balances, open
orders, withdrawal requests), and per market the trades, klines, book top and
update id, per account the fills, closed orders, deposits and withdrawals. Every
read an adapter serves comes from here, which is how "durable before visible"
holds for queries as well as for streams. Reads never change anything.

Limits: histories, trades and klines are bounded by the ``*_KEEP`` constants
(oldest dropped first).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from engine.messages import ASK, BID, OrderView
from engine.updates import INTERVALS, BookTop, Candle, FillRecord, FundsRecord, TickerStats, TradeRecord
from engine.venue import Venue
from engine.withdrawals import WithdrawalRequest

TRADES_KEEP: Final = 10_000  # per market
KLINES_KEEP: Final = 1_500  # candles per market and interval (1m covers the 24 h ticker)
HISTORY_KEEP: Final = 10_000  # fills, closed orders, deposits, withdrawals per account


class MarketData:
    """Per-market derived data the book itself does not keep."""

    __slots__ = ("klines", "top", "trades", "update_id")

    def __init__(self) -> None:
        self.update_id = 0
        self.trades: deque[TradeRecord] = deque(maxlen=TRADES_KEEP)
        self.klines: dict[str, deque[Candle]] = {name: deque(maxlen=KLINES_KEEP) for name in INTERVALS}
        self.top = (0, 0, 0, 0)


class Histories:
    __slots__ = ("fills", "funds", "orders")

    def __init__(self) -> None:
        self.fills: deque[FillRecord] = deque(maxlen=HISTORY_KEEP)
        self.orders: deque[OrderView] = deque(maxlen=HISTORY_KEEP)
        self.funds: deque[FundsRecord] = deque(maxlen=HISTORY_KEEP)


class PublisherReads:
    """The publisher's durable state and the reads adapters serve from it. See the module docstring."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self._data: dict[str, MarketData] = {symbol: MarketData() for symbol in venue.markets}
        for symbol, market in venue.markets.items():
            self._data[symbol].top = top_of(market.book)
        self._histories: dict[int, Histories] = {}

    def depth(self, symbol: str, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
        """Best ``limit`` levels per side (best first) and the update id they reflect."""
        book = self.venue.markets[symbol].book
        return book.depth(BID, limit), book.depth(ASK, limit), self._data[symbol].update_id

    def update_id(self, symbol: str) -> int:
        return self._data[symbol].update_id

    def book_top(self, symbol: str) -> BookTop:
        data = self._data[symbol]
        return BookTop(symbol, *data.top, data.update_id, 0)

    def trades(self, symbol: str, limit: int, offset: int = 0) -> list[TradeRecord]:
        """Newest first, skipping ``offset`` newer trades."""
        ring = self._data[symbol].trades
        end = len(ring) - offset
        return [ring[i] for i in range(end - 1, max(end - limit, 0) - 1, -1)] if end > 0 else []

    def klines(self, symbol: str, interval: str, start_s: int, end_s: int) -> list[Candle]:
        """Candles that start within [start_s, end_s], both ends included: clients send
        ``endTime`` as the current second rounded down (ccxt does), and a candle that opened
        in that very second is one they expect to see."""
        return [c for c in self._data[symbol].klines[interval] if start_s <= c.start_s <= end_s]

    def current_candle(self, symbol: str, interval: str) -> Candle | None:
        candles = self._data[symbol].klines[interval]
        return candles[-1] if candles else None

    def candles_since(self, symbol: str, interval: str, start_s: int) -> list[Candle]:
        """The candles that started at or after ``start_s``, oldest first (a walk back from the newest)."""
        out: list[Candle] = []
        for candle in reversed(self._data[symbol].klines[interval]):
            if candle.start_s < start_s:
                break
            out.append(candle)
        out.reverse()
        return out

    def ticker(self, symbol: str, now_us: int, window: str = "1d") -> TickerStats:
        """Rolling statistics over the last day (1m candles) or week (1h candles)."""
        interval, span_s = ("1h", 7 * 86400) if window == "1w" else ("1m", 86400)
        since = now_us // 1_000_000 - span_s
        last = self.venue.markets[symbol].last_price
        stats = TickerStats(symbol, 0, last, 0, 0, 0, 0, 0)
        for c in self._data[symbol].klines[interval]:
            if c.end_s <= since:
                continue
            if not stats.trades:
                stats.first, stats.high, stats.low = c.open, c.high, c.low
            stats.high = max(stats.high, c.high)
            stats.low = min(stats.low, c.low)
            stats.volume_steps += c.volume_steps
            stats.quote += c.quote
            stats.trades += c.trades
        if not stats.trades:
            stats.first = stats.high = stats.low = last
        return stats

    def account_for_key(self, public_key: str) -> int | None:
        """The account a durable API key belongs to."""
        return self.venue.api_keys.get(public_key)

    def balances(self, account_id: int) -> dict[str, tuple[int, int]]:
        """asset -> (available, locked) atoms, for every asset the account ever held."""
        account = self.venue.accounts.get(account_id)
        if account is None:
            return {}
        out = {}
        for asset in sorted(set(account.balances) | set(account.locked)):
            locked = account.locked.get(asset, 0) + account.reserved.get(asset, 0)  # withdrawals count as locked
            out[asset] = (account.balances.get(asset, 0) - locked, locked)
        return out

    def open_orders(self, account_id: int, symbol: str | None = None) -> list[OrderView]:
        return self.venue.open_orders(account_id, symbol)

    def open_order(self, account_id: int, symbol: str | None, order_id: int | None,
                   client_id: int | None) -> OrderView | None:
        return self.venue.open_order(account_id, symbol, order_id, client_id)

    def fills(self, account_id: int) -> list[FillRecord]:
        history = self._histories.get(account_id)
        return list(history.fills) if history else []

    def closed_orders(self, account_id: int) -> list[OrderView]:
        history = self._histories.get(account_id)
        return list(history.orders) if history else []

    def withdrawal_requests(self, account_id: int) -> list[WithdrawalRequest]:
        """The account's durable withdrawal requests (pending and decided), oldest first."""
        return self.venue.withdrawal_requests(account_id)

    def funds(self, account_id: int, kind: str) -> list[FundsRecord]:
        history = self._histories.get(account_id)
        return [r for r in history.funds if r.kind == kind] if history else []


def top_of(book: Any) -> tuple[int, int, int, int]:
    """(best bid, its steps, best ask, its steps); 0 for an empty side."""
    bid, ask = book.best_bid(), book.best_ask()
    steps = book.level_steps
    return (bid, steps.get((BID, bid), 0) if bid else 0, ask, steps.get((ASK, ask), 0) if ask else 0)
