"""Proof of reserves: a Merkle sum tree over every account's liabilities per asset.

Scheme ``satchel-por-v1`` (documented in README):

* Leaves are user accounts (the venue's fee account is the venue's own money, not a
  liability, and is left out), in account-id order. A leaf's liabilities are its
  total balance per asset (available + locked), in atoms, in the published asset
  order. A negative balance is refused: the tree is not built.
* ``sums`` are packed as 16-byte big-endian lanes, one per asset.
  ``leaf = blake2b-256("satchel/por/leaf/v1" | account_id u64 BE | salt(16) | sums)``
  ``node = blake2b-256("satchel/por/node/v1" | left.hash | left.sums | right.hash | right.sums)``
  with ``node.sums = left.sums + right.sums`` lane by lane. A level of odd length
  pairs its last node with ``pad = blake2b-256("satchel/por/pad/v1" | level u32 BE)``,
  sums zero. Hashing the sums into every node means a venue cannot shave a
  liability off one branch without changing the root.
* ``salt`` is derived from the venue's secret key, the checkpoint seq and the
  account id, and given to the account in its proof: siblings' hashes in a proof
  reveal nothing a neighbour could brute-force.
* The root hash and the totals are put in a checkpoint signed with the venue key.

A proof lists the leaf (account id, salt, balances) and, from the bottom up, each
sibling's side, hash and sums. ``verify_proof`` recomputes the path, refuses a
negative or oversized sibling sum (the classic trick to hide liabilities), and
compares with the published root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from engine.messages import FEE_ACCOUNT_ID

if TYPE_CHECKING:
    from engine.venue import Venue

LEAF: Final = b"satchel/por/leaf/v1"
NODE: Final = b"satchel/por/node/v1"
PAD: Final = b"satchel/por/pad/v1"
LANE_BYTES: Final = 16
LANE_MAX: Final = 1 << 120  # far above any real total; lanes can never carry into each other
SCHEME: Final = "satchel-por-v1"


class PorError(ValueError):
    """A tree that must not be built, or a proof that does not hold; the message says why."""


def pack(values: Iterable[int]) -> int:
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


def salt_for(secret: bytes, seq: int, account_id: int) -> bytes:
    return hashlib.blake2b(seq.to_bytes(8, "big") + account_id.to_bytes(8, "big"), key=secret, digest_size=16).digest()


def leaf_hash(account_id: int, salt: bytes, packed: int, width: int) -> bytes:
    return hashlib.blake2b(LEAF + account_id.to_bytes(8, "big") + salt + packed.to_bytes(width, "big"),
                           digest_size=32).digest()


def pad_hash(level: int) -> bytes:
    return hashlib.blake2b(PAD + level.to_bytes(4, "big"), digest_size=32).digest()


class SumTree:
    """The whole tree, kept level by level so any account's proof can be read off it."""

    def __init__(self, assets: list[str], leaves: list[tuple[int, bytes, list[int]]]) -> None:
        """``leaves``: (account_id, salt, atoms per asset), any order; ids must be unique."""
        self.assets = assets
        lanes = len(assets)
        self.width = width = LANE_BYTES * lanes
        leaves = sorted(leaves, key=lambda leaf: leaf[0])
        self.index: dict[int, int] = {}
        hashes: list[bytes] = []
        sums: list[int] = []
        for i, (account_id, salt, atoms) in enumerate(leaves):
            if len(atoms) != lanes:
                raise PorError(f"account {account_id}: {len(atoms)} balances for {lanes} assets")
            try:
                packed = pack(atoms)
            except PorError as exc:
                raise PorError(f"account {account_id}: {exc}") from None
            if account_id in self.index:
                raise PorError(f"account {account_id} appears twice")
            self.index[account_id] = i
            hashes.append(leaf_hash(account_id, salt, packed, width))
            sums.append(packed)
        self.leaves = leaves
        self.levels: list[tuple[list[bytes], list[int]]] = [(hashes, sums)]
        blake, node = hashlib.blake2b, NODE
        level = 0
        while len(hashes) > 1:
            if len(hashes) % 2:
                hashes = [*hashes, pad_hash(level)]
                sums = [*sums, 0]
                self.levels[-1] = (hashes, sums)
            up_h: list[bytes] = []
            up_s: list[int] = []
            for j in range(0, len(hashes), 2):
                ls, rs = sums[j], sums[j + 1]
                up_h.append(blake(node + hashes[j] + ls.to_bytes(width, "big") + hashes[j + 1] + rs.to_bytes(width, "big"),
                                  digest_size=32).digest())
                up_s.append(ls + rs)
            hashes, sums = up_h, up_s
            self.levels.append((hashes, sums))
            level += 1
        if not hashes:
            self.root, self.root_sums = pad_hash(0), 0
        else:
            self.root, self.root_sums = hashes[0], sums[0]

    @property
    def totals(self) -> list[int]:
        return unpack(self.root_sums, len(self.assets))

    def proof(self, account_id: int, seq: int) -> dict[str, Any]:
        i = self.index.get(account_id)
        if i is None:
            raise PorError(f"account {account_id} has no leaf in the tree at seq {seq}")
        _, salt, atoms = self.leaves[i]
        lanes = len(self.assets)
        path = []
        for hashes, sums in self.levels[:-1]:
            sibling = i ^ 1
            path.append({
                "side": "L" if sibling < i else "R",
                "hash": hashes[sibling].hex(),
                "sums": [str(v) for v in unpack(sums[sibling], lanes)],
            })
            i //= 2
        return {
            "scheme": SCHEME, "seq": seq, "account_id": account_id, "salt": salt.hex(), "assets": self.assets,
            "balances": [str(v) for v in atoms], "path": path,
            "root": self.root.hex(), "totals": [str(v) for v in self.totals],
        }


