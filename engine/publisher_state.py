"""The publisher's derived state in one file, so a clean restart replays only the journal's tail.

Rebuilding trades, klines and per-account histories from genesis costs about as
much as replaying the whole journal (bench/publisher_bench.py), and no shorter
tail is guaranteed to hold an account's newest ``HISTORY_KEEP`` fills. So the
shared publisher writes what it derived when it stops
(``<journal dir>/publisher.state``), naming the exact journal position it covers:
the last record it read from disk (seq and hash) plus the number of events it has
applied since from the live subscription. At start ``Publisher.rebuild`` loads it,
positions a ``JournalReader`` there and replays only what follows. A file from
another journal is refused (it names the journal's genesis record hash, and the
reader checks the hash chain from its position on). A daemon that crashed uses the last clean stop's file and replays more;
a missing, damaged or foreign file means a replay from genesis. Either way the
result is the same state.

Trust: the file is a cache of replay, like a snapshot, and carries no signature.
Its venue is what the checkpoint replica goes on to hash and the daemon signs, and
what the adapters show as balances, so a loaded state is used only once ``vouch``
has carried it to the first signed checkpoint covering its position and found the
state hash that checkpoint signs; otherwise it is discarded for a replay from
genesis. Limit: the derived part (trades, klines, histories) is in no checkpoint's
hash, so a forger who leaves the venue alone could still show false histories;
they are never signed and never move money.

Layout: a JSON header line ``{"format", "seq", "hash", "skip", "events",
"funds_seq", "venue_bytes", "derived_bytes", "blake2b"}``, then the shadow venue
exactly as ``snapshot.dump`` writes it, then the derived data as JSON arrays.
Written tmp -> fsync -> rename -> fsync dir, like snapshots.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine import durable, signing, snapshot
from engine.audit import CHECKPOINT, canonical, collector_paused, is_control
from engine.codec import CodecError, decode_rows
from engine.config import Config
from engine.journal import HEADER, JournalCorrupt, JournalReader, Record, record_hash, segments
from engine.messages import OrderView

if TYPE_CHECKING:
    from engine.publisher import Publisher
    from engine.runtime import Engine

log = logging.getLogger("satchel.publisher")

STATE_FILE: Final = "publisher.state"
STATE_FORMAT: Final = 2  # 2: a withdrawal record's id is its withdrawal id


class StateInvalid(ValueError):
    """The state file cannot be used; the message says why (the caller replays from genesis)."""


def _row(cls: type) -> operator.attrgetter[Any]:
    return operator.attrgetter(*(f.name for f in attrs.fields(cls)))


def save(publisher: Publisher, directory: Path) -> Path:
    """Write ``publisher``'s state at its current journal position, durably."""
    with collector_paused():  # millions of short-lived rows: collection passes would dominate
        return _save(publisher, directory)


def _save(publisher: Publisher, directory: Path) -> Path:
    from engine.updates import Candle, FillInfo, FundsRecord, TradeRecord

    trade_row, candle_row, view_row = _row(TradeRecord), _row(Candle), _row(OrderView)
    info_row, funds_row = _row(FillInfo), _row(FundsRecord)
    markets = {
        symbol: [data.update_id, list(data.top), [trade_row(t) for t in data.trades],
                 {name: [candle_row(c) for c in candles] for name, candles in data.klines.items()}]
        for symbol, data in publisher._data.items()
    }
    histories = [
        [account_id,
         [(r.account_id, r.symbol, r.order_id, r.client_id, r.side, info_row(r.fill), r.ts_us) for r in h.fills],
         [view_row(v) for v in h.orders], [funds_row(r) for r in h.funds]]
        for account_id, h in publisher._histories.items()
    ]
    venue = snapshot.dump(publisher.venue)
    derived = orjson.dumps([markets, histories])
    seq, prev_hash = publisher._base
    header = orjson.dumps({
        "format": STATE_FORMAT, "genesis": genesis_hash(directory), "seq": seq, "hash": prev_hash.hex(),
        "skip": publisher._followed,
        "events": publisher.events, "funds_seq": publisher._funds_seq, "venue_bytes": len(venue),
        "derived_bytes": len(derived), "blake2b": _digest(venue, derived),
    }, option=orjson.OPT_SORT_KEYS)
    final = directory / STATE_FILE
    # Two writers share this file: the daemon's publisher at a clean stop and the checkpoint
    # replica's process with each snapshot. Each writes its own tmp file, and an older
    # position never replaces a newer one (more tail to replay next time, never less truth).
    tmp = final.with_name(f"{STATE_FILE}.{os.getpid()}.tmp")
    durable.write_synced(tmp, (header, b"\n", venue, b"\n", derived))
    if _events_in(final) > publisher.events:
        tmp.unlink()
        return final
    durable.install(tmp, final)
    return final


