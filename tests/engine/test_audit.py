"""The audit-grade journal on real files: torn tails, bit flips, forgeries, signatures, snapshots, verify."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine import audit, por, signing, snapshot
from engine.audit import (
    AuditError,
    Progress,
    Replayer,
    checkpoint_body,
    checkpoint_payload,
    dump_journal,
    is_control,
    replay_records,
    verify_journal,
)
from engine.cli import main
from engine.codec import encode_events
from engine.config import DEFAULT, parse_config
from engine.journal import (
    ZERO_HASH,
    JournalCorrupt,
    Record,
    frame,
    frame_records,
    read_records,
    segments,
)
from engine.journal_writer import JournalWriter
from engine.messages import AccountCreated, Deposited, Withdrawn
from engine.recovery import StartupError
from engine.replica import ReplicaError
from engine.runtime import Engine
from engine.venue import Venue
from tests.engine.helpers import NOW_US

CONFIG = parse_config(DEFAULT)


async def trade(engine: Engine, rounds: int = 3) -> tuple[int, int]:
    buyer = (await engine.create_account(country="DE")).value
    seller = (await engine.create_account(country="FR")).value
    assert (await engine.deposit(buyer, "USDC", "10000")).ok
    assert (await engine.deposit(seller, "SOL", "100")).ok
    for i in range(rounds):
        assert (await engine.place_order(seller, "SOL_USDC", "Ask", "Limit", price=str(20 + i), quantity="5")).ok
        assert (await engine.place_order(buyer, "SOL_USDC", "Bid", "Limit", price=str(20 + i), quantity="2")).ok
    return buyer, seller


async def make_journal(directory: Path, *, snapshot_midway: bool = False, config=CONFIG) -> str:
    """A journal with accounts, trades, optional snapshot, ending in a clean shutdown; the final state hash."""
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(config, directory).run)
        await trade(engine)
        if snapshot_midway:
            done = await engine.checkpoint("snapshot")
            assert done.ok and "snapshot" in done.value
            await trade(engine, rounds=2)
        await engine.wait_idle()
        state = engine.venue.state_hash()
        engine.stop()
    return state


def recover(directory: Path) -> Engine:
    """Run start-up recovery (the daemon's own code) and release the journal."""
    engine = Engine(CONFIG, directory)
    try:
        writer = engine._recover()
    except BaseException:
        if engine._lock_fd >= 0:
            os.close(engine._lock_fd)
        raise
    writer.close()
    os.close(engine._lock_fd)
    return engine


def records(directory: Path) -> list[Record]:
    return list(read_records(directory, repair=False))


def splice(record: Record, new_bytes: bytes) -> None:
    """Replace one record's bytes in its segment (sizes may differ)."""
    data = record.segment.read_bytes()
    end = record.offset + 48 + len(record.payload)
    record.segment.write_bytes(data[:record.offset] + new_bytes + data[end:])


def rechain(directory: Path, start_seq: int, edit: dict[int, bytes]) -> None:
    """Rewrite the journal from ``start_seq`` with payload edits, recomputing every CRC and link (a forger's job)."""
    recs = records(directory)
    prev = recs[start_seq - 2].hash
    path = recs[0].segment
    data = path.read_bytes()[:recs[start_seq - 1].offset]
    for rec in recs[start_seq - 1:]:
        payload = edit.get(rec.seq, rec.payload)
        framed, prev = frame(rec.seq, prev, payload)
        data += framed
    path.write_bytes(data)


def unsigned_history(directory: Path, edit: dict[int, bytes]) -> None:
    """Rewrite the journal as its genesis and event records with payload edits (by seq), every CRC and
    link recomputed and no checkpoint left to contradict them: a well-framed history only replay can judge."""
    payloads = [r.payload for r in records(directory) if not (is_control(r.payload) and r.seq > 1)]
    for seq, payload in edit.items():
        payloads[seq - 1] = payload
    for segment in segments(directory):
        segment.unlink()
    (directory / f"{1:020d}.seg").write_bytes(frame_records(payloads, 0, ZERO_HASH)[0])


def refused(journal: Path, match: str) -> JournalCorrupt:
    """Start-up refuses the journal and ``verify`` fails it, both for the reason ``match``."""
    with pytest.raises(JournalCorrupt, match=match) as info:
        recover(journal)
    with pytest.raises(AuditError, match=match):
        verify_journal(journal, progress=False)
    return info.value


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    trio.run(make_journal, directory)
    return directory


def test_genesis_pins_venue_key_and_key_file_is_private(journal: Path) -> None:
    genesis = orjson.loads(records(journal)[0].payload)
    key = signing.load_or_create(journal / "venue.key", create=False)
    assert genesis["type"] == "genesis" and genesis["venue_key"] == key.public_b64
    assert genesis["config_hash"] == CONFIG.fingerprint()
    assert (journal / "venue.key").stat().st_mode & 0o777 == 0o600


def test_clean_shutdown_ends_in_a_signed_checkpoint(journal: Path) -> None:
    last = records(journal)[-1]
    doc = orjson.loads(last.payload)
    assert doc["type"] == "checkpoint" and doc["body"]["reason"] == "shutdown"
    key = signing.load_or_create(journal / "venue.key", create=False)
    assert signing.verify(key.public, "checkpoint", orjson.dumps(doc["body"], option=orjson.OPT_SORT_KEYS), doc["signature"])
    assert doc["body"]["seq"] == last.seq - 1 and doc["body"]["chain_hash"] == records(journal)[-2].hash.hex()


async def test_verify_accepts_an_honest_journal_and_recovery_matches(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    state = await make_journal(directory)
    summary = verify_journal(directory, progress=False)
    assert summary["ok"] and summary["state_hash"] == state
    assert summary["claims_checked"] >= 1 and summary["checkpoints"] >= 1
    assert summary["liabilities"]["USDC"] != "0" and summary["accounts"] == 2
    assert recover(directory).venue.state_hash() == state


def test_torn_last_record_is_cut_at_every_byte_offset(journal: Path, tmp_path: Path) -> None:
    recs = records(journal)
    # drop the shutdown checkpoint so the last record is an event batch, as after a crash mid-write
    with open(recs[-1].segment, "r+b") as f:
        f.truncate(recs[-1].offset)
    last = recs[-2]
    assert not is_control(last.payload)
    size = 48 + len(last.payload)
    pristine = tmp_path / "pristine"
    shutil.copytree(journal, pristine)
    for cut in range(size):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(pristine, work)
        segment = work / last.segment.name
        with open(segment, "r+b") as f:
            f.truncate(last.offset + cut)
        if cut:  # verify (which never repairs) names where the torn record would be
            with pytest.raises(JournalCorrupt) as torn:
                list(read_records(work, repair=False))
            assert (torn.value.seq, torn.value.offset) == (last.seq, last.offset), cut
        engine = recover(work)
        assert engine.recovered_seq == last.seq - 1, cut
        assert segment.stat().st_size == last.offset  # only the torn tail went
        broken = segment.with_suffix(".broken")
        assert (broken.read_bytes() if cut else b"") == (last.segment.read_bytes()[last.offset:last.offset + cut])
        shutil.rmtree(work)
    assert recover(pristine).recovered_seq == last.seq  # untouched, nothing is cut


@pytest.mark.parametrize("where", ["payload", "seq", "prev_hash", "crc"])
def test_flipped_bit_mid_journal_refuses_start_with_position(journal: Path, where: str) -> None:
    recs = records(journal)
    victim = recs[len(recs) // 2]
    at = {"payload": 48 + len(victim.payload) // 2, "seq": 8, "prev_hash": 20, "crc": 5}[where]
    data = bytearray(victim.segment.read_bytes())
    data[victim.offset + at] ^= 0x10
    victim.segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as info:
        recover(journal)
    assert info.value.offset == victim.offset and info.value.segment.name == victim.segment.name
    assert "CRC mismatch" in str(info.value) and f"offset {victim.offset}" in str(info.value)
    with pytest.raises(AuditError) as audit:
        verify_journal(journal, progress=False)
    assert f"offset {victim.offset}" in str(audit.value)


@pytest.mark.parametrize("bit", [0x10, 0x80])
def test_a_flipped_length_bit_mid_journal_is_not_taken_for_a_torn_tail(journal: Path, bit: int) -> None:
    """A length made to run past the end of the file looks torn, but the next record is still there: refused, nothing cut."""
    recs = records(journal)
    victim = recs[len(recs) // 2]
    data = bytearray(victim.segment.read_bytes())
    data[victim.offset + 2] ^= bit  # +1 MiB or +8 MiB: past the end of this small journal
    victim.segment.write_bytes(bytes(data))
    size = victim.segment.stat().st_size
    with pytest.raises(JournalCorrupt) as info:
        recover(journal)
    assert info.value.offset == victim.offset and info.value.seq == victim.seq
    assert "cut short" in str(info.value) and f"offset {victim.offset}" in str(info.value)
    assert victim.segment.stat().st_size == size and not victim.segment.with_suffix(".broken").exists()
    with pytest.raises(AuditError, match=f"offset {victim.offset}"):
        verify_journal(journal, progress=False)


def test_edited_payload_with_a_recomputed_crc_breaks_the_chain(journal: Path) -> None:
    recs = records(journal)
    deposit = next(r for r in recs if b'"Deposited"' in r.payload)
    forged = deposit.payload.replace(b"10000000000", b"90000000000")  # same length: 10,000 -> 90,000 USDC
    assert forged != deposit.payload
    framed, _ = frame(deposit.seq, deposit.prev_hash, forged)
    splice(deposit, framed)
    after = recs[deposit.seq]  # the next record
    error = refused(journal, "hash chain broken")
    assert (error.seq, error.offset) == (after.seq, after.offset)


def test_full_rechain_forgery_is_caught_by_the_signed_checkpoint(journal: Path) -> None:
    recs = records(journal)
    deposit = next(r for r in recs if b'"Deposited"' in r.payload)
    rechain(journal, deposit.seq, {deposit.seq: deposit.payload.replace(b"10000000000", b"90000000000")})
    refused(journal, "chain hash")


def test_forger_who_also_edits_the_checkpoint_fails_its_signature(journal: Path) -> None:
    recs = records(journal)
    deposit = next(r for r in recs if b'"Deposited"' in r.payload)
    rechain(journal, deposit.seq, {deposit.seq: deposit.payload.replace(b"10000000000", b"90000000000")})
    recs = records(journal)
    last = recs[-1]
    doc = orjson.loads(last.payload)
    doc["body"]["chain_hash"] = recs[-2].hash.hex()  # claim the forged history
    splice(last, frame(last.seq, last.prev_hash, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))[0])
    refused(journal, "signature")


def test_replaced_checkpoint_signature_is_caught(journal: Path) -> None:
    last = records(journal)[-1]
    doc = orjson.loads(last.payload)
    other = Ed25519PrivateKey.generate()
    body = orjson.dumps(doc["body"], option=orjson.OPT_SORT_KEYS)
    doc["signature"] = base64.b64encode(other.sign(signing.domain("checkpoint") + body)).decode()
    splice(last, frame(last.seq, last.prev_hash, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))[0])
    error = refused(journal, "signature")
    assert (error.seq, error.offset) == (last.seq, last.offset)


def test_verify_with_the_wrong_pubkey_fails(journal: Path) -> None:
    stranger = signing.public_b64(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(AuditError, match="signed by venue key"):
        verify_journal(journal, stranger, progress=False)
    assert verify_journal(journal, signing.load_or_create(journal / "venue.key").public_b64, progress=False)["ok"]


def test_verify_with_the_pubkey_fails_records_no_signature_covers(journal: Path) -> None:
    key = signing.load_or_create(journal / "venue.key").public_b64
    honest = verify_journal(journal, key, progress=False)
    assert honest["ok"] and honest["unsigned_records"] == 0  # a clean stop signs the last event record
    last = records(journal)[-1]
    forged = encode_events([Deposited(2, "USDC", 10**12, NOW_US)])
    with last.segment.open("ab") as f:  # a forger appends a well-framed, well-chained record
        f.write(frame(last.seq + 1, last.hash, forged)[0])
    checked = verify_journal(journal, progress=False)
    assert checked["ok"] and (checked["signed_through_seq"], checked["unsigned_records"]) == (honest["last_seq"] - 1, 1)
    asked = verify_journal(journal, key, progress=False)  # "does this key vouch for it?": not for the tail
    assert not asked["ok"] and "1 record(s) after seq" in asked["problem"]


def test_a_swapped_signing_key_refuses_start(journal: Path) -> None:
    (journal / "venue.key").unlink()
    signing.load_or_create(journal / "venue.key")  # a new key, not the journal's
    with pytest.raises(StartupError, match="not the one pinned"):
        recover(journal)


def test_a_key_readable_by_others_refuses_start(journal: Path) -> None:
    os.chmod(journal / "venue.key", 0o644)
    with pytest.raises(StartupError, match="readable by others"):
        recover(journal)


async def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    state = await make_journal(directory, snapshot_midway=True)
    files = snapshot.snapshot_files(directory)
    assert len(files) == 1
    header, _ = snapshot.read(files[0], CONFIG)
    assert 1 < header.seq < records(directory)[-1].seq
    with_snapshot = recover(directory)
    assert with_snapshot.venue.state_hash() == state
    summary = verify_journal(directory, progress=False)
    assert summary["state_hash"] == state and summary["snapshots"] == [files[0].name]
    assert summary["claims_checked"] >= 3  # snapshot, its checkpoint, the shutdown checkpoint
    shutil.move(str(directory / "snapshots"), str(tmp_path / "aside"))
    assert recover(directory).venue.state_hash() == state


async def test_a_damaged_snapshot_is_skipped_for_replay_from_genesis(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    state = await make_journal(directory, snapshot_midway=True)
    path = snapshot.snapshot_files(directory)[0]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    assert recover(directory).venue.state_hash() == state
    with pytest.raises(AuditError, match="digest"):
        verify_journal(directory, progress=False)


async def test_a_malformed_snapshot_is_skipped(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    state = await make_journal(directory, snapshot_midway=True)
    path = snapshot.snapshot_files(directory)[0]
    header, _ = snapshot.read(path, CONFIG)
    body = orjson.dumps([[1, 1, 1], [["x", 0, "", "", 0, [], {}, {}, {}, []]], []])  # an account id that is text
    meta = {"format": snapshot.SNAPSHOT_FORMAT, "seq": header.seq, "chain_hash": header.chain_hash,
            "state_hash": header.state_hash, "time_us": 1, "body_bytes": len(body),
            "body_blake2b": hashlib.blake2b(body, digest_size=32).hexdigest()}
    for data in (b"[]\n[]", orjson.dumps(meta) + b"\n" + body):
        path.write_bytes(data)
        with pytest.raises(snapshot.SnapshotInvalid, match="malformed"):
            snapshot.read(path, CONFIG)
        assert recover(directory).venue.state_hash() == state


async def test_a_snapshot_from_another_history_is_not_used(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    state = await make_journal(mine)
    await make_journal(other, snapshot_midway=True)
    theirs = snapshot.snapshot_files(other)[0]
    (mine / "snapshots").mkdir()
    shutil.copy(theirs, mine / "snapshots" / theirs.name)
    assert recover(mine).venue.state_hash() == state  # its chain hash does not match: replay from genesis


async def test_a_forged_snapshot_is_not_trusted_at_start(tmp_path: Path) -> None:
    """A snapshot rewritten with its own hashes recomputed is consistent in itself; only the journal's
    signed checkpoint for its seq can tell, and recovery asks it."""
    directory = tmp_path / "j"
    state = await make_journal(directory, snapshot_midway=True)
    path = snapshot.snapshot_files(directory)[0]
    header, venue = snapshot.read(path, CONFIG)
    account = next(a for a in venue.accounts.values() if a.net_deposits.get("SOL"))
    account.balances["SOL"] += 10**15  # conservation kept: the deposit total moves with it
    account.net_deposits["SOL"] += 10**15
    venue.supply["SOL"] += 10**15
    path.unlink()
    forged = snapshot.write(directory, venue, header.seq, bytes.fromhex(header.chain_hash), venue.state_hash(), 1)
    assert snapshot.read(forged, CONFIG)[0].state_hash != header.state_hash  # it passes its own checks
    assert recover(directory).venue.state_hash() == state  # replayed from genesis instead


async def test_periodic_checkpoints_cover_exact_positions(tmp_path: Path) -> None:
    data = dict(DEFAULT)
    data["journal"] = {**DEFAULT["journal"], "checkpoint_every_records": 3}
    config = parse_config(data)
    directory = tmp_path / "j"
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(config, directory).run)
        await trade(engine, rounds=6)
        with trio.fail_after(10):
            while not any(is_control(r.payload) and b'"interval"' in r.payload for r in records(directory)):  # noqa: ASYNC110
                await trio.sleep(0.05)
            await engine.checkpoint("checkpoint")  # `satchel checkpoint`: asked for, so not "interval"
        engine.stop()
    summary = verify_journal(directory, progress=False)
    reasons = [orjson.loads(r.payload)["body"]["reason"] for r in records(directory) if r.seq > 1 and is_control(r.payload)]
    assert "interval" in reasons and reasons[-2:] == ["operator", "shutdown"]
    assert summary["claims_checked"] == len(reasons)


async def test_por_publication_is_signed_and_its_totals_are_verified(tmp_path: Path) -> None:
    from engine.checkpointer import load_tree
    from engine.por import PorError, check_proof, verify_proof

    directory = tmp_path / "j"
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
        buyer, seller = await trade(engine)
        published = await engine.checkpoint("por")
        engine.stop()
    doc = published.value["por"]
    public = orjson.loads(await trio.Path(doc["published"]).read_bytes())
    key = signing.load_public(public["venue_key"])
    assert signing.verify(key, "checkpoint", orjson.dumps(public["checkpoint"], option=orjson.OPT_SORT_KEYS), public["signature"])
    assert public["checkpoint"]["por"]["root"] == public["root"] == doc["root"]
    seq, tree = load_tree(directory)
    assert seq == doc["seq"]
    for account in (buyer, seller):
        assert verify_proof(tree.proof(account, seq), doc["root"])["ok"]
        # what a user can check offline with the proof, the publication and the venue key alone
        assert check_proof(tree.proof(account, seq), publication=public, pubkey=engine.key.public_b64)["ok"]
    assert public["accounts"] == 2 and public["assets"] == ["BTC", "ETH", "SOL", "USDC"]
    assert verify_journal(directory, progress=False)["ok"]  # replayed liabilities equal the signed totals
    # Regression (style review 4): a stray file was taken as the newest publication, a damaged one gave a traceback
    folder = Path(doc["published"]).parent
    (folder / "old.leaves").write_bytes(b"not json")
    assert load_tree(directory)[0] == seq
    newest = folder / f"{seq:020d}.leaves"
    for damage in (b"not json", b"[1, 2]", b'{"seq": 5}', b'{"seq": "x", "leaves": [], "assets": []}'):
        newest.write_bytes(damage)
        with pytest.raises(PorError, match="leaves file"):
            load_tree(directory)


def sign_por_claim(journal: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Append a PoR checkpoint at the journal's end, signed with the venue's own key (the party PoR checks
    is the one that signs), its claim first edited by ``edit``."""
    venue = Venue(CONFIG)
    replayer = Replayer(venue, None)
    replay_records(journal, replayer, repair=False)
    last = replayer.last
    assert last is not None
    claim = por.venue_tree(venue, b"k" * 32, last.seq).publication(last.seq)
    edit(claim)
    key = signing.load_or_create(journal / "venue.key", create=False)
    body = checkpoint_body(last.seq, last.hash, venue.state_hash(), NOW_US, "por", claim)
    writer = JournalWriter(journal, CONFIG.journal.segment_bytes, last.seq, last.hash)
    writer.append([checkpoint_payload(key, body)])
    writer.close()


def omit_usdc(claim: dict[str, Any]) -> None:
    claim["assets"], claim["totals"] = claim["assets"][:-1], claim["totals"][:-1]


@pytest.mark.parametrize(("edit", "problem"), [
    (omit_usdc, r"missing \['USDC'\]"),  # audit finding 6: it passed, the omitted asset never compared
    (lambda c: c.update(assets=[*c["assets"], "XYZ"], totals=[*c["totals"], "0"]), r"unknown \['XYZ'\]"),
    (lambda c: c.update(assets="BTC"), "are not the venue's"),
    (lambda c: c.update(accounts=c["accounts"] + 1), "counts 3 accounts, the journal has 2"),
    (lambda c: c["totals"].__setitem__(-1, "1"), "USDC '1' .replay gives 9999975800"),
    (lambda c: c.update(totals=None), "not one amount per asset"),
    (lambda c: c.update(scheme="satchel-por-v0"), "unknown scheme"),
])
def test_verify_fails_a_por_claim_that_does_not_state_every_liability(journal: Path, edit: Any, problem: str) -> None:
    sign_por_claim(journal, edit)
    with pytest.raises(AuditError, match=f"proof-of-reserves publication at seq .*{problem}"):
        verify_journal(journal, progress=False)


@pytest.mark.parametrize("scheme", ["satchel-por-v1", "satchel-por-v2"])
def test_verify_accepts_a_full_por_claim_of_either_scheme(journal: Path, scheme: str) -> None:
    sign_por_claim(journal, lambda claim: claim.update(scheme=scheme))  # older journals hold scheme 1 claims
    assert verify_journal(journal, progress=False)["claims_checked"] == 2


def cut_before(journal: Path, seq: int) -> None:
    """Cut the journal just before record ``seq``, at a record boundary: a history that ends at ``seq - 1``."""
    record = records(journal)[seq - 1]
    with open(record.segment, "r+b") as f:
        f.truncate(record.offset)


async def test_verify_fails_a_snapshot_beyond_the_journals_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression: the journal's tail gone behind its snapshot, verify said OK with the snapshot never checked
    directory = tmp_path / "j"
    await make_journal(directory, snapshot_midway=True)
    name = snapshot.snapshot_files(directory)[0].name
    cut_before(directory, 11)  # the snapshot is of seq 11; its checkpoint (seq 12) goes with the tail
    assert name == f"{11:020d}.snap"
    summary = verify_journal(directory, progress=False)
    assert not summary["ok"] and (summary["last_seq"], summary["claims_checked"], summary["claims_unchecked"]) == (10, 0, 1)
    assert summary["problem"] == f"snapshot {name} claims seq 11 but the journal ends at seq 10"
    assert main(["verify", str(directory)]) == 1
    printed = orjson.loads(capsys.readouterr().out)
    assert printed["ok"] is False and printed["problem"] == summary["problem"]


def test_a_claim_no_record_can_meet_does_not_hide_the_claims_after_it(journal: Path) -> None:
    # Regression: a snapshot of seq 0 (self-consistent, so it loads) stayed first in line and every later
    # claim went unchecked: verify said OK with claims_checked 0, even over a PoR claim with wrong totals
    empty = Venue(CONFIG)
    snapshot.write(journal, empty, 0, ZERO_HASH, empty.state_hash(), NOW_US)
    summary = verify_journal(journal, progress=False)
    assert not summary["ok"] and (summary["claims_checked"], summary["claims_unchecked"]) == (1, 1)  # the shutdown checkpoint's
    assert summary["problem"] == f"snapshot {0:020d}.snap claims seq 0, which no journal record has (records start at seq 1)"
    sign_por_claim(journal, omit_usdc)
    with pytest.raises(AuditError, match=r"proof-of-reserves publication at seq .*missing \['USDC'\]"):
        verify_journal(journal, progress=False)


async def test_verify_fails_a_checkpoint_claim_the_replay_never_reaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Regression: the journal cut short between verify's passes (the chain pass saw the shutdown checkpoint,
    # the replay stopped before the seq it covers): verify said OK with that claim never checked
    directory = tmp_path / "j"
    await make_journal(directory, snapshot_midway=True)
    shutdown = records(directory)[-1]
    assert (shutdown.seq, orjson.loads(shutdown.payload)["body"]["seq"]) == (21, 20)
    snapshot_claims = audit._snapshot_claims

    def then_cut(*args: Any) -> list[str]:  # runs between the two passes
        cut_before(directory, 20)
        return snapshot_claims(*args)

    monkeypatch.setattr(audit, "_snapshot_claims", then_cut)
    summary = verify_journal(directory, progress=False)
    assert not summary["ok"] and (summary["claims_checked"], summary["claims_unchecked"]) == (2, 1)  # seq 11's two
    assert summary["problem"] == "checkpoint at seq 21 claims seq 20 but the journal ends at seq 19"


def test_dump_names_every_event_and_honours_the_range(journal: Path) -> None:
    rows = list(dump_journal(journal))
    assert rows[0]["type"] == "genesis" and rows[-1]["type"] == "checkpoint"
    kinds = {r["type"] for r in rows}
    assert {"AccountCreated", "Deposited", "OrderPlaced"} <= kinds
    some = list(dump_journal(journal, 3, 4))
    assert {r["seq"] for r in some} == {3, 4}
    # Regression (audit 12): --to 0 dumped the whole journal
    assert list(dump_journal(journal, 1, 0)) == [] and list(dump_journal(journal, 4, 3)) == []


def test_a_record_that_does_not_replay_is_named_by_verify_and_refused_at_start(
    journal: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression (audit 11): a deposit to an account never created gave KeyError tracebacks
    unsigned_history(journal, {4: encode_events([Deposited(99, "USDC", 10**9, NOW_US)])})
    bad = records(journal)[3]
    error = refused(journal, r"record does not replay \(KeyError: 99\)")
    assert (error.seq, error.offset) == (4, bad.offset)
    assert main(["verify", str(journal)]) == 1
    failure = orjson.loads(capsys.readouterr().out)
    assert failure["ok"] is False and (failure["segment"], failure["offset"], failure["seq"]) == (bad.segment.name, bad.offset, 4)


def test_a_history_that_replays_to_a_broken_invariant_is_refused(journal: Path) -> None:
    # Regression: start-up died with an InvariantViolation traceback (verify already said so)
    last = records(journal)[-1]
    with last.segment.open("ab") as f:  # a withdrawal of more than the account holds
        f.write(frame(last.seq + 1, last.hash, encode_events([Withdrawn(7, 1, "USDC", 10**15, NOW_US)]))[0])
    with pytest.raises(StartupError, match="the journal replays to a state that breaks an invariant: account 1 USDC"):
        recover(journal)
    with pytest.raises(AuditError, match="invariant broken at the end of the journal: account 1 USDC"):
        verify_journal(journal, progress=False)


def test_a_first_record_that_is_not_a_genesis_object_is_refused(journal: Path) -> None:
    # Regression (audit 11): AttributeError ('list' object has no attribute 'get') from verify and start-up
    unsigned_history(journal, {1: encode_events([AccountCreated(1, -1, "DE", "retail", NOW_US)])})
    error = refused(journal, "record 1 is not a genesis record")
    assert (error.seq, error.offset) == (1, 0)


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress("verify", 1000, out, min_s=0)
    progress.update(500, 10)
    progress.update(1000, 20, final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "50.0%" in lines[0] and "records/s" in lines[1] and "\r" not in out.getvalue()


def test_disk_full_rolls_back_the_partial_write(tmp_path: Path) -> None:
    import resource

    directory = tmp_path / "j"
    directory.mkdir()
    writer = JournalWriter(directory, 1 << 20, 0, bytes(32))
    writer.append([b"[]"])
    size = (directory / f"{1:020d}.seg").stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))
    try:
        from engine.journal_writer import DiskFull

        with pytest.raises(DiskFull, match="disk full"):
            writer.append([b"[" + b"0," * 200 + b"0]"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (directory / f"{1:020d}.seg").stat().st_size == size  # no half record left behind
    writer.close()
    assert [r.seq for r in read_records(directory, repair=False)] == [1]


async def test_the_replica_runs_in_its_own_process_and_a_killed_one_is_replaced(tmp_path: Path) -> None:
    """The checkpointer's replica replays on another core (no GIL shared with matching); if that
    process dies, the next checkpoint starts a new one from the newest snapshot and loses nothing.
    (A replica started from a snapshot must accept the later checkpoint that names the snapshot's seq.)"""
    directory = tmp_path / "j"
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
        await trade(engine)
        first = await engine.checkpoint("snapshot")
        assert first.ok and "snapshot" in first.value
        process = engine.checkpointer.replica.process
        assert process is not None and process.pid != os.getpid()
        process.kill()
        await trio.to_thread.run_sync(process.wait)
        await trade(engine, rounds=2)
        await engine.wait_idle()
        second = await engine.checkpoint("snapshot")
        assert second.ok and second.value["state_hash"] == engine.venue.state_hash()
        assert engine.checkpointer.replica.process is not process
        engine.stop()
    assert engine.checkpointer.replica.process is None  # reaped at stop
    assert verify_journal(directory, progress=False)["ok"]


async def test_a_replica_that_cannot_follow_the_journal_stops_the_engine_with_its_reason(tmp_path: Path) -> None:
    """A replica that finds the journal on disk unreadable must not sign anything: the requester is
    told why and the engine stops rather than run on without checkpoints."""
    directory = tmp_path / "j"
    engine = Engine(CONFIG, directory)
    answers = []

    async def run_until_the_checkpoint_fails() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            await trade(engine)
            await engine.wait_idle()
            replica = engine.checkpointer.replica
            await trio.to_thread.run_sync(replica.close)  # the next one starts pointed at an empty directory
            replica.setup = (CONFIG, str(tmp_path / "nowhere"), 10**9, engine.key.public_b64)
            answers.append(await engine.checkpoint("snapshot"))
            await trio.sleep_forever()

    with pytest.raises(BaseExceptionGroup) as raised, trio.fail_after(30):
        await run_until_the_checkpoint_fails()
    assert raised.group_contains(ReplicaError, match="nowhere", depth=None)
    assert "checkpoint replica failed" in answers[0].value["error"] and "nowhere" in answers[0].value["error"]
