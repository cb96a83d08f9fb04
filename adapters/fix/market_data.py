"""Reference and market data over FIX: SecurityList and MarketDataRequest from durable state.

Depth and trades come from ``engine.publisher.Publisher`` (its books hold only
durable facts): a request gets a MarketDataSnapshotFullRefresh W at once and,
with SubscriptionRequestType 1, MarketDataIncrementalRefresh X for every
durable batch that touches its symbols (absolute level sizes: 279=1 with 271,
or 279=2 when a level empties; trades as 279=0 269=2). With MDUpdateType 265=0
the updates are full W snapshots of the requested MarketDepth instead.
Limits: incremental updates cover the whole book whatever MarketDepth says;
``MAX_MD_SUBSCRIPTIONS`` per session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from adapters.fix.codec import Field, Message
from adapters.fix.dictionary import Validated
from adapters.fix.session import Session
from engine.publisher import DepthUpdate, Publisher, TradeRecord

MAX_MD_SUBSCRIPTIONS: Final = 100


class _Subscription:
    """One MarketDataRequest with SubscriptionRequestType 1: what to stream to its session."""

    __slots__ = ("depth", "full", "md_req_id", "symbols", "trades", "types")

    def __init__(self, md_req_id: str, symbols: list[str], depth: int, types: set[str], full: bool) -> None:
        self.md_req_id = md_req_id
        self.symbols = symbols
        self.depth = depth
        self.types = types
        self.trades = "2" in types
        self.full = full


class MarketData:
    """Subscriptions per session and the messages built for them."""

    def __init__(self, engine: Any, publisher: Publisher, wall_us: Callable[[], int]) -> None:
        self.engine = engine
        self.publisher = publisher
        self.wall_us = wall_us
        self.subscriptions: dict[Session, dict[str, _Subscription]] = {}

    def drop(self, session: Session) -> None:
        self.subscriptions.pop(session, None)

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
            body.append((146, entries))  # type: ignore[arg-type]
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
        elif kind == "1" and req_id in subs:
            problem = ("1", f"Duplicate MDReqID {req_id!r}")
        elif kind == "1" and len(subs) >= MAX_MD_SUBSCRIPTIONS:
            problem = ("2", f"At most {MAX_MD_SUBSCRIPTIONS} market data subscriptions per session")
        if problem is not None:
            session.send("Y", [(262, req_id), (281, problem[0]), (58, problem[1])])
            return
        depth = int(m.get(264) or "0")
        sub = _Subscription(req_id, symbols, depth, types, m.get(265) == "0")
        for symbol in symbols:
            session.send("W", self._snapshot(sub, symbol))
        if kind == "1":
            subs[req_id] = sub

    def _snapshot(self, sub: _Subscription, symbol: str) -> list[Field]:
        types = sub.types
        spec = self.engine.venue.specs[symbol]
        bids, asks, _ = self.publisher.depth(symbol, sub.depth or 1_000_000)
        entries: list[list[Field]] = []
        if "0" in types:
            entries += [[(269, "0"), (270, spec.format_price(p)), (271, spec.format_qty(q))] for p, q in bids]
        if "1" in types:
            entries += [[(269, "1"), (270, spec.format_price(p)), (271, spec.format_qty(q))] for p, q in asks]
        if "2" in types:
            entries += [[(269, "2"), (270, spec.format_price(t.price_ticks)), (271, spec.format_qty(t.qty_steps))]
                        for t in self.publisher.trades(symbol, 1)]
        return [(262, sub.md_req_id), (55, symbol), (268, entries)]  # type: ignore[list-item]

    def on_book(self, depth: list[DepthUpdate], trades: list[TradeRecord]) -> None:
        """One durable batch's depth and trade updates -> W or X to every subscriber."""
        for session, subs in list(self.subscriptions.items()):
            for sub in subs.values():
                if sub.full:
                    touched = {d.symbol for d in depth} | ({t.symbol for t in trades} if sub.trades else set())
                    for symbol in sub.symbols:
                        if symbol in touched:
                            session.send("W", self._snapshot(sub, symbol))
                    continue
                entries = self._incremental(sub, depth, trades)
                if entries:
                    session.send("X", [(262, sub.md_req_id), (268, entries)])  # type: ignore[list-item]

    def _incremental(self, sub: _Subscription, depth: list[DepthUpdate], trades: list[TradeRecord]) -> list[list[Field]]:
        types = sub.types
        entries: list[list[Field]] = []
        for update in depth:
            if update.symbol not in sub.symbols:
                continue
            spec = self.engine.venue.specs[update.symbol]
            for entry_type, levels in (("0", update.bids), ("1", update.asks)):
                if entry_type not in types:
                    continue
                for price, qty in levels:
                    action = "2" if qty == 0 else "1"
                    entry: list[Field] = [(279, action), (269, entry_type), (55, update.symbol), (270, spec.format_price(price))]
                    if qty:
                        entry.append((271, spec.format_qty(qty)))
                    entries.append(entry)
        if sub.trades:
            for trade in trades:
                if trade.symbol in sub.symbols:
                    spec = self.engine.venue.specs[trade.symbol]
                    entries.append([(279, "0"), (269, "2"), (55, trade.symbol), (270, spec.format_price(trade.price_ticks)),
                                    (271, spec.format_qty(trade.qty_steps))])
        return entries


def _group_values(parts: Validated, count_tag: int, tag: int) -> list[str]:
    for field_tag, value in parts.body:
        if field_tag == count_tag and not isinstance(value, str):
            return [v for entry in value for t, v in entry if t == tag and isinstance(v, str)]
    return []
