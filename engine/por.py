"""Proof of reserves: a Merkle sum tree over every account's liabilities per asset.

Scheme ``satchel-por-v2`` (documented in README):

* Every user account (the venue's fee account is the venue's own money, not a
  liability, and is left out) is one leaf: its total balance per asset
  (available + locked, in atoms). A negative balance is refused: the tree is not
  built.
* The leaves are in the order of their salts, which are drawn from the secret, so
  the order is random and new at every publication: a leaf's neighbours are
  accounts no proof names (scheme 1 kept account-id order, so every proof showed
  the next account's exact balances).
* ``sums`` are packed as 16-byte big-endian lanes, one per asset.
  ``leaf = blake2b-256("satchel/por/leaf/v2" | account_id u64 BE | part u32 BE | salt(16) | sums)``
  ``node = blake2b-256("satchel/por/node/v1" | left.hash | left.sums | right.hash | right.sums)``
  with ``node.sums = left.sums + right.sums`` lane by lane. A level of odd length
  pairs its last node with ``pad = blake2b-256("satchel/por/pad/v1" | level u32 BE)``,
  sums zero. Hashing the sums into every node means a venue cannot shave a
  liability off one branch without changing the root. ``part`` is 0: the format
  (a proof lists its account's parts) leaves room for a later scheme that splits
  an account into several leaves.
* The salts are one SHAKE-256 stream over ``"satchel/por/salt/v2" | secret length
  u16 BE | secret | seq u64 BE``, 16 bytes per account in the order the accounts
  are given (account-id order), the secret derived from the venue key: the venue
  can rebuild the same tree; nobody without the key can predict it, and a
  sibling's hash (salted) does not give away whose leaf it is.
* The root hash, the totals, the asset list (every asset of the venue) and the
  number of accounts go into a checkpoint signed with the venue key; the
  publication ``por/<seq>.json`` carries that signed checkpoint.

A proof names the account, its balances and, for each of its parts, the part's
salt and balances and, from the bottom up, each sibling's side, hash and sums.
``verify_proof`` recomputes every path, refuses a negative or oversized sibling sum
(the classic trick to hide liabilities), checks that the parts add up to the
balances and that every path reaches the same root; ``check_proof`` also checks
that root and its totals against the venue's signed publication.

What a proof shows its holder about other accounts: the first sibling is the exact
balances of one account the proof does not name, a different one at every
publication; the siblings above it are totals of random groups of accounts.
Splitting each account into random shares hid the first sibling's amounts too, but
two shares made a million-account publication 5x slower (35 s against 6.5 s), far
past its 10 s budget (the order alone costs 1.2x); hiding amounts entirely needs
commitments with range proofs (DAPOL, Summa), which a plain sum tree does not have.

Scheme ``satchel-por-v1`` (account-id order, leaf tag ``leaf/v1`` without the
part) still verifies in older journals, and its proofs still check.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from engine.messages import FEE_ACCOUNT_ID

if TYPE_CHECKING:
    from engine.venue import Venue

LEAF_V1: Final = b"satchel/por/leaf/v1"
LEAF: Final = b"satchel/por/leaf/v2"
NODE: Final = b"satchel/por/node/v1"
PAD: Final = b"satchel/por/pad/v1"
SALT_STREAM: Final = b"satchel/por/salt/v2"
LANE_BYTES: Final = 16
LANE_MAX: Final = 1 << 120  # far above any real total; lanes can never carry into each other
SCHEME_V1: Final = "satchel-por-v1"
SCHEME: Final = "satchel-por-v2"  # what new publications are: 2 places the leaves in a drawn order
SCHEMES: Final = (SCHEME_V1, SCHEME)  # what verify and `satchel por verify` read
PARTS: Final = 1  # leaves per account; the format has room for more (each a share of the balances)
SALT_BYTES: Final = 16
MAX_PATH: Final = 64  # steps: a tree of 2**64 leaves


class PorError(ValueError):
    """A tree that must not be built, or a proof that does not hold; the message says why."""


class Leaf(NamedTuple):
    account_id: int
    part: int  # 0 .. PARTS - 1 (always 0 in scheme 1)
    salt: bytes
    atoms: list[int]  # per asset, in the tree's asset order


def pack(values: list[int]) -> int:
    """Per-asset atoms -> one int with a 128-bit lane per asset (first asset highest)."""
    out = 0
    for v in values:
        if v < 0:
            raise PorError(f"negative liability {v}")
        if v >= LANE_MAX:
            raise PorError(f"liability {v} is out of range")
        out = (out << (LANE_BYTES * 8)) | v
    return out


def unpack(packed: int, lanes: int) -> list[int]:
    mask = (1 << (LANE_BYTES * 8)) - 1
    return [(packed >> (LANE_BYTES * 8 * (lanes - 1 - i))) & mask for i in range(lanes)]


def leaf_hash(leaf: Leaf, packed: int, width: int, scheme: str = SCHEME) -> bytes:
    account = leaf.account_id.to_bytes(8, "big")
    head = LEAF_V1 + account if scheme == SCHEME_V1 else LEAF + account + leaf.part.to_bytes(4, "big")
    return hashlib.blake2b(head + leaf.salt + packed.to_bytes(width, "big"), digest_size=32).digest()


def node_hash(left: bytes, left_sums: int, right: bytes, right_sums: int, width: int) -> bytes:
    return hashlib.blake2b(NODE + left + left_sums.to_bytes(width, "big") + right + right_sums.to_bytes(width, "big"),
                           digest_size=32).digest()


def pad_hash(level: int) -> bytes:
    return hashlib.blake2b(PAD + level.to_bytes(4, "big"), digest_size=32).digest()


# --- building ------------------------------------------------------------------------------

Level = tuple[bytes, bytes]  # one level of the tree, packed: every node's hash (32 bytes), then every node's sums (width bytes)
_Grown = tuple[list[Level], list[bytes], list[int]]  # the levels passed, and the nodes reached above them
SPLIT_LEVELS: Final = 12  # a worker's share of the leaves is whole subtrees of 4,096, so it climbs 12 levels alone
PARALLEL_MIN: Final = 1 << 16  # fewer accounts are built in one process: a fork costs more than it saves
WORKERS: Final = min(4, os.cpu_count() or 1)  # processes a large publication is built in (the replica and its forks)


def _grow(hashes: list[bytes], sums: list[int], width: int, level: int, stop: int, least: int) -> _Grown:
    """Hash pairs up from ``level`` (its nodes given, the lists then owned here) until level ``stop`` or until no
    more than ``least`` nodes are left, a level of odd length taking the pad as its last node.
    Returns the levels passed, packed, and the nodes reached."""
    blake = hashlib.blake2b
    passed: list[Level] = []
    while level < stop and len(hashes) > least:
        if len(hashes) % 2:
            hashes.append(pad_hash(level))
            sums.append(0)
        raw = [s.to_bytes(width, "big") for s in sums]
        passed.append((b"".join(hashes), b"".join(raw)))
        # ``node_hash`` inline: a million-account tree has two million nodes
        hashes = [blake(NODE + hashes[j] + raw[j] + hashes[j + 1] + raw[j + 1], digest_size=32).digest()
                  for j in range(0, len(hashes), 2)]
        sums = [sums[j] + sums[j + 1] for j in range(0, len(sums), 2)]
        level += 1
    return passed, hashes, sums


class SumTree:
    """The whole tree, kept level by level (packed) so any account's proof can be read off it."""

    def __init__(self, assets: list[str], leaves: list[Leaf], scheme: str = SCHEME,
                 grown: _Grown | None = None) -> None:
        """``leaves`` in tree order; each (account, part) at most once (``from_leaves`` checks a file's).
        ``grown``: the lowest levels and the nodes of the next one, when the caller has hashed them (``build``)."""
        self.assets = assets
        self.scheme = scheme
        self.leaves = leaves
        lanes = len(assets)
        self.width = width = LANE_BYTES * lanes
        if grown is None:
            hashes, sums = [], []
            for leaf in leaves:
                if len(leaf.atoms) != lanes:
                    raise PorError(f"account {leaf.account_id}: {len(leaf.atoms)} balances for {lanes} assets")
                try:
                    packed = pack(leaf.atoms)
                except PorError as exc:
                    raise PorError(f"account {leaf.account_id}: {exc}") from None
                hashes.append(leaf_hash(leaf, packed, width, scheme))
                sums.append(packed)
            grown = [], hashes, sums
        levels, hashes, sums = grown
        more, hashes, sums = _grow(hashes, sums, width, len(levels), MAX_PATH, 1)
        self.levels = levels + more  # every level below the root
        if not hashes:
            self.root, self.root_sums = pad_hash(0), 0
        else:
            self.root, self.root_sums = hashes[0], sums[0]
        self._index: dict[int, list[int]] | None = None

    @property
    def index(self) -> dict[int, list[int]]:
        """Account id -> its leaves' positions (built when first asked: publishing needs no proof)."""
        if self._index is None:
            index: dict[int, list[int]] = {}
            for i, leaf in enumerate(self.leaves):
                index.setdefault(leaf.account_id, []).append(i)
            self._index = index
        return self._index

    @property
    def totals(self) -> list[int]:
        return unpack(self.root_sums, len(self.assets))

    @property
    def accounts(self) -> int:
        return len({leaf.account_id for leaf in self.leaves})

    def publication(self, seq: int) -> dict[str, Any]:
        """What the signed checkpoint carries: root, every asset's total, the number of accounts."""
        return {"scheme": self.scheme, "seq": seq, "root": self.root.hex(), "assets": self.assets,
                "totals": [str(v) for v in self.totals], "accounts": self.accounts}

    def leaves_doc(self, seq: int) -> dict[str, Any]:
        """The private leaves file (salts and balances of every account), from which ``from_leaves`` rebuilds the tree."""
        if self.scheme == SCHEME_V1:
            rows: list[list[Any]] = [[f.account_id, f.salt.hex(), [str(v) for v in f.atoms]] for f in self.leaves]
        else:
            rows = [[f.account_id, f.part, f.salt.hex(), [str(v) for v in f.atoms]] for f in self.leaves]
        return {"scheme": self.scheme, "seq": seq, "assets": self.assets, "leaves": rows}

    def proof(self, account_id: int, seq: int) -> dict[str, Any]:
        positions = self.index.get(account_id)
        if positions is None:
            raise PorError(f"account {account_id} has no leaf in the tree at seq {seq}")
        head = {"scheme": self.scheme, "seq": seq, "account_id": account_id, "assets": self.assets}
        tail = {"root": self.root.hex(), "totals": [str(v) for v in self.totals]}
        if self.scheme == SCHEME_V1:
            (i,) = positions
            leaf = self.leaves[i]
            return {**head, "salt": leaf.salt.hex(), "balances": [str(v) for v in leaf.atoms],
                    "path": self._path(i), **tail}
        ordered = sorted(positions, key=lambda i: self.leaves[i].part)
        parts = [{"part": self.leaves[i].part, "salt": self.leaves[i].salt.hex(),
                  "balances": [str(v) for v in self.leaves[i].atoms], "path": self._path(i)} for i in ordered]
        balances = [sum(self.leaves[i].atoms[k] for i in positions) for k in range(len(self.assets))]
        return {**head, "balances": [str(v) for v in balances], "parts": parts, **tail}

    def _path(self, i: int) -> list[dict[str, Any]]:
        lanes, width = len(self.assets), self.width
        path = []
        for hashes, sums in self.levels:
            sibling = i ^ 1
            at = sibling * width
            path.append({"side": "L" if sibling < i else "R", "hash": hashes[sibling * 32:sibling * 32 + 32].hex(),
                         "sums": [str(v) for v in unpack(int.from_bytes(sums[at:at + width], "big"), lanes)]})
            i //= 2
        return path


