"""Reading history back: control records, replay, offline verification, dumps, progress.

A record's payload is either a batch of events (a JSON array, see ``codec``) or a
*control record* (a JSON object with sorted keys and a ``type``):

* ``genesis`` (always seq 1): journal format, venue name, the pinned config and
  its fingerprint, the plugin set, and the venue's public key.
* ``checkpoint``: ``{"type":"checkpoint","body":{...},"signature":b64}``. The body
  names the record it covers (``seq``, ``chain_hash`` = that record's hash), the
  venue's ``state_hash`` after applying it, the wall time, why it was written and,
  for a proof-of-reserves publication, the Merkle sum root and totals. The
  signature is Ed25519 over the canonical body (sorted-key orjson) with the
  domain ``satchel/checkpoint/v1``.

``Replayer`` is the loop that recovery and ``satchel verify`` drive: it checks
every checkpoint's signature and chain hash as it passes, and applies event
batches to a ``Venue``. The checkpointer's replica does not use it: it follows
the journal through ``Publisher.catch_up`` (engine/replica.py), whose
``JournalReader`` checks every record's CRC, sequence and chain hash but passes
over checkpoint records unverified; only a saved replica state is vouched for
by a checkpoint signature (``publisher_state.vouch``).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine import por, signing, snapshot
from engine.codec import CodecError, decode_events, decode_rows, to_dict
from engine.config import Config, ConfigError, parse_config
from engine.journal import HEADER, JournalCorrupt, Record, read_records, records_end, segments
from engine.messages import FEE_ACCOUNT_ID
from engine.units import format_units
from engine.venue import InvariantViolation, Venue

JOURNAL_FORMAT: Final = 3  # what new journals are: 3 added Withdrawn.withdrawal_id
READABLE_FORMATS: Final = (2, 3)  # format 2's rows are read as format 3 (codec._upgrade_format_2)
CHECKPOINT: Final = "checkpoint"
GENESIS: Final = "genesis"
CHAIN_WINDOW: Final = 1 << 20  # record hashes kept for checking the checkpoints that name them


class AuditError(Exception):
    """History that does not check out; names segment, offset and seq where it can."""

    def __init__(self, message: str, *, segment: Path | None = None, offset: int = -1, seq: int = -1) -> None:
        where = f" in {segment.name} at offset {offset} (seq {seq})" if segment is not None else ""
        super().__init__(f"{message}{where}")
        self.problem = message
        self.segment = segment
        self.offset = offset
        self.seq = seq

    @classmethod
    def at(cls, record: Record | None, message: str) -> AuditError:
        if record is None:
            return cls(message)
        return cls(message, segment=record.segment, offset=record.offset, seq=record.seq)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a replay builds a large, long-lived state.

    Replay allocates millions of objects that all stay alive; the collector's
    generation-2 passes over that growing heap cost more than half of replay time
    (measured: 11.7 -> 21 us per event with collection on). Replay creates no
    reference cycles worth collecting, so collection resumes afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def is_control(payload: bytes) -> bool:
    return payload[:1] == b"{"


def canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def checkpoint_payload(key: signing.VenueKey, body: dict[str, Any]) -> bytes:
    body = {"type": CHECKPOINT, **body}
    return canonical({"type": CHECKPOINT, "body": body, "signature": key.sign(CHECKPOINT, canonical(body))})


def checkpoint_body(seq: int, chain_hash: bytes, state_hash: str, time_us: int, reason: str,
                    por: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"seq": seq, "chain_hash": chain_hash.hex(), "state_hash": state_hash,
                            "time_us": time_us, "reason": reason}
    if por is not None:
        body["por"] = por
    return body


def genesis_config(genesis: dict[str, Any]) -> Config:
    """The config a journal was written with, rebuilt from its genesis record."""
    try:
        config = parse_config(genesis["config"])
    except (ConfigError, KeyError) as exc:
        raise AuditError(f"genesis record's config is unusable: {exc}") from None
    if config.fingerprint() != genesis.get("config_hash"):
        raise AuditError("genesis record's config does not match its pinned fingerprint")
    return config


def read_genesis(directory: Path) -> dict[str, Any]:
    files = segments(directory)
    if not files:
        raise AuditError(f"no journal segments in {directory}")
    for record in read_records(directory, repair=False, upto=1):
        genesis = genesis_of(record)
        if genesis.get("format") not in READABLE_FORMATS:
            raise AuditError.at(record, f"record 1 is not a genesis record of format {' or '.join(map(str, READABLE_FORMATS))}")
        return genesis
    raise AuditError(f"journal in {directory} is empty")


def genesis_of(record: Record) -> dict[str, Any]:
    """Record 1's genesis object, or an AuditError naming the record when it is not one."""
    try:
        genesis = orjson.loads(record.payload) if is_control(record.payload) else None
    except orjson.JSONDecodeError:
        genesis = None
    if type(genesis) is not dict or genesis.get("type") != GENESIS:
        raise AuditError.at(record, "record 1 is not a genesis record")
    return genesis


