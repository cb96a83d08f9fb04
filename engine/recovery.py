"""Start-up recovery: the newest snapshot the journal vouches for, plus a replay of the journal after it.

Every record's CRC, chain link and signature is checked on the way
(``audit.Replayer``); a torn tail is cut and any other damage is a
``JournalCorrupt`` naming segment, offset and seq (``engine/journal.py``).
Invariants:

* A snapshot is a cache of replay: it is used only when a signed checkpoint in the
  journal names its seq and state hash, none contradicts it, and the journal's
  record at its seq has the chain hash it names. Otherwise recovery warns and
  replays from genesis; the result is the same state, only slower.
* The first record (genesis) pins the journal format, the venue config, the plugin
  set and the venue's public key. A start with any other is a ``StartupError``
  that names what differs, and a journal that has history never gets a new key.
* The recovered venue passes ``Venue.check_invariants()``, or the start is refused.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pluggy

from engine import audit, signing, snapshot
from engine.audit import JOURNAL_FORMAT, READABLE_FORMATS, AuditError, Replayer
from engine.config import Config, _converter, pinned_differences
from engine.journal import ZERO_HASH, JournalCorrupt, Record, read_records, segments
from engine.journal_writer import JournalWriter
from engine.plugin_api import manifest
from engine.venue import InvariantViolation, Venue

log = logging.getLogger("satchel.engine")


class StartupError(Exception):
    """The engine cannot start from this journal and config; the message says why."""


class _SnapshotMismatch(Exception):
    """The newest snapshot does not belong to this journal; recovery falls back to genesis."""


def recover(
    config: Config, directory: Path, pm: pluggy.PluginManager, venue: Venue,
) -> tuple[Venue, signing.VenueKey, JournalWriter]:
    """The venue the journal in ``directory`` holds, the venue's signing key, and a writer after the last record.

    ``venue`` is the empty venue of ``config`` a replay from genesis fills. A new
    journal gets its genesis record here. The caller holds the directory's lock.
    """
    try:
        # a journal that has history was signed with a key of its own: never make a new one for it
        key = signing.load_or_create(signing.key_path(directory, config.journal.signing_key),
                                     create=not segments(directory))
    except signing.KeyError_ as exc:
        raise StartupError(f"journal.signing_key: {exc}") from None
    started = time.monotonic()
    with audit.collector_paused():
        found = snapshot.newest_valid(directory, config)
        try:
            venue, replayer = _replay(config, directory, pm, key, venue, found)
        except _SnapshotMismatch as exc:
            log.warning("%s; replaying from genesis instead", exc)
            venue, replayer = _replay(config, directory, pm, key, Venue(config), None)
    try:
        venue.check_invariants()
    except InvariantViolation as exc:
        raise StartupError(f"the journal replays to a state that breaks an invariant: {exc}") from None
    last = replayer.last
    seq, last_hash = (last.seq, last.hash) if last is not None else (0, ZERO_HASH)
    writer = JournalWriter(directory, config.journal.segment_bytes, seq, last_hash)
    if seq == 0:
        writer.append([_genesis(config, pm, key)])
    base = f" from snapshot at seq {found[0].seq}" if found is not None and replayer.apply_from else ""
    log.info("recovered %d journal records (%d events replayed%s) in %.2fs",
             writer.seq, replayer.events, base, time.monotonic() - started)
    return venue, key, writer


def _replay(
    config: Config, directory: Path, pm: pluggy.PluginManager, key: signing.VenueKey, venue: Venue,
    found: tuple[snapshot.SnapshotHeader, Venue] | None,
) -> tuple[Venue, Replayer]:
    base = 0
    if found is not None:
        header, venue = found
        base = header.seq
    # what the journal's signed checkpoints say the state at the snapshot's seq is: a snapshot is
    # a cache of replay, so it is used only when one vouches for it and none contradicts it
    signed: set[str] = set()

    def vouch(_record: Record, body: dict[str, Any]) -> None:
        if body.get("seq") == base:
            signed.add(str(body.get("state_hash")))

    replayer = Replayer(venue, key.public, apply_from=base, on_checkpoint=vouch if found else None)
    progress = audit.Progress("recovery", audit.journal_bytes(directory), min_s=2.0)
    done = 0
    try:
        for record in read_records(directory):
            if record.seq == 1:
                _check_genesis(audit.genesis_of(record), config, directory, pm, key)
            replayer.feed(record)
            if record.seq == base and found is not None and record.hash.hex() != found[0].chain_hash:
                raise _SnapshotMismatch(f"snapshot {found[0].path.name} does not match the journal at seq {base}")
            done += len(record.payload) + 48
            if not record.seq & 1023:
                progress.update(done, record.seq)
    except AuditError as exc:
        if exc.segment is None:
            raise StartupError(str(exc)) from None
        raise JournalCorrupt(exc.segment, exc.offset, exc.seq, exc.problem) from None
    if progress.shown:
        progress.update(done, replayer.records, final=True)
    if found is not None and (replayer.last is None or replayer.last.seq < base):
        raise _SnapshotMismatch(f"snapshot {found[0].path.name} is ahead of the journal")
    if found is not None and signed != {found[0].state_hash}:
        problem = "no signed checkpoint covers it" if not signed else "its state hash is not the one the journal signed"
        raise _SnapshotMismatch(f"snapshot {found[0].path.name} is not vouched for: {problem}")
    return venue, replayer


def _genesis(config: Config, pm: pluggy.PluginManager, key: signing.VenueKey) -> bytes:
    return orjson.dumps({
        "type": audit.GENESIS,
        "format": JOURNAL_FORMAT,
        "venue": config.venue.name,
        "config_hash": config.fingerprint(),
        "config": _converter.unstructure(config),
        "plugins": manifest(pm),
        "venue_key": key.public_b64,
    }, option=orjson.OPT_SORT_KEYS)


def _check_genesis(
    genesis: dict[str, Any], config: Config, directory: Path, pm: pluggy.PluginManager, key: signing.VenueKey,
) -> None:
    if genesis.get("format") not in READABLE_FORMATS:
        raise StartupError(f"journal format {genesis.get('format')} is not supported "
                           f"(this version reads {' and '.join(map(str, READABLE_FORMATS))})")
    if genesis.get("venue_key") != key.public_b64:
        raise StartupError(
            f"the venue signing key ({key.public_b64}) is not the one pinned in the journal "
            f"({genesis.get('venue_key')}); start with the journal's key"
        )
    if genesis.get("config_hash") != config.fingerprint():
        changed = pinned_differences(genesis.get("config"), _converter.unstructure(config))
        shown = "; ".join(changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise StartupError(
            f"the config differs from the one pinned in the journal at {directory}: "
            f"{shown or 'the journal does not record which setting'}; "
            "start with the config the journal was written with, or a new journal dir"
        )
    if genesis.get("plugins") != manifest(pm):
        raise StartupError(f"enabled plugins {manifest(pm)} differ from the journal's {genesis.get('plugins')}")
