"""Reference and market data over FIX: SecurityList and MarketDataRequest from durable state.

Depth and trades come from ``engine.publisher.Publisher`` (its books hold only
durable facts): a request gets a MarketDataSnapshotFullRefresh W at once and,
with SubscriptionRequestType 1, MarketDataIncrementalRefresh X for every
durable batch that touches its symbols (absolute level sizes: 279=0 for a
level the client does not hold, 279=1 with the new 271 for one it holds, 279=2
when a level it holds empties; trades as 279=0 269=2). Each subscription keeps
the levels it has sent, so an action always fits the client's book. With
MDUpdateType 265=0 the updates are full W snapshots instead.

MarketDepth 264: 0 is the full book, except that a W snapshot carries at most
the best ``MAX_SNAPSHOT_LEVELS`` per side (on a book of tens of thousands of
levels one full-book subscriber made every durable batch rebuild and send
megabytes); its increments carry every level that changes. N is the best N
levels per side, in the snapshot and in the updates, at most that many too. For N the subscription remembers the levels it
last reported and sends the difference: 279=2 for a level that left the top N
(emptied, or pushed out by a better one), 279=0 for a level that entered it,
279=1 for a new size; deletes come first, so a client keeping N levels never
holds more. Full-refresh subscriptions with N get a W only when their top N or
(if asked) the trades changed.

Limits: ``MAX_MD_SUBSCRIPTIONS`` per session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from adapters.fix.codec import Field, Message, is_number
from adapters.fix.dictionary import Validated
from adapters.fix.session import Session
from engine.publisher import Publisher
from engine.updates import DepthUpdate, TradeRecord

MAX_MD_SUBSCRIPTIONS: Final = 100
MAX_SNAPSHOT_LEVELS: Final = 1000  # per side, in a W for MarketDepth 0; the largest MarketDepth N


class _Subscription:
    """One MarketDataRequest with SubscriptionRequestType 1: what to stream to its session."""

    __slots__ = ("depth", "full", "md_req_id", "sent", "symbols", "trades", "types")

    def __init__(self, md_req_id: str, symbols: list[str], depth: int, types: set[str], full: bool) -> None:
        self.md_req_id = md_req_id
        self.symbols = symbols
        self.depth = depth
        self.types = types
        self.trades = "2" in types
        self.full = full
        # per symbol, the (bids, asks) price -> size the client holds (depth > 0: best first; not for 265=0
        # over the full book, which sends whole snapshots)
        self.sent: dict[str, tuple[dict[int, int], dict[int, int]]] = {}


class MarketData:
    """Subscriptions per session and the messages built for them."""

    def __init__(self, engine: Any, publisher: Publisher, wall_us: Callable[[], int]) -> None:
        self.engine = engine
        self.publisher = publisher
        self.wall_us = wall_us
        self.subscriptions: dict[Session, dict[str, _Subscription]] = {}

    def drop(self, session: Session) -> None:
        self.subscriptions.pop(session, None)

    def subscribed(self) -> bool:
        """Whether any session has a market data subscription (the publisher builds depth updates only then)."""
        return any(self.subscriptions.values())

    def security_list(self, session: Session, m: Message) -> None:
        """SecurityListRequest x -> SecurityList y with each market's sizes."""
        specs = self.engine.venue.specs
        wanted = m.get(55) if m.get(559) == "0" else None
        chosen = [specs[wanted]] if wanted in specs else [] if wanted else list(specs.values())
        entries = [
            [(55, spec.symbol), (15, spec.quote), (561, spec.format_step()), (562, spec.format_qty(spec.min_qty_steps)),
             (58, f"tick_size={spec.format_tick()} step_size={spec.format_step()} min_notional={spec.format_quote(spec.min_notional_quote)} "
                  f"base={spec.base} quote={spec.quote}")]
            for spec in chosen
        ]
        body: list[Field] = [(320, m.get(320) or ""), (322, f"SL{self.wall_us()}"), (560, "0" if entries else "2"),
                             (393, str(len(entries))), (893, "Y")]
        if entries:
            body.append((146, entries))
        session.send("y", body)

    def request(self, session: Session, m: Message, parts: Validated) -> None:
        """MarketDataRequest V: snapshot W now; with 263=1 also updates from durable batches."""
        req_id = m.get(262) or ""
        kind = m.get(263) or ""
        subs = self.subscriptions.setdefault(session, {})
        if kind == "2":
            subs.pop(req_id, None)
            return
        symbols = _group_values(parts, 146, 55)
        types = set(_group_values(parts, 267, 269))
        unknown = [s for s in symbols if s not in self.engine.venue.specs]
        problem = None
        if unknown or not symbols:
            problem = ("0", f"Unknown symbol {unknown[0]!r}" if unknown else "No symbol requested")
        elif types - {"0", "1", "2"}:
            problem = ("8", "Supported MDEntryType values are 0 (bid), 1 (offer) and 2 (trade)")
        elif not is_number(m.get(264) or "0"):
            problem = ("5", "MarketDepth (264) must be 0 (full book) or a number of levels")
        elif int(m.get(264) or "0") > MAX_SNAPSHOT_LEVELS:
            problem = ("5", f"MarketDepth (264) is at most {MAX_SNAPSHOT_LEVELS} levels per side")
        elif kind == "1" and req_id in subs:
            problem = ("1", f"Duplicate MDReqID {req_id!r}")
        elif kind == "1" and len(subs) >= MAX_MD_SUBSCRIPTIONS:
            problem = ("2", f"At most {MAX_MD_SUBSCRIPTIONS} market data subscriptions per session")
        if problem is not None:
            self.reject(session, m, *problem)
            return
        depth = int(m.get(264) or "0")
        sub = _Subscription(req_id, symbols, depth, types, m.get(265) == "0")
        for symbol in symbols:
            session.send("W", self._snapshot(sub, symbol))
        if kind == "1":
            subs[req_id] = sub

    def reject(self, session: Session, m: Message, reason: str, text: str) -> None:
        """MarketDataRequestReject Y: MDReqRejReason 281 and the reason in 58."""
        session.send("Y", [(262, m.get(262) or ""), (281, reason), (58, text)])

    def _snapshot(self, sub: _Subscription, symbol: str) -> list[Field]:
        types = sub.types
        spec = self.engine.venue.specs[symbol]
        bids, asks, _ = self.publisher.depth(symbol, sub.depth or MAX_SNAPSHOT_LEVELS)
        if sub.depth or not sub.full:
            sub.sent[symbol] = (dict(bids), dict(asks))
        entries: list[list[Field]] = []
        if "0" in types:
            entries += [[(269, "0"), (270, spec.format_price(p)), (271, spec.format_qty(q))] for p, q in bids]
        if "1" in types:
            entries += [[(269, "1"), (270, spec.format_price(p)), (271, spec.format_qty(q))] for p, q in asks]
        if "2" in types:
            entries += [[(269, "2"), (270, spec.format_price(t.price_ticks)), (271, spec.format_qty(t.qty_steps))]
                        for t in self.publisher.trades(symbol, 1)]
        return [(262, sub.md_req_id), (55, symbol), (268, entries)]

    def on_book(self, depth: list[DepthUpdate], trades: list[TradeRecord]) -> None:
        """One durable batch's depth and trade updates -> W or X to every subscriber."""
        for session, subs in list(self.subscriptions.items()):
            for sub in subs.values():
                if sub.full:
                    self._refresh(session, sub, depth, trades)
                    continue
                entries = self._incremental_top(sub, depth, trades) if sub.depth else self._incremental(sub, depth, trades)
                if entries:
                    session.send("X", [(262, sub.md_req_id), (268, entries)])

    def _refresh(self, session: Session, sub: _Subscription, depth: list[DepthUpdate], trades: list[TradeRecord]) -> None:
        """Full-refresh subscription: a W per symbol whose (top N) book or, if asked, trades changed."""
        traded = {t.symbol for t in trades} if sub.trades else set()
        for symbol in sub.symbols:
            if symbol in traded:
                session.send("W", self._snapshot(sub, symbol))
            elif any(d.symbol == symbol for d in depth):
                if sub.depth:
                    bids, asks, _ = self.publisher.depth(symbol, sub.depth)
                    if sub.sent.get(symbol) == (dict(bids), dict(asks)):
                        continue
                session.send("W", self._snapshot(sub, symbol))

    def _incremental_top(self, sub: _Subscription, depth: list[DepthUpdate], trades: list[TradeRecord]) -> list[list[Field]]:
        """MarketDepth N: the change of each touched symbol's top N levels since the last report."""
        entries: list[list[Field]] = []
        touched = {d.symbol for d in depth}
        for symbol in sub.symbols:
            if symbol not in touched:
                continue
            spec = self.engine.venue.specs[symbol]
            bids, asks, _ = self.publisher.depth(symbol, sub.depth)
            now = (dict(bids), dict(asks))
            before = sub.sent.get(symbol, ({}, {}))
            for entry_type, old, new in (("0", before[0], now[0]), ("1", before[1], now[1])):
                if entry_type in sub.types:
                    entries += _level_changes(spec, symbol, entry_type, old, new)
            sub.sent[symbol] = now
        if sub.trades:
            entries += self._trade_entries(sub, trades)
        return entries

    def _trade_entries(self, sub: _Subscription, trades: list[TradeRecord]) -> list[list[Field]]:
        entries: list[list[Field]] = []
        for trade in trades:
            if trade.symbol in sub.symbols:
                spec = self.engine.venue.specs[trade.symbol]
                entries.append([(279, "0"), (269, "2"), (55, trade.symbol), (270, spec.format_price(trade.price_ticks)),
                                (271, spec.format_qty(trade.qty_steps))])
        return entries

    def _incremental(self, sub: _Subscription, depth: list[DepthUpdate], trades: list[TradeRecord]) -> list[list[Field]]:
        """MarketDepth 0: each changed level as New (279=0) or Change (1) by whether the client holds it,
        or Delete (2); a level that came and went within the batch is not sent at all."""
        types = sub.types
        entries: list[list[Field]] = []
        for update in depth:
            symbol = update.symbol
            if symbol not in sub.symbols:
                continue
            spec = self.engine.venue.specs[symbol]
            held = sub.sent.setdefault(symbol, ({}, {}))
            for entry_type, levels, known in (("0", update.bids, held[0]), ("1", update.asks, held[1])):
                if entry_type not in types:
                    continue
                for price, qty in levels:
                    if qty:
                        action = "1" if price in known else "0"
                        known[price] = qty
                        entries.append([(279, action), (269, entry_type), (55, symbol), (270, spec.format_price(price)),
                                        (271, spec.format_qty(qty))])
                    elif known.pop(price, None) is not None:
                        entries.append([(279, "2"), (269, entry_type), (55, symbol), (270, spec.format_price(price))])
        if sub.trades:
            entries += self._trade_entries(sub, trades)
        return entries


def _level_changes(spec: Any, symbol: str, entry_type: str, old: dict[int, int], new: dict[int, int]) -> list[list[Field]]:
    """Deletes (left the top N) first, then new levels (279=0) and new sizes (279=1), best first."""
    out: list[list[Field]] = [
        [(279, "2"), (269, entry_type), (55, symbol), (270, spec.format_price(price))]
        for price in old if price not in new
    ]
    for price, qty in new.items():
        was = old.get(price)
        if was != qty:
            out.append([(279, "0" if was is None else "1"), (269, entry_type), (55, symbol),
                        (270, spec.format_price(price)), (271, spec.format_qty(qty))])
    return out


def _group_values(parts: Validated, count_tag: int, tag: int) -> list[str]:
    for field_tag, value in parts.body:
        if field_tag == count_tag and not isinstance(value, str):
            return [v for entry in value for t, v in entry if t == tag and isinstance(v, str)]
    return []