class Replayer:
    """Feeds records, in order, to a venue; checks control records on the way.

    ``apply_from``: event batches at seq <= this are only chain-checked (they are
    already in the venue, e.g. from a snapshot). ``on_checkpoint`` sees every
    verified checkpoint body (verify uses it to compare state hashes).
    """

    def __init__(self, venue: Venue | None, public: Ed25519PublicKey | None, *, apply_from: int = 0,
                 on_checkpoint: Callable[[Record, dict[str, Any]], None] | None = None) -> None:
        self.venue = venue
        self.public = public
        self.apply_from = apply_from
        self.on_checkpoint = on_checkpoint
        self.hashes: dict[int, bytes] = {}
        self.records = 0
        self.events = 0
        self.checkpoints = 0
        self.last: Record | None = None

    def feed(self, record: Record) -> None:
        payload = record.payload
        if is_control(payload):
            self._control(record)
        elif record.seq > self.apply_from and self.venue is not None:
            try:
                rows = decode_rows(payload)  # checked as decode_events checks, without building events
            except CodecError as exc:
                raise AuditError(str(exc), segment=record.segment, offset=record.offset, seq=record.seq) from None
            try:
                self.venue.replay_rows(rows)
            except Exception as exc:  # a well-framed, well-chained record that is not a possible history
                raise AuditError.at(record, f"record does not replay ({type(exc).__name__}: {exc})") from exc
            self.events += len(rows)
        hashes = self.hashes
        hashes[record.seq] = record.hash
        if len(hashes) > CHAIN_WINDOW:
            del hashes[next(iter(hashes))]
        self.records += 1
        self.last = record

    def _control(self, record: Record) -> None:
        try:
            doc = orjson.loads(record.payload)
        except orjson.JSONDecodeError as exc:
            raise AuditError(f"control record is not JSON: {exc}", segment=record.segment,
                             offset=record.offset, seq=record.seq) from None
        kind = doc.get("type")
        if kind == GENESIS:
            if record.seq != 1:
                raise AuditError("a genesis record after seq 1", segment=record.segment, offset=record.offset, seq=record.seq)
            return
        if kind != CHECKPOINT:
            raise AuditError(f"unknown control record type {kind!r}", segment=record.segment,
                             offset=record.offset, seq=record.seq)
        body, signature = doc.get("body"), doc.get("signature")
        if type(body) is not dict or type(signature) is not str:
            raise AuditError.at(record, "checkpoint record lacks its body or signature")
        if self.public is not None and not signing.verify(self.public, CHECKPOINT, canonical(body), signature):
            raise AuditError.at(record, "checkpoint signature does not verify with the venue key")
        covered = body.get("seq")
        if type(covered) is not int or not 0 < covered < record.seq:
            raise AuditError.at(record, f"checkpoint names seq {covered!r}, which is not an earlier record")
        known = self.hashes.get(covered)
        if known is None:
            raise AuditError.at(record, f"checkpoint names seq {covered}, older than the {CHAIN_WINDOW}-record audit window")
        if known.hex() != body.get("chain_hash"):
            raise AuditError.at(record, f"checkpoint's chain hash for seq {covered} differs from the journal's")
        # hashes up to the covered seq are no longer needed: later checkpoints cover later seqs
        for seq in [s for s in self.hashes if s < covered]:
            del self.hashes[seq]
        self.checkpoints += 1
        if self.on_checkpoint is not None:
            self.on_checkpoint(record, body)


# --- progress --------------------------------------------------------------------------