def venue_tree(venue: Venue, secret: bytes, seq: int) -> SumTree:
    """The tree over every user account of ``venue`` (exactly the state at ``seq``)."""
    from engine.audit import collector_paused

    assets = sorted(venue.assets)
    with collector_paused():  # millions of short tuples and hashes: no cycles, all kept until done
        leaves = []
        for account_id, account in venue.accounts.items():
            if account_id == FEE_ACCOUNT_ID:
                continue
            balances = account.balances
            leaves.append((account_id, salt_for(secret, seq, account_id), [balances.get(a, 0) for a in assets]))
        return SumTree(assets, leaves)


def verify_proof(proof: dict[str, Any], root_hex: str) -> dict[str, Any]:
    """Recompute a proof's path; return the account's balances, or raise PorError naming the problem."""
    try:
        if proof.get("scheme") != SCHEME:
            raise PorError(f"unknown scheme {proof.get('scheme')!r} (expected {SCHEME})")
        assets = list(proof["assets"])
        lanes = len(assets)
        width = LANE_BYTES * lanes
        account_id = int(proof["account_id"])
        salt = bytes.fromhex(proof["salt"])
        balances = [_atoms(v, "balance") for v in proof["balances"]]
        if len(balances) != lanes:
            raise PorError("balances do not match the asset list")
        packed = pack(balances)
        digest = leaf_hash(account_id, salt, packed, width)
        for step in proof["path"]:
            sums = [_atoms(v, "sibling sum") for v in step["sums"]]
            if len(sums) != lanes:
                raise PorError("a sibling's sums do not match the asset list")
            sib_sums = pack(sums)
            sib_hash = bytes.fromhex(step["hash"])
            if len(sib_hash) != 32:
                raise PorError("a sibling hash is not 32 bytes")
            if step["side"] == "L":
                digest = hashlib.blake2b(NODE + sib_hash + sib_sums.to_bytes(width, "big") + digest
                                         + packed.to_bytes(width, "big"), digest_size=32).digest()
            elif step["side"] == "R":
                digest = hashlib.blake2b(NODE + digest + packed.to_bytes(width, "big") + sib_hash
                                         + sib_sums.to_bytes(width, "big"), digest_size=32).digest()
            else:
                raise PorError(f"side {step['side']!r} is not L or R")
            packed += sib_sums
            if packed >= 1 << (width * 8) or any(v >= LANE_MAX for v in unpack(packed, lanes)):
                raise PorError("sums overflow")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PorError):
            raise
        raise PorError(f"malformed proof: {exc}") from None
    if digest.hex() != root_hex.lower():
        raise PorError(f"proof leads to root {digest.hex()}, not the published {root_hex}")
    return {"ok": True, "account_id": account_id, "seq": proof.get("seq"), "root": digest.hex(),
            "assets": assets, "balances": [str(b) for b in balances],
            "totals": [str(v) for v in unpack(packed, lanes)]}


def _atoms(value: Any, what: str) -> int:
    if type(value) is not str or not value.isdigit():
        raise PorError(f"{what} {value!r} is not a non-negative integer of atoms")
    return int(value)
