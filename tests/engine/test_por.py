"""The Merkle sum tree of proof of reserves: proofs verify, every way of cheating is caught, and a proof
shows its holder nothing exact about another account."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import por
from engine.audit import checkpoint_body, checkpoint_payload
from engine.cli import main
from engine.por import (
    PARTS,
    SCHEME_V1,
    Leaf,
    PorError,
    SumTree,
    build,
    check_proof,
    from_leaves,
    verify_proof,
)
from engine.signing import VenueKey
from tests.engine.helpers import NOW_US

ASSETS = ["BTC", "SOL", "USDC"]
SECRET = b"s" * 32


def tree_of(balances: dict[int, list[int]], seq: int = 7) -> SumTree:
    return build(ASSETS, balances.items(), SECRET, seq)


def publication_of(tree: SumTree, seq: int, key: VenueKey) -> dict[str, Any]:
    """``por/<seq>.json`` as the checkpointer writes it: the claim plus the signed checkpoint that carries it."""
    signed = orjson.loads(checkpoint_payload(key, checkpoint_body(seq, bytes(32), "0" * 64, NOW_US, "por",
                                                                  tree.publication(seq))))
    return {**tree.publication(seq), "venue_key": key.public_b64, "checkpoint": signed["body"],
            "signature": signed["signature"]}


BOOK = {1: [0, 5, 100], 2: [3, 0, 7], 3: [0, 0, 0], 4: [10, 20, 30], 5: [1, 1, 1]}
# balances nobody would hold by chance: a path step that shows one exactly names its owner's holdings
RICH = {i: [10**9 + 7919 * i, 3 * 10**12 + 104729 * i, 5 * 10**11 + 1299709 * i] for i in range(1, 18)}


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 17])
def test_every_account_proof_verifies_and_totals_add_up(n: int) -> None:
    balances = {i: [i, 2 * i, 3 * i] for i in range(1, n + 1)}
    tree = tree_of(balances)
    assert tree.totals == [sum(b[k] for b in balances.values()) for k in range(3)]
    assert tree.publication(7)["accounts"] == n and len(tree.leaves) == n * PARTS
    for account_id, mine in balances.items():
        checked = verify_proof(tree.proof(account_id, 7), tree.root.hex())
        assert checked["balances"] == [str(v) for v in mine] and checked["totals"] == [str(v) for v in tree.totals]


def test_leaves_are_shuffled_and_drawn_per_publication() -> None:
    """Audit finding 10: in scheme 1 account 1's first sibling was account 2's leaf (account-id order), so every
    proof showed a known neighbour's exact balances. Now a leaf's neighbours are drawn per publication."""
    old = SumTree(ASSETS, [Leaf(a, 0, bytes(16), b) for a, b in RICH.items()], SCHEME_V1)
    assert [int(v) for v in old.proof(1, 7)["path"][0]["sums"]] == RICH[2]  # what this test catches
    tree = tree_of(RICH)
    order = [leaf.account_id for leaf in tree.leaves]
    assert order != sorted(order)  # not in account-id order: a position does not say whose leaf it is
    again, later = tree_of(RICH), tree_of(RICH, seq=8)
    assert again.root == tree.root  # the venue can rebuild it from its key
    assert later.root != tree.root and [f.account_id for f in later.leaves] != order
    assert tree_of({1: [5, 6, 7]}).leaves[0].salt != tree_of({1: [5, 6, 7]}, seq=8).leaves[0].salt


def test_a_forged_balance_in_a_proof_fails() -> None:
    tree = tree_of(BOOK)
    proof = tree.proof(4, 7)
    proof["parts"][0]["balances"][2] = str(int(proof["parts"][0]["balances"][2]) + 1)  # one atom more in a part
    with pytest.raises(PorError, match="part 0 of the proof leads to root"):
        verify_proof(proof, tree.root.hex())
    proof = tree.proof(4, 7)
    proof["balances"][2] = "29"  # the venue shows the user one atom less than its parts hold
    with pytest.raises(PorError, match="parts add up to"):
        verify_proof(proof, tree.root.hex())


def test_a_proof_must_show_every_part_once() -> None:
    tree = tree_of(BOOK)
    proof = tree.proof(4, 7)
    short = copy.deepcopy(proof)
    del short["parts"][0]
    with pytest.raises(PorError, match="numbered"):
        verify_proof(short, tree.root.hex())
    twice = copy.deepcopy(proof)
    twice["parts"].append(twice["parts"][0])
    with pytest.raises(PorError, match="numbered"):
        verify_proof(twice, tree.root.hex())


def test_a_venue_that_understates_a_liability_changes_the_root() -> None:
    honest = tree_of(BOOK)
    shaved = tree_of({**BOOK, 2: [3, 0, 6]})
    proof = honest.proof(2, 7)
    with pytest.raises(PorError):
        verify_proof(proof, shaved.root.hex())  # the user's true balance does not lead to the published root


def test_negative_leaves_are_refused_when_building() -> None:
    with pytest.raises(PorError, match="account 2: negative liability"):
        tree_of({1: [1, 1, 1], 2: [0, -5, 0]})


def test_a_negative_or_malformed_sibling_sum_is_refused() -> None:
    tree = tree_of(BOOK)
    proof = tree.proof(1, 7)
    bad = copy.deepcopy(proof)
    bad["parts"][0]["path"][0]["sums"][1] = "-5"
    with pytest.raises(PorError, match="non-negative"):
        verify_proof(bad, tree.root.hex())
    bad = copy.deepcopy(proof)
    bad["parts"][0]["path"][0]["sums"] = ["1"]
    with pytest.raises(PorError, match="3 assets"):
        verify_proof(bad, tree.root.hex())


def test_a_dropped_account_is_detected() -> None:
    full = tree_of(BOOK)
    without = tree_of({k: v for k, v in BOOK.items() if k != 4})
    assert without.root != full.root and without.totals != full.totals
    with pytest.raises(PorError, match="no leaf"):
        without.proof(4, 7)  # the venue cannot give the dropped user a proof
    with pytest.raises(PorError):
        verify_proof(full.proof(4, 7), without.root.hex())  # and the old proof does not reach the new root


def test_tampered_sibling_hash_or_side_fails() -> None:
    tree = tree_of(BOOK)
    proof = tree.proof(3, 7)
    flipped = copy.deepcopy(proof)
    step = flipped["parts"][0]["path"][0]
    step["side"] = "L" if step["side"] == "R" else "R"
    with pytest.raises(PorError):
        verify_proof(flipped, tree.root.hex())
    wrong = copy.deepcopy(proof)
    wrong["parts"][0]["path"][1]["hash"] = "00" * 32
    with pytest.raises(PorError):
        verify_proof(wrong, tree.root.hex())


def test_the_leaves_file_rebuilds_the_same_tree() -> None:
    tree = tree_of(BOOK)
    again = from_leaves(orjson.loads(orjson.dumps(tree.leaves_doc(7))))
    assert again.root == tree.root and again.proof(4, 7) == tree.proof(4, 7)


@pytest.fixture
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork workers for any tree, with runs of whole 4-leaf subtrees, so small trees cut the way a million does."""
    monkeypatch.setattr(por, "PARALLEL_MIN", 1)
    monkeypatch.setattr(por, "SPLIT_LEVELS", 2)


