"""Signatures verified on the worker thread: the same verdicts as on the loop, in order, for concurrent callers."""

from __future__ import annotations

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.backpack.auth import valid_signature
from adapters.backpack.sigthread import MAX_WORKERS, Item, SignatureThread, default_workers


def items(n: int, forged: set[int]) -> list[Item]:
    """``n`` signed messages; those in ``forged`` have their message changed after signing."""
    private = Ed25519PrivateKey.generate()
    key = private.public_key().public_bytes_raw()
    out = []
    for i in range(n):
        message = f"instruction=orderExecute&clientId={i}&timestamp=1&window=5000".encode()
        signature = private.sign(message)
        out.append((key, signature, message + b"0" if i in forged else message))
    return out


async def test_verdicts_match_the_loop_in_order_for_concurrent_callers() -> None:
    batches = [items(5, {1, 4}), items(3, set()), items(4, {0, 1, 2, 3}), items(1, {0})]
    results: dict[int, list[bool]] = {}
    checker = SignatureThread()

    async def one(i: int) -> None:
        results[i] = await checker.verify(batches[i])

    with trio.fail_after(10), checker.running():
        async with trio.open_nursery() as nursery:
            for i in range(len(batches)):
                nursery.start_soon(one, i)
    for i, batch in enumerate(batches):
        assert results[i] == [valid_signature(*item) for item in batch]
    assert results[0] == [True, False, True, True, False] and results[3] == [False]


async def test_verifies_on_the_callers_thread_when_not_running() -> None:
    checker = SignatureThread()
    batch = items(3, {2})
    assert await checker.verify(batch) == [True, True, False]  # never started
    with checker.running():
        assert await checker.verify(batch) == [True, True, False]
    assert await checker.verify(batch) == [True, True, False]  # stopped


async def test_several_workers_share_the_queue_and_keep_each_batch_in_order() -> None:
    """Many callers at once on three workers: each caller gets its own batch's verdicts, in its order."""
    batches = [items(1 + i % 4, {i % 3}) for i in range(24)]
    results: dict[int, list[bool]] = {}
    checker = SignatureThread(workers=3)

    async def one(i: int) -> None:
        results[i] = await checker.verify(batches[i])

    with trio.fail_after(20), checker.running():
        assert len(checker._threads) == 3
        async with trio.open_nursery() as nursery:
            for i in range(len(batches)):
                nursery.start_soon(one, i)
    for i, batch in enumerate(batches):
        assert results[i] == [valid_signature(*item) for item in batch]
        assert results[i] == [j != i % 3 for j in range(len(batch))]


def test_one_worker_per_core_within_bounds() -> None:
    assert 1 <= default_workers() <= MAX_WORKERS
    assert SignatureThread().workers == default_workers()
