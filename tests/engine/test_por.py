"""The Merkle sum tree of proof of reserves: proofs verify, and every way of cheating is caught."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.por import PorError, SumTree, salt_for, verify_proof

ASSETS = ["BTC", "SOL", "USDC"]


def tree_of(balances: dict[int, list[int]], seq: int = 7) -> SumTree:
    secret = b"s" * 32
    return SumTree(ASSETS, [(a, salt_for(secret, seq, a), b) for a, b in balances.items()])


BOOK = {1: [0, 5, 100], 2: [3, 0, 7], 3: [0, 0, 0], 4: [10, 20, 30], 5: [1, 1, 1]}


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 17])
def test_every_account_proof_verifies_and_totals_add_up(n: int) -> None:
    balances = {i: [i, 2 * i, 3 * i] for i in range(1, n + 1)}
    tree = tree_of(balances)
    assert tree.totals == [sum(b[k] for b in balances.values()) for k in range(3)]
    for account_id, mine in balances.items():
        checked = verify_proof(tree.proof(account_id, 7), tree.root.hex())
        assert checked["balances"] == [str(v) for v in mine] and checked["totals"] == [str(v) for v in tree.totals]


def test_a_forged_balance_in_a_proof_fails() -> None:
    tree = tree_of(BOOK)
    proof = tree.proof(4, 7)
    proof["balances"][2] = "29"  # the venue shows the user one atom less
    with pytest.raises(PorError, match="not the published"):
        verify_proof(proof, tree.root.hex())


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
    bad["path"][0]["sums"][1] = "-5"
    with pytest.raises(PorError, match="non-negative"):
        verify_proof(bad, tree.root.hex())
    bad = copy.deepcopy(proof)
    bad["path"][0]["sums"] = ["1"]
    with pytest.raises(PorError, match="asset list"):
        verify_proof(bad, tree.root.hex())
    with pytest.raises(PorError, match="malformed"):
        verify_proof({"scheme": "satchel-por-v1"}, tree.root.hex())


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
    flipped["path"][0]["side"] = "L" if proof["path"][0]["side"] == "R" else "R"
    with pytest.raises(PorError):
        verify_proof(flipped, tree.root.hex())
    wrong = copy.deepcopy(proof)
    wrong["path"][1]["hash"] = "00" * 32
    with pytest.raises(PorError):
        verify_proof(wrong, tree.root.hex())


def test_salts_differ_per_account_and_publication() -> None:
    secret = b"k" * 32
    assert salt_for(secret, 1, 1) != salt_for(secret, 1, 2) != salt_for(secret, 2, 1)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 10_000), st.lists(st.integers(0, 10**18), min_size=3, max_size=3),
                       min_size=1, max_size=40), st.data())
def test_any_tree_proves_any_member(balances: dict[int, list[int]], data: st.DataObject) -> None:
    tree = tree_of(balances)
    account = data.draw(st.sampled_from(sorted(balances)))
    assert verify_proof(tree.proof(account, 7), tree.root.hex())["balances"] == [str(v) for v in balances[account]]