@pytest.mark.parametrize("n", [1, 2, 4, 5, 8, 9, 12, 13, 16, 17, 31, 33])
@pytest.mark.parametrize("workers", [2, 3])
def test_a_tree_built_in_several_processes_is_the_one_built_in_one(small_runs: None, n: int, workers: int) -> None:
    """Each run climbs its own subtrees in a forked process; only the last run pads, as the whole level would."""
    balances = {i: [i, 2 * i + 1, 3 * i] for i in range(1, n + 1)}
    alone = build(ASSETS, balances.items(), SECRET, 7)
    split = build(ASSETS, balances.items(), SECRET, 7, workers)
    assert (split.root, split.root_sums, split.levels, split.leaves) == (alone.root, alone.root_sums, alone.levels,
                                                                        alone.leaves)
    for account_id in balances:
        assert split.proof(account_id, 7) == alone.proof(account_id, 7)
        verify_proof(split.proof(account_id, 7), split.root.hex())


def test_a_bad_balance_in_a_forked_run_is_refused_naming_the_account(small_runs: None) -> None:
    balances = {i: [1, 1, 1] for i in range(1, 20)}
    for account_id in (1, 19):  # whichever run (this process's or a child's) holds it
        with pytest.raises(PorError, match=f"account {account_id}: negative liability"):
            build(ASSETS, {**balances, account_id: [1, -1, 1]}.items(), SECRET, 7, 3)