class Progress:
    """Records/s and ETA for long replays: a redrawn bar on a terminal, plain lines otherwise."""

    def __init__(self, label: str, total_bytes: int, stream: IO[str] | None = None, *, min_s: float = 1.0) -> None:
        self.label = label
        self.total = max(total_bytes, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.last = time.monotonic()
        self.min_s = min_s if not self.tty else 0.2
        self.shown = False

    def update(self, done_bytes: int, records: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.min_s:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        frac = min(done_bytes / self.total, 1.0)
        rate = records / elapsed
        eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
        if self.tty:
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {records:,} records {rate:,.0f}/s ETA {eta:4.0f}s")
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {frac:.1%} {records} records {rate:.0f} records/s eta {eta:.0f}s\n")
        self.stream.flush()
        self.shown = True


def journal_bytes(directory: Path) -> int:
    """Bytes of records (progress's 100%): a pre-zeroed last segment's zero tail is not counted."""
    files = segments(directory)
    if not files:
        return 0
    return sum(p.stat().st_size for p in files[:-1]) + records_end(files[-1])


def replayed(directory: Path, replayer: Replayer, *, repair: bool, progress: Progress | None = None,
             upto: int | None = None) -> Iterator[Record]:
    """Feed every record to ``replayer``, yielding each once it is fed; report progress every 1024 records.

    The final progress line is drawn only when the caller reads to the end (not when it stops on a problem).
    """
    done = 0
    for record in read_records(directory, repair=repair, upto=upto):
        replayer.feed(record)
        done += len(record.payload) + HEADER.size
        if progress is not None and not replayer.records & 1023:
            progress.update(done, replayer.records)
        yield record
    if progress is not None and (progress.shown or progress.tty):
        progress.update(done, replayer.records, final=True)


def replay_records(directory: Path, replayer: Replayer, *, repair: bool, progress: Progress | None = None,
                   upto: int | None = None) -> None:
    for _ in replayed(directory, replayer, repair=repair, progress=progress, upto=upto):
        pass


# --- verify -------------------------------------------------------------------------------


def liabilities(venue: Venue) -> dict[str, int]:
    """Per-asset total of every user account's balance (the fee account is the venue's own)."""
    totals = dict.fromkeys(sorted(venue.assets), 0)
    for account_id, account in venue.accounts.items():
        if account_id == FEE_ACCOUNT_ID:
            continue
        for asset, atoms in account.balances.items():
            totals[asset] += atoms
    return totals


def por_problem(claim: Any, owed: dict[str, int], accounts: int) -> str | None:
    """Why a signed proof-of-reserves claim does not state the replayed liabilities of every asset and
    the number of user accounts (None when it does). ``owed`` is ``liabilities``, every asset of the venue."""
    if type(claim) is not dict:
        return "the claim is not an object"
    if claim.get("scheme") not in por.SCHEMES:
        return f"unknown scheme {claim.get('scheme')!r}"
    assets, expected = claim.get("assets"), list(owed)
    if assets != expected:
        listed = assets if type(assets) is list else []
        missing = [a for a in expected if a not in listed]
        unknown = [a for a in listed if not (type(a) is str and a in owed)]
        return (f"its assets {assets!r} are not the venue's {expected}"
                + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
    totals = claim.get("totals")
    if totals != [str(owed[a]) for a in expected]:
        shown = totals if type(totals) is list and len(totals) == len(expected) else None
        if shown is None:
            return f"its totals {totals!r} are not one amount per asset"
        wrong = [f"{a} {t!r} (replay gives {owed[a]})" for a, t in zip(expected, shown, strict=True) if t != str(owed[a])]
        return "its totals differ from the replayed liabilities: " + ", ".join(wrong)
    if claim.get("accounts") != accounts:
        return f"it counts {claim.get('accounts')!r} accounts, the journal has {accounts}"
    return None


def verify_journal(directory: Path, pubkey: str | None = None, *, progress: bool = True,
                   stream: IO[str] | None = None) -> dict[str, Any]:
    """Check a journal offline (see ``_verify``); any damage is an AuditError naming its position."""
    try:
        with collector_paused():
            return _verify(directory, pubkey, progress, stream)
    except JournalCorrupt as exc:
        raise AuditError(f"journal corrupt: {exc.problem}",
                         segment=exc.segment, offset=exc.offset, seq=exc.seq) from None


# what a checkpoint or snapshot states about the journal at one seq: (kind, the claim, the
# checkpoint record that makes it, or None for a snapshot)
Claim = tuple[str, dict[str, Any], Record | None]


def _verify(directory: Path, pubkey: str | None, progress: bool, stream: IO[str] | None) -> dict[str, Any]:
    """Check a journal offline and rebuild its state; raise AuditError at the first bad position.

    Two passes: the first checks CRCs, the chain and every checkpoint signature and
    collects the positions checkpoints and snapshots claim; the second replays from
    genesis and compares the state hash (and PoR totals) at each of them. A claim at a
    seq the replay never reaches (a snapshot beyond the journal's end, a journal cut
    short between the passes) cannot be checked: the summary names it and is not ok.
    """
    genesis = read_genesis(directory)
    config = genesis_config(genesis)
    venue_key = _venue_key(genesis, pubkey)
    public = signing.load_public(venue_key)
    total = journal_bytes(directory)
    claims: dict[int, list[Claim]] = {}
    chain = _check_chain(directory, public, claims, Progress("verify: chain", total, stream) if progress else None)
    snapshots = _snapshot_claims(directory, config, claims)
    # the key vouches for the history through the last seq a checkpoint covers, and for nothing after
    signed_through = max((seq for seq, found in claims.items() if any(k == "checkpoint" for k, _, _ in found)), default=0)
    venue = Venue(config)
    replay = Replayer(venue, None)
    checked, unsigned, unreached = _check_replay(directory, replay, claims, signed_through,
                                                 Progress("verify: replay", total, stream) if progress else None)
    _check_invariants(venue, "at the end of the journal")
    last = replay.last
    summary: dict[str, Any] = {
        "ok": True,
        "records": replay.records,
        "events": replay.events,
        "last_seq": last.seq if last else 0,
        "chain_hash": last.hash.hex() if last else "",
        "state_hash": venue.state_hash(),
        "checkpoints": chain.checkpoints,
        "claims_checked": checked,
        "claims_unchecked": len(unreached),
        "snapshots": snapshots,
        "venue": genesis.get("venue"),
        "venue_key": venue_key,
        "accounts": len(venue.accounts) - 1,
        "liabilities": {a: format_units(v, venue.assets[a].decimals) for a, v in liabilities(venue).items()},
        "signed_through_seq": signed_through,
        "unsigned_records": unsigned,
    }
    problems = list(unreached)
    if unsigned and pubkey is not None:
        # asked whether this key vouches for the history: not for records no checkpoint covers (a
        # crash or a live journal between checkpoints leaves such a tail; so would a forger)
        problems.append(_unsigned_problem(unsigned, signed_through))
    if problems:
        summary["ok"] = False
        summary["problem"] = "; ".join(problems)
    return summary


def _venue_key(genesis: dict[str, Any], pubkey: str | None) -> str:
    """The venue key the genesis record pins, which must be ``pubkey`` when one is given."""
    venue_key: str = genesis.get("venue_key", "")
    if pubkey is not None and pubkey.strip() != venue_key:
        raise AuditError(f"journal was signed by venue key {venue_key}, not the given {pubkey.strip()}")
    return venue_key


def _check_chain(directory: Path, public: Ed25519PublicKey, claims: dict[int, list[Claim]],
                 progress: Progress | None) -> Replayer:
    """First pass: CRCs, the chain and every checkpoint signature; adds each checkpoint's claim to ``claims``."""

    def collect(record: Record, body: dict[str, Any]) -> None:
        claims.setdefault(body["seq"], []).append(("checkpoint", body, record))

    chain = Replayer(None, public, on_checkpoint=collect)
    replay_records(directory, chain, repair=False, progress=progress)
    return chain


def _snapshot_claims(directory: Path, config: Config, claims: dict[int, list[Claim]]) -> list[str]:
    """Adds each snapshot's claim to ``claims``; returns the snapshots' file names."""
    snapshots = []
    for path in snapshot.snapshot_files(directory):
        try:
            header, _ = snapshot.read(path, config)
        except snapshot.SnapshotInvalid as exc:
            raise AuditError(f"snapshot {exc}") from None
        claims.setdefault(header.seq, []).append(("snapshot", {"state_hash": header.state_hash,
                                                               "chain_hash": header.chain_hash, "path": path.name}, None))
        snapshots.append(path.name)
    return snapshots


def _check_replay(directory: Path, replayer: Replayer, claims: dict[int, list[Claim]], signed_through: int,
                  progress: Progress | None) -> tuple[int, int, list[str]]:
    """Second pass: replay from genesis, checking the claims and the invariants at each seq claimed.

    Returns how many claims were checked, how many event records lie after ``signed_through``,
    and a problem naming each claim at a seq no replayed record has (the claims after it are
    still checked).
    """
    assert replayer.venue is not None
    checked = unsigned = 0
    pending = sorted(claims, reverse=True)  # the next seq claimed is last
    unreached: list[int] = []
    for record in replayed(directory, replayer, repair=False, progress=progress):
        if record.seq > signed_through and not is_control(record.payload):
            unsigned += 1
        while pending and pending[-1] <= record.seq:
            seq = pending.pop()
            if seq < record.seq:  # before the first record: nothing to compare it with
                unreached.append(seq)
                continue
            _check_claims(replayer.venue, record, claims[seq])
            checked += len(claims[seq])
            _check_invariants(replayer.venue, f"at seq {seq}")
    unreached.extend(reversed(pending))  # after the last record
    last_seq = replayer.last.seq if replayer.last is not None else 0
    return checked, unsigned, [_unreached_problem(seq, claim, last_seq) for seq in unreached for claim in claims[seq]]


def _check_claims(venue: Venue, record: Record, found: list[Claim]) -> None:
    """Every claim about ``record``'s seq states the replayed state hash, chain hash and PoR totals."""
    seq = record.seq
    state_hash = venue.state_hash()
    totals = None
    for kind, claim, at in found:
        if claim["state_hash"] != state_hash:
            raise AuditError.at(at, f"{kind} {claim.get('path', '')} for seq {seq} claims state hash "
                                f"{claim['state_hash'][:16]}, replay gives {state_hash[:16]}".replace("  ", " "))
        if claim["chain_hash"] != record.hash.hex():
            raise AuditError.at(at, f"{kind} for seq {seq} names a different chain hash")
        if "por" in claim:
            totals = totals or liabilities(venue)
            problem = por_problem(claim["por"], totals, len(venue.accounts) - (FEE_ACCOUNT_ID in venue.accounts))
            if problem is not None:
                raise AuditError.at(at, f"proof-of-reserves publication at seq {seq}: {problem}")


def _check_invariants(venue: Venue, where: str) -> None:
    try:
        venue.check_invariants()
    except InvariantViolation as exc:
        raise AuditError(f"invariant broken {where}: {exc}") from None


def _unreached_problem(seq: int, claim: Claim, last_seq: int) -> str:
    kind, found, at = claim
    source = f"checkpoint at seq {at.seq}" if at is not None else f"{kind} {found.get('path')}"
    if seq > last_seq:
        return f"{source} claims seq {seq} but the journal ends at seq {last_seq}"
    return f"{source} claims seq {seq}, which no journal record has (records start at seq 1)"


def _unsigned_problem(unsigned: int, signed_through: int) -> str:
    if not signed_through:
        return f"no checkpoint signature covers any of the {unsigned} record(s)"
    return (f"{unsigned} record(s) after seq {signed_through} are covered by no checkpoint signature: "
            f"the key vouches only for the state at seq {signed_through}")


def journal_events(directory: Path) -> Iterator[tuple[int, Any]]:
    """(seq, event) for every event in the journal, control records skipped. Read-only."""
    for record in read_records(directory, repair=False):
        if not is_control(record.payload):
            for event in decode_events(record.payload):
                yield record.seq, event


# --- dump ------------------------------------------------------------------------------------


def dump_journal(directory: Path, start: int = 1, stop: int | None = None) -> Iterator[dict[str, Any]]:
    """Every event (and control record) in [start, stop] as a named JSON object, for auditors.

    A ``stop`` below ``start`` (``--to 0``) is an empty range: nothing. A directory
    with no journal segments (or a path that is not a directory) is an AuditError.
    """
    if not segments(directory):
        raise AuditError(f"no journal segments in {directory}")
    for record in read_records(directory, repair=False, upto=stop):
        if stop is not None and record.seq > stop:
            return
        if record.seq < start:
            continue
        if is_control(record.payload):
            try:
                control = orjson.loads(record.payload)
            except orjson.JSONDecodeError as exc:
                raise AuditError.at(record, f"control record is not JSON: {exc}") from None
            yield {"seq": record.seq, "hash": record.hash.hex(), **control}
            continue
        try:
            events = decode_events(record.payload)
        except CodecError as exc:
            raise AuditError(str(exc), segment=record.segment, offset=record.offset, seq=record.seq) from None
        for index, event in enumerate(events):
            yield {"seq": record.seq, "index": index, **to_dict(event)}
