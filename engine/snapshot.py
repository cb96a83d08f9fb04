"""Snapshots: the venue's journaled state at one journal position, in one file.

A snapshot is a cache of replay, never a source of truth. Its file
``snapshots/<seq, 20 digits>.snap`` is one JSON header line then the body::

    {"format":2,"seq":S,"chain_hash":H,"state_hash":X,"time_us":T,"body_blake2b":B,"body_bytes":N}\\n
    [head, accounts, markets]

``seq`` and ``chain_hash`` name the journal record it covers; ``state_hash`` is
``Venue.state_hash()`` at that record and is also signed in the checkpoint the
journal writes for it. Loading checks the body digest, rebuilds the venue, and
recomputes the state hash: a snapshot that does not reproduce its own hash is
skipped (with a warning) in favour of an older one or of replay from genesis.

Files are written tmp -> fsync -> rename -> fsync dir, so a crash leaves either the
old set or the new file whole. The newest ``KEEP`` snapshots are kept.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from engine import durable, withdrawals
from engine.account import Account, OpenOrder
from engine.book import Order
from engine.config import Config
from engine.messages import BID
from engine.venue import Venue, account_state, market_state

log = logging.getLogger("satchel.snapshot")

SNAPSHOT_FORMAT: Final = 2  # 2: the head holds next_withdrawal_id
SNAPSHOT_DIR: Final = "snapshots"
SUFFIX: Final = ".snap"
KEEP: Final = 3


class SnapshotInvalid(ValueError):
    """A snapshot file that cannot be used; the message names the file and the problem."""


@attrs.frozen
class SnapshotHeader:
    seq: int
    chain_hash: str
    state_hash: str
    time_us: int
    path: Path


def dump(venue: Venue) -> bytes:
    """The body: every journaled piece of venue state, in state-hash order."""
    head = [venue.next_account_id, venue.next_order_id, venue.next_withdrawal_id]
    accounts = [account_state(venue.accounts[i]) for i in sorted(venue.accounts)]
    markets = [market_state(venue.markets[s]) for s in sorted(venue.markets)]
    return orjson.dumps([head, accounts, markets])


def load(config: Config, body: bytes) -> Venue:
    """Rebuild a venue from a body produced by ``dump``."""
    head, accounts, markets = orjson.loads(body)
    venue = Venue(config)
    venue.next_account_id, venue.next_order_id, venue.next_withdrawal_id = head
    for row in accounts:
        account_id, parent_id, country, category, created_us, keys, balances, locked, net, orders = row[:10]
        account = Account(account_id, parent_id, country, category, created_us)
        account.api_keys = list(keys)
        account.balances = dict(balances)
        account.locked = dict(locked)
        account.net_deposits = dict(net)
        for order_id, symbol, side, price, lock, client_id in orders:
            spec = venue.specs[symbol]
            asset = spec.quote if side == BID else spec.base
            account.orders[order_id] = OpenOrder(symbol, side, price, lock, client_id, asset)
            if client_id >= 0:
                account.client_ids[client_id] = order_id
        venue.accounts[account_id] = account
        if len(row) > 10:  # withdrawal requests (engine/withdrawals.py), present only when there are any
            _restore_withdrawals(venue, account, row[10])
        for key in keys:
            venue.api_keys[key] = account_id
        for asset, atoms in account.net_deposits.items():  # every account's balances together (conservation)
            venue.supply[asset] = venue.supply.get(asset, 0) + atoms
    for symbol, state, last_price, next_trade_id, levels in markets:
        market = venue.markets[symbol]
        market.state, market.last_price, market.next_trade_id = state, last_price, next_trade_id
        book = market.book
        for side, price, orders in levels:
            for order_id, account_id, qty, remaining, executed_quote, client_id, post_only, stp, created_us in orders:
                book.rest(Order(order_id, account_id, side, price, qty, remaining, executed_quote,
                                client_id, post_only, stp, created_us))
    return venue


def _restore_withdrawals(venue: Venue, account: Account, rows: list[list[Any]]) -> None:
    withdrawals.restore(account, rows)
    for request_id in account.withdrawals:
        venue.withdrawal_owner[request_id] = account.account_id
        venue.next_withdrawal_id = max(venue.next_withdrawal_id, request_id + 1)


def write(directory: Path, venue: Venue, seq: int, chain_hash: bytes, state_hash: str, time_us: int) -> Path:
    """Write a snapshot of ``venue`` (which must be exactly the state at ``seq``) durably."""
    folder = directory / SNAPSHOT_DIR
    folder.mkdir(exist_ok=True)
    body = dump(venue)
    header = orjson.dumps({
        "format": SNAPSHOT_FORMAT, "seq": seq, "chain_hash": chain_hash.hex(), "state_hash": state_hash,
        "time_us": time_us, "body_blake2b": hashlib.blake2b(body, digest_size=32).hexdigest(), "body_bytes": len(body),
    }, option=orjson.OPT_SORT_KEYS)
    final = folder / f"{seq:020d}{SUFFIX}"
    tmp = final.with_suffix(".tmp")
    durable.write_synced(tmp, (header, b"\n", body))
    durable.install(tmp, final)
    for old in snapshot_files(directory)[:-KEEP]:
        old.unlink()
    return final


def snapshot_files(directory: Path) -> list[Path]:
    folder = directory / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{SUFFIX}") if p.stem.isdigit())


def read(path: Path, config: Config) -> tuple[SnapshotHeader, Venue]:
    """Load and self-check one snapshot; SnapshotInvalid says why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotInvalid(f"{path.name}: cannot read: {exc}") from None
    newline = data.find(b"\n")
    try:
        meta: dict[str, Any] = orjson.loads(data[:newline])
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotInvalid(f"{path.name}: format {meta.get('format')} is not {SNAPSHOT_FORMAT}")
        header = SnapshotHeader(int(meta["seq"]), str(meta["chain_hash"]), str(meta["state_hash"]),
                                int(meta["time_us"]), path)
        body = data[newline + 1:]
        if len(body) != meta["body_bytes"] or hashlib.blake2b(body, digest_size=32).hexdigest() != meta["body_blake2b"]:
            raise SnapshotInvalid(f"{path.name}: body does not match its digest (damaged or cut short)")
        venue = load(config, body)
        if header.seq != int(path.stem):
            raise SnapshotInvalid(f"{path.name}: header names seq {header.seq}")
        actual = venue.state_hash()  # hashing sorts ids: a body of the wrong types fails here too
    except SnapshotInvalid:
        raise
    # a snapshot is a cache read from disk: whatever shape it has, failing to use it means skipping it
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise SnapshotInvalid(f"{path.name}: malformed: {exc!r}") from None
    if actual != header.state_hash:
        raise SnapshotInvalid(f"{path.name}: rebuilt state hash {actual[:16]} != recorded {header.state_hash[:16]}")
    return header, venue


def newest_valid(directory: Path, config: Config, below: int | None = None) -> tuple[SnapshotHeader, Venue] | None:
    """The newest snapshot that loads and checks out (optionally only those at seq < ``below``)."""
    for path in reversed(snapshot_files(directory)):
        if below is not None and int(path.stem) >= below:
            continue
        try:
            return read(path, config)
        except SnapshotInvalid as exc:
            log.warning("skipping snapshot: %s", exc)
    return None