def from_leaves(doc: dict[str, Any]) -> SumTree:
    """The tree of a leaves file (``SumTree.leaves_doc``), of either scheme."""
    scheme = doc.get("scheme", SCHEME_V1)
    if scheme not in SCHEMES:
        raise PorError(f"leaves file of unknown scheme {scheme!r}")
    try:
        if scheme == SCHEME_V1:
            leaves = [Leaf(int(a), 0, bytes.fromhex(s), [int(v) for v in atoms]) for a, s, atoms in doc["leaves"]]
        else:
            leaves = [Leaf(int(a), int(p), bytes.fromhex(s), [int(v) for v in atoms]) for a, p, s, atoms in doc["leaves"]]
        assets = list(doc["assets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PorError(f"leaves file is malformed: {exc}") from None
    if len({(leaf.account_id, leaf.part) for leaf in leaves}) != len(leaves):
        raise PorError("leaves file lists an account's leaf twice")
    return SumTree(assets, leaves, scheme)


_PART_0: Final = bytes(4)  # the part field of a scheme-2 leaf (``leaf_hash``), written in one piece


def build(assets: list[str], balances: Iterable[tuple[int, list[int]]], secret: bytes, seq: int,
          workers: int = 1) -> SumTree:
    """The tree over (account id, atoms per asset in ``assets`` order) pairs: one leaf per account, in salt order.

    The salts are drawn from the secret, so a leaf's place in the tree is
    unpredictable without the key and new at every publication. This is the whole
    cost of a publication (a million accounts), so the leaves are hashed here, in tree
    order, not by ``SumTree``; ordering them costs about 1.3 times account order (the
    sort, and reading the accounts out of memory order).

    With ``workers`` > 1 and at least ``PARALLEL_MIN`` accounts, the leaves are cut
    into that many runs of whole 4,096-leaf subtrees, each hashed with its subtrees
    in a forked process (this one takes the first run), so a million accounts take
    about half the time on two cores. Each run's levels are exactly what one
    process would have made: only the last run can have a level of odd length, and
    the pad at its end is the one the whole level takes.
    """
    lanes = len(assets)
    width = LANE_BYTES * lanes
    accounts = list(balances)
    # every salt in one SHAKE-256 stream over the secret and the seq, the n-th for the n-th account given
    stream = hashlib.shake_256(SALT_STREAM + len(secret).to_bytes(2, "big") + secret + seq.to_bytes(8, "big")).digest(
        SALT_BYTES * len(accounts))
    salts = [stream[at:at + SALT_BYTES] for at in range(0, len(stream), SALT_BYTES)]
    order = sorted(range(len(salts)), key=salts.__getitem__)
    subtree = 1 << SPLIT_LEVELS
    share = -(-len(order) // max(1, workers) // subtree) * subtree if len(order) >= PARALLEL_MIN else len(order)
    runs = [order[start:start + share] for start in range(0, len(order), max(1, share))] or [order]
    stop = SPLIT_LEVELS if len(runs) > 1 else 0
    forked = [_forked(accounts, salts, run, lanes, width, stop) for run in runs[1:]]
    try:
        levels, hashes, sums = _hash_run(accounts, salts, runs[0], lanes, width, stop)
        new_leaf = tuple.__new__  # a Leaf without its Python-level __new__
        leaves: list[Leaf] = [new_leaf(Leaf, (accounts[i][0], 0, salts[i], accounts[i][1])) for i in order]
    finally:
        grown = [result() for result in forked]  # every child is waited for, even when this run failed
    for more, top, top_sums in grown:
        levels = [(h + more_h, s + more_s) for (h, s), (more_h, more_s) in zip(levels, more, strict=True)]
        hashes += top
        sums += top_sums
    return SumTree(assets, leaves, SCHEME, grown=(levels, hashes, sums))


def _hash_run(accounts: list[tuple[int, list[int]]], salts: list[bytes], run: list[int], lanes: int, width: int,
              stop: int) -> _Grown:
    """The leaves of the accounts at ``run`` (indexes into ``accounts``, in tree order), climbed ``stop`` levels."""
    blake = hashlib.blake2b
    hashes: list[bytes] = []
    sums: list[int] = []
    for index in run:
        account_id, atoms = accounts[index]
        if len(atoms) != lanes:
            raise PorError(f"account {account_id}: {len(atoms)} balances for {lanes} assets")
        try:
            packed = pack(atoms)
        except PorError as exc:
            raise PorError(f"account {account_id}: {exc}") from None
        hashes.append(blake(LEAF + account_id.to_bytes(8, "big") + _PART_0 + salts[index] + packed.to_bytes(width, "big"),
                            digest_size=32).digest())
        sums.append(packed)
    # a run that is not the last never has a level of odd length; the last pads even a lone node, as the whole level does
    return _grow(hashes, sums, width, 0, stop, 0)


def _forked(accounts: list[tuple[int, list[int]]], salts: list[bytes], run: list[int], lanes: int, width: int,
            stop: int) -> Callable[[], _Grown]:
    """``_hash_run`` of these arguments in a forked child (it sees this process's memory as it is now); returns the
    function that waits for the child and gives its result, or raises its PorError.

    Only for a single-threaded process (the replica's, a CLI's): a fork copies the calling thread alone.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 1
        try:
            os.close(read_fd)
            try:
                payload = b"+" + _packed(_hash_run(accounts, salts, run, lanes, width, stop), width)
            except PorError as exc:
                payload = b"!" + str(exc).encode()
            with open(write_fd, "wb") as out:
                out.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)

    def result() -> _Grown:
        with open(read_fd, "rb") as pipe:
            data = pipe.read()
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if data[:1] == b"!":
            raise PorError(data[1:].decode())
        if code != 0 or data[:1] != b"+":
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            raise PorError(f"a proof-of-reserves worker (pid {pid}) failed: {how}")
        return _unpacked(memoryview(data)[1:], width)

    return result


def _packed(grown: _Grown, width: int) -> bytes:
    """A run's levels and top nodes as bytes for the pipe: the blob count and sizes (u64 BE), then the blobs."""
    levels, hashes, sums = grown
    blobs = [blob for level in levels for blob in level]
    blobs += [b"".join(hashes), b"".join(s.to_bytes(width, "big") for s in sums)]
    return b"".join((struct.pack(f">{len(blobs) + 1}Q", len(blobs), *map(len, blobs)), *blobs))


def _unpacked(data: memoryview, width: int) -> _Grown:
    (count,) = struct.unpack_from(">Q", data)
    at = 8 + 8 * count
    blobs = []
    for size in struct.unpack_from(f">{count}Q", data, 8):
        blobs.append(bytes(data[at:at + size]))
        at += size
    top, top_sums = blobs[-2], blobs[-1]
    return ([(blobs[i], blobs[i + 1]) for i in range(0, count - 2, 2)],
            [top[i:i + 32] for i in range(0, len(top), 32)],
            [int.from_bytes(top_sums[i:i + width], "big") for i in range(0, len(top_sums), width)])


def venue_tree(venue: Venue, secret: bytes, seq: int, workers: int = 1) -> SumTree:
    """The tree over every user account of ``venue`` (exactly the state at ``seq``); ``workers`` as ``build``."""
    from engine.audit import collector_paused

    assets = sorted(venue.assets)
    with collector_paused():  # millions of short tuples and hashes: no cycles, all kept until done
        return build(assets, ((account_id, [account.balances.get(a, 0) for a in assets])
                              for account_id, account in venue.accounts.items() if account_id != FEE_ACCOUNT_ID),
                     secret, seq, workers)


# --- checking ------------------------------------------------------------------------------


def verify_proof(proof: Any, root_hex: Any) -> dict[str, Any]:
    """Recompute a proof's paths; return the account's balances, or raise PorError naming the problem."""
    proof = _object(proof, "the proof")
    scheme = proof.get("scheme")
    if scheme not in SCHEMES:
        raise PorError(f"unknown scheme {scheme!r} (this version reads {', '.join(SCHEMES)})")
    root = _hex(root_hex, "the root", 32)
    assets = _assets(proof.get("assets"))
    account_id = _account_id(proof.get("account_id"))
    parts = [proof] if scheme == SCHEME_V1 else _parts(proof.get("parts"))
    balances = [0] * len(assets)
    totals: list[int] = []
    for part in parts:
        index = 0 if scheme == SCHEME_V1 else part["part"]
        leaf = Leaf(account_id, index, _hex(part.get("salt"), "the salt", SALT_BYTES),
                    _amounts(part.get("balances"), "balance", len(assets)))
        what = "proof" if scheme == SCHEME_V1 else f"part {index} of the proof"
        digest, totals = _climb(leaf, part.get("path"), len(assets), scheme, what)
        if digest != root:
            raise PorError(f"{what} leads to root {digest.hex()}, not the published {root.hex()}")
        balances = [b + a for b, a in zip(balances, leaf.atoms, strict=True)]
    if _amounts(proof.get("balances"), "balance", len(assets)) != balances:
        raise PorError(f"the proof's parts add up to {[str(v) for v in balances]}, not the balances it states")
    if _hex(proof.get("root"), "the proof's root", 32) != root:
        raise PorError(f"the proof states root {proof['root']}, but its paths lead to {root.hex()}")
    if _amounts(proof.get("totals"), "total", len(assets)) != totals:
        raise PorError(f"the proof states totals {proof['totals']}, but its paths add up to {[str(v) for v in totals]}")
    return {"ok": True, "account_id": account_id, "seq": proof.get("seq"), "root": root.hex(),
            "assets": assets, "balances": [str(b) for b in balances], "totals": [str(v) for v in totals]}


def signed_claim(publication: Any, pubkey: str) -> dict[str, Any]:
    """The proof-of-reserves claim of a publication (``por/<seq>.json``) whose checkpoint the venue key signed."""
    from engine import signing
    from engine.audit import CHECKPOINT, canonical

    doc = _object(publication, "the publication")
    body = _object(doc.get("checkpoint"), "the publication's checkpoint")
    try:
        public = signing.load_public(pubkey.strip())
    except signing.KeyError_ as exc:
        raise PorError(str(exc)) from None
    signature = doc.get("signature")
    if type(signature) is not str or not signing.verify(public, CHECKPOINT, canonical(body), signature):
        raise PorError("the publication's signature does not verify with the given venue key")
    claim = _object(body.get("por"), "the signed checkpoint's proof-of-reserves claim")
    if claim.get("seq") != body.get("seq"):
        raise PorError(f"the signed claim names seq {claim.get('seq')!r}, its checkpoint seq {body.get('seq')!r}")
    return claim


def check_proof(proof: Any, *, root: str | None = None, publication: Any = None, pubkey: str | None = None) -> dict[str, Any]:
    """``verify_proof`` against a root the user trusts, or against the root and totals the venue signed."""
    if publication is None:
        return verify_proof(proof, root)
    if not pubkey:
        raise PorError("checking a publication needs the venue's public key (--pubkey), from a source you trust")
    claim = signed_claim(publication, pubkey)
    checked = verify_proof(proof, claim.get("root"))
    for field, value in (("scheme", proof.get("scheme")), ("seq", checked["seq"]), ("assets", checked["assets"]),
                         ("totals", checked["totals"])):
        if claim.get(field) != value:
            raise PorError(f"the proof's {field} {value!r} is not the signed publication's {claim.get(field)!r}")
    return {**checked, "publication": "signature verified with the given venue key"}


def read_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PorError(f"cannot read {what} {path}: {exc}") from None


def _climb(leaf: Leaf, path: Any, lanes: int, scheme: str, what: str) -> tuple[bytes, list[int]]:
    """The root hash and sums a leaf's path leads to."""
    width = LANE_BYTES * lanes
    packed = pack(leaf.atoms)
    digest = leaf_hash(leaf, packed, width, scheme)
    steps = _list(path, f"the path of the {what}")
    if len(steps) > MAX_PATH:
        raise PorError(f"the path of the {what} has {len(steps)} steps (at most {MAX_PATH})")
    for step in steps:
        step = _object(step, "a path step")
        sib_sums = pack(_amounts(step.get("sums"), "sibling sum", lanes))
        sib_hash = _hex(step.get("hash"), "a sibling hash", 32)
        side = step.get("side")
        if side == "L":
            digest = node_hash(sib_hash, sib_sums, digest, packed, width)
        elif side == "R":
            digest = node_hash(digest, packed, sib_hash, sib_sums, width)
        else:
            raise PorError(f"side {side!r} is not L or R")
        packed += sib_sums
        if packed >= 1 << (width * 8) or any(v >= LANE_MAX for v in unpack(packed, lanes)):
            raise PorError("sums overflow")
    return digest, unpack(packed, lanes)


def _parts(value: Any) -> list[dict[str, Any]]:
    parts = [_object(p, "a part") for p in _list(value, "the proof's parts")]
    indexes = [p.get("part") for p in parts]
    if sorted(i for i in indexes if type(i) is int) != list(range(PARTS)) or len(indexes) != PARTS:
        raise PorError(f"the proof's parts are numbered {indexes!r}, not 0 to {PARTS - 1} once each")
    return parts


def _object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise PorError(f"{what} is not a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise PorError(f"{what} is not a list")
    return value


def _assets(value: Any) -> list[str]:
    assets = _list(value, "the proof's asset list")
    if not all(type(a) is str for a in assets):
        raise PorError("the proof's assets are not all names")
    return assets


def _account_id(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise PorError(f"account id {value!r} is not an integer from 0 to 2**64 - 1")
    return value


def _hex(value: Any, what: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value) if type(value) is str else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != size:
        raise PorError(f"{what} {value!r} is not {size} bytes of hex")
    return raw


def _amounts(value: Any, what: str, lanes: int) -> list[int]:
    values = _list(value, f"the {what}s")
    if len(values) != lanes:
        raise PorError(f"{len(values)} {what}s do not match the {lanes} assets")
    return [_atoms(v, what) for v in values]


def _atoms(value: Any, what: str) -> int:
    if type(value) is not str or not (value.isascii() and value.isdigit()):
        raise PorError(f"{what} {value!r} is not a non-negative integer of atoms")
    return int(value)