def test_a_worker_that_dies_fails_the_build_and_says_so(small_runs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    parent, hash_run = os.getpid(), por._hash_run

    def dying(*args: Any) -> Any:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return hash_run(*args)

    monkeypatch.setattr(por, "_hash_run", dying)
    with pytest.raises(PorError, match=r"proof-of-reserves worker \(pid \d+\) failed: killed by signal 9"):
        build(ASSETS, {i: [1, 1, 1] for i in range(1, 20)}.items(), SECRET, 7, 2)


def test_scheme_1_trees_and_proofs_still_check() -> None:
    """Publications made before scheme 2 (one leaf per account, in account order) keep their leaves files and proofs."""
    leaves = [Leaf(a, 0, bytes([a]) * 16, b) for a, b in sorted(BOOK.items())]
    old = SumTree(ASSETS, leaves, SCHEME_V1)
    proof = old.proof(4, 7)
    assert proof["scheme"] == SCHEME_V1 and "parts" not in proof
    assert verify_proof(proof, old.root.hex())["balances"] == ["10", "20", "30"]
    assert from_leaves(old.leaves_doc(7)).root == old.root


MALFORMED = [
    ([], "not a JSON object"),
    ("x", "not a JSON object"),
    ({"scheme": "satchel-por-v9"}, "unknown scheme"),
    ({"account_id": -1}, "account id -1"),
    ({"account_id": True}, "account id True"),
    ({"account_id": 1 << 64}, "account id"),
    ({"assets": "BSU"}, "asset list is not a list"),
    ({"parts": {"a": 1}}, "parts is not a list"),
    ({"parts": [None] * PARTS}, "a part is not a JSON object"),
    ({"balances": ["١٩٩٩", "0", "0"]}, "not a non-negative integer"),  # digits, but not ASCII ones
]


@pytest.mark.parametrize(("edit", "problem"), MALFORMED)
def test_a_malformed_proof_is_refused_naming_the_problem(edit: Any, problem: str) -> None:
    tree = tree_of(BOOK)
    proof = edit if not isinstance(edit, dict) else {**tree.proof(1, 7), **edit}
    with pytest.raises(PorError, match=problem):
        verify_proof(proof, tree.root.hex())


@pytest.mark.parametrize("edit", [lambda p: p["parts"][0].update(salt=None), lambda p: p["parts"][0].update(path=[None]),
                                  lambda p: p["parts"][0].update(path={"a": 1}), lambda p: p["parts"][0].update(part="0")])
def test_a_malformed_part_is_refused(edit: Any) -> None:
    tree = tree_of(BOOK)
    proof = tree.proof(1, 7)
    edit(proof)
    with pytest.raises(PorError):
        verify_proof(proof, tree.root.hex())


def test_a_proof_checks_against_the_signed_publication() -> None:
    key, other = VenueKey(Ed25519PrivateKey.generate()), VenueKey(Ed25519PrivateKey.generate())
    tree = tree_of(BOOK)
    publication = publication_of(tree, 7, key)
    checked = check_proof(tree.proof(4, 7), publication=publication, pubkey=key.public_b64)
    assert checked["ok"] and checked["totals"] == publication["checkpoint"]["por"]["totals"]
    with pytest.raises(PorError, match="does not verify"):
        check_proof(tree.proof(4, 7), publication=publication, pubkey=other.public_b64)
    with pytest.raises(PorError, match="public key"):
        check_proof(tree.proof(4, 7), publication=publication)
    lying = copy.deepcopy(publication)
    lying["checkpoint"]["por"]["totals"][0] = "1"  # edited after signing
    with pytest.raises(PorError, match="does not verify"):
        check_proof(tree.proof(4, 7), publication=lying, pubkey=key.public_b64)


def test_a_proof_from_another_tree_does_not_check_against_the_publication() -> None:
    """The root a proof carries is not taken at face value: the signed one decides."""
    key = VenueKey(Ed25519PrivateKey.generate())
    published = tree_of(BOOK)
    publication = publication_of(published, 7, key)
    padded = tree_of({**BOOK, 9: [0, 0, 10**6]})  # a tree shown to one user, not the one signed
    with pytest.raises(PorError, match="not the published"):
        check_proof(padded.proof(4, 7), publication=publication, pubkey=key.public_b64)
    lying = padded.proof(4, 7)
    lying["root"] = published.root.hex()
    with pytest.raises(PorError):
        check_proof(lying, root=published.root.hex())


def test_satchel_por_verify_checks_a_publication_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = VenueKey(Ed25519PrivateKey.generate())
    tree = tree_of(BOOK)
    (tmp_path / "pub.json").write_bytes(orjson.dumps(publication_of(tree, 7, key)))
    (tmp_path / "proof.json").write_bytes(orjson.dumps(tree.proof(2, 7)))
    args = ["por", "verify", str(tmp_path / "proof.json")]
    assert main([*args, "--publication", str(tmp_path / "pub.json"), "--pubkey", key.public_b64]) == 0
    assert orjson.loads(capsys.readouterr().out)["balances"] == ["3", "0", "7"]
    assert main([*args, "--root", tree.root.hex()]) == 0
    capsys.readouterr()
    wrong = VenueKey(Ed25519PrivateKey.generate()).public_b64
    assert main([*args, "--publication", str(tmp_path / "pub.json"), "--pubkey", wrong]) == 1
    assert "does not verify" in orjson.loads(capsys.readouterr().out)["error"]


@pytest.mark.parametrize("text", [b"[]", b'"x"', b"{", b'{"scheme": "satchel-por-v2", "account_id": -1}'])
def test_satchel_por_verify_on_a_bad_proof_is_one_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: bytes) -> None:
    (tmp_path / "proof.json").write_bytes(text)
    assert main(["por", "verify", str(tmp_path / "proof.json"), "--root", "00" * 32]) == 1
    answer = orjson.loads(capsys.readouterr().out)
    assert answer["ok"] is False and "\n" not in answer["error"]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 10_000), st.lists(st.integers(0, 10**18), min_size=3, max_size=3),
                       min_size=1, max_size=40), st.data())
def test_any_tree_proves_any_member(balances: dict[int, list[int]], data: st.DataObject) -> None:
    tree = tree_of(balances)
    account = data.draw(st.sampled_from(sorted(balances)))
    assert verify_proof(tree.proof(account, 7), tree.root.hex())["balances"] == [str(v) for v in balances[account]]