def save_at_stop(publisher: Publisher, engine: Engine) -> None:
    """The shared publisher's state for the next start (nothing applies batches to it any more)."""
    started = time.monotonic()
    try:
        path = save(publisher, engine.directory)
    except OSError as exc:  # the next start replays from genesis instead; never fail a shutdown
        log.warning("could not save the publisher state: %s", exc)
        return
    log.info("publisher state saved to %s at journal seq %d in %.2fs", path.name, publisher.applied_seq,
             time.monotonic() - started)


def _events_in(path: Path) -> int:
    """How many journal events (from genesis) a state file covers; -1 when there is none or it is unreadable."""
    try:
        with open(path, "rb") as f:
            return int(orjson.loads(f.readline())["events"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def resume(engine: Engine, upto: int) -> tuple[Publisher, JournalReader] | None:
    """The saved state, once a signed checkpoint vouches for it, and a reader where it stands; None to replay
    from genesis (no file, or one that cannot be used or trusted). Blocking: run in a worker thread."""
    from engine.publisher import PositionMismatch

    try:
        loaded = load(engine.directory, engine.config)
        if loaded is None:
            return None
        publisher, seq, prev_hash, skip = loaded
        reader = vouch(publisher, engine.directory, engine.key.public, (seq, prev_hash, skip), upto)
    except (StateInvalid, JournalCorrupt, PositionMismatch) as exc:
        log.warning("publisher state unusable (%s); replaying the journal from genesis", exc)
        return None
    return publisher, reader


def load(directory: Path, config: Config) -> tuple[Publisher, int, bytes, int] | None:
    """(publisher, seq, hash, skip) from the state file, or None when there is none; StateInvalid if unusable."""
    from engine.publisher import Publisher
    from engine.publisher_reads import Histories
    from engine.updates import Candle, FillInfo, FillRecord, FundsRecord, TradeRecord

    path = directory / STATE_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    try:
        newline = data.index(b"\n")
        header = orjson.loads(data[:newline])
        if header.get("format") != STATE_FORMAT:
            raise StateInvalid(f"format {header.get('format')} is not {STATE_FORMAT}")
        if header.get("genesis") != genesis_hash(directory):
            raise StateInvalid("it was written for another journal (genesis record differs)")
        start = newline + 1
        venue_body = data[start:start + header["venue_bytes"]]
        start += header["venue_bytes"] + 1
        derived = data[start:start + header["derived_bytes"]]
        if len(derived) != header["derived_bytes"] or _digest(venue_body, derived) != header["blake2b"]:
            raise StateInvalid("body does not match its digest (damaged or cut short)")
        publisher = Publisher(snapshot.load(config, venue_body))
        markets, histories = orjson.loads(derived)
        for symbol, (update_id, top, trades, klines) in markets.items():
            market = publisher._data[symbol]
            market.update_id, market.top = update_id, tuple(top)
            market.trades.extend(TradeRecord(*row) for row in trades)
            for name, candles in klines.items():
                market.klines[name].extend(Candle(*row) for row in candles)
        for account_id, fills, orders, funds in histories:
            history = publisher._histories[account_id] = Histories()
            history.fills.extend(FillRecord(a, s, o, c, side, FillInfo(*info), ts) for a, s, o, c, side, info, ts in fills)
            history.orders.extend(OrderView(*row) for row in orders)
            history.funds.extend(FundsRecord(*row) for row in funds)
        publisher.events, publisher._funds_seq = header["events"], header["funds_seq"]
        return publisher, int(header["seq"]), bytes.fromhex(header["hash"]), int(header["skip"])
    except StateInvalid:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise StateInvalid(f"malformed: {exc}") from None


def vouch(publisher: Publisher, directory: Path, public: Ed25519PublicKey, position: tuple[int, bytes, int],
          upto: int) -> JournalReader:
    """Trust a loaded state only as far as the journal's signatures do; return a reader at where it now stands.

    As start-up does with a snapshot: the saved venue is a cache of replay, so it is
    used only if a signed checkpoint vouches for it. ``position`` is what ``load``
    read: (seq, hash, events applied after seq). The first verified checkpoint in
    the journal (through ``upto``, a durable seq) that covers that position or a later
    one names a state hash; the state is replayed to that checkpoint's seq and must
    hash to it. In the normal cases that is a short step: the replica saves its state
    at a seq its next checkpoint covers, and a clean stop ends in a checkpoint. A
    forged file (hashes recomputed) hashes differently, and one no checkpoint covers
    yet (a crash right after it was written) is not trusted: StateInvalid, and the
    caller replays from genesis.
    """
    at, at_hash, covered, state_hash = _first_covering_checkpoint(directory, public, position, upto)
    reader = JournalReader(directory, at, at_hash)
    publisher.catch_up(reader, covered, quiet=True)
    if publisher.venue.state_hash() != state_hash:
        raise StateInvalid(f"carried to seq {covered}, it is not the state the journal's checkpoint signs there")
    return reader


def _first_covering_checkpoint(directory: Path, public: Ed25519PublicKey, position: tuple[int, bytes, int],
                               upto: int) -> tuple[int, bytes, int, str]:
    """(seq and hash of the record the state ends at, seq and state hash of the first checkpoint covering it)."""
    at, at_hash, skip = position
    hashes = {at: at_hash}  # records from the state's end on: the checkpoint's chain hash is checked against them
    for record in JournalReader(directory, at, at_hash).read(upto):
        if skip:  # events the state already holds: find the record they end with
            if not is_control(record.payload):
                try:
                    skip -= len(decode_rows(record.payload))
                except CodecError as exc:
                    raise StateInvalid(f"record {record.seq} does not decode: {exc}") from None
                if skip < 0:
                    raise StateInvalid(f"its event count ends inside record {record.seq}")
                at, at_hash = record.seq, record.hash
                hashes = {at: at_hash}
            continue
        hashes[record.seq] = record.hash
        body = _signed_checkpoint(record, public)
        if body is None or type(body.get("seq")) is not int or body["seq"] < at:
            continue
        covered = body["seq"]
        if covered not in hashes or hashes[covered].hex() != body.get("chain_hash"):
            raise StateInvalid(f"the checkpoint at seq {record.seq} does not name the journal's record {covered}")
        return at, at_hash, covered, str(body.get("state_hash"))
    if skip:
        raise StateInvalid(f"it holds {skip} more events than the journal through seq {upto}")
    raise StateInvalid(f"no signed checkpoint through seq {upto} covers its position (seq {at})")


def _signed_checkpoint(record: Record, public: Ed25519PublicKey) -> dict[str, Any] | None:
    """A checkpoint record's body if its signature verifies with ``public``; None for any other control record."""
    if not is_control(record.payload):
        return None
    try:
        doc = orjson.loads(record.payload)
    except orjson.JSONDecodeError:
        raise StateInvalid(f"control record {record.seq} is not JSON") from None
    if type(doc) is not dict or doc.get("type") != CHECKPOINT:
        return None
    body, signature = doc.get("body"), doc.get("signature")
    if type(body) is not dict or type(signature) is not str or not signing.verify(public, CHECKPOINT, canonical(body), signature):
        raise StateInvalid(f"the checkpoint at seq {record.seq} does not verify with the venue key")
    return body


def genesis_hash(directory: Path) -> str:
    """The hash of the journal's first record: which journal a state file belongs to."""
    files = segments(directory)
    if not files:
        return ""
    with open(files[0], "rb") as f:  # only the first record, not the whole segment
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            return ""
        length, _, seq, prev_hash = HEADER.unpack(head)
        return record_hash(seq, prev_hash, f.read(length)).hex()


def _digest(venue: bytes, derived: bytes) -> str:
    h = hashlib.blake2b(venue, digest_size=32)
    h.update(derived)
    return h.hexdigest()


