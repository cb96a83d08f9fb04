"""Ed25519 verification on worker threads, so the event loop keeps matching while signatures are checked.

Why: verifying one signature (libsodium via PyNaCl) costs ~75-130 µs of CPU, the
largest single cost of a signed REST order, and the event loop's thread is the
one the whole engine runs on. libsodium runs without the GIL (cffi releases it
around every call), so other threads verify in parallel with the loop and with
each other. One worker per core, at most two (``default_workers``, ``MAX_WORKERS``).
Why two: a single worker does ~45% of the server's CPU per order, about as much as
the loop, but can use at most one core (on a shared machine, only its share of
one), so it can hold the loop up waiting for its answers. Measured on a busy
shared box, two workers beat one in 10 of 14 interleaved pairs: 3.0k -> 3.9k
orders/s (median of 6 pairs) in one sitting; 3.7k against 3.8k for one worker
(8 pairs) in another, where other tenants' load set the rate. Each pass, a
worker takes its share of the queued jobs (the rest are left to the other
workers) and reports them back with one ``run_sync_soon``. A connection hands
over all the orders it read at once, so the loop pays one hand-off per batch,
not per order.

Helper processes instead of threads (no GIL shared with the loop) were tried and
measured worse: 3.1k against 4.3k orders/s for threads, median of 6 interleaved
pairs, for the same total CPU per order.

Invariants: every signature is verified, exactly as ``auth.valid_signature``
does on the loop (nothing is cached or skipped); results come back in the
order of the items given. Bounded: at most ``MAX_QUEUED`` jobs wait; beyond that
(or once the workers are stopped) a job is verified on the caller's thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

import trio

from adapters.backpack.auth import valid_signature

log = logging.getLogger("satchel.adapters.backpack")

MAX_QUEUED: Final = 1024  # jobs (one per connection's batch) waiting for the workers
# Verifying costs about as much CPU per order as the loop's own work, so two workers keep up with the one loop
# thread; more would only add GIL hand-offs (each verify takes the GIL back once).
MAX_WORKERS: Final = 2
Item = tuple[bytes, bytes, bytes]  # public key, signature, signed message


class _Job:
    __slots__ = ("items", "results", "task")

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.results: list[bool] = []
        self.task = trio.lowlevel.current_task()


def default_workers() -> int:
    """One worker per core this process may run on, at most ``MAX_WORKERS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


class SignatureThread:
    """Worker threads that verify batches of signatures; ``verify`` awaits a batch's results."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._stopping = False

    @contextlib.contextmanager
    def running(self) -> Iterator[SignatureThread]:
        """Run the workers while the block runs (inside trio); stop them after (batches in progress complete)."""
        self._token = trio.lowlevel.current_trio_token()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"satchel-ed25519-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            with self._wake:
                self._stopping = True
                self._wake.notify_all()
            self._threads = []

    async def verify(self, items: list[Item]) -> list[bool]:
        """Whether each signature is valid, in order. Verified on a worker, or here if none runs or the queue is full."""
        if not self._threads or self._stopping or len(self._jobs) >= MAX_QUEUED:
            return [valid_signature(key, signature, message) for key, signature, message in items]
        job = _Job(items)
        with self._wake:
            self._jobs.append(job)
            self._wake.notify()

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED  # a worker holds the job: wait for its answer (it is quick)

        await trio.lowlevel.wait_task_rescheduled(abort)
        return job.results

    def _work(self) -> None:
        """A worker: take a share of the queued jobs, verify, hand the finished ones back to trio in one call."""
        jobs, wake, workers = self._jobs, self._wake, self.workers
        while True:
            with wake:
                while not jobs and not self._stopping:
                    wake.wait()
                if not jobs:
                    return
                share = -(-len(jobs) // workers)  # ceil: the other workers take the rest
                taken = [jobs.popleft() for _ in range(share)]
                if jobs:
                    wake.notify()  # an idle worker can start on what is left now
            for job in taken:
                try:
                    job.results = [valid_signature(key, signature, message) for key, signature, message in job.items]
                except Exception:  # a bug, never a bad signature (that is False): fail these requests, keep the worker
                    log.exception("signature verification failed")
                    job.results = [False] * len(job.items)
            assert self._token is not None
            try:
                self._token.run_sync_soon(_finish, taken)
            except trio.RunFinishedError:
                return


def _finish(jobs: list[_Job]) -> None:
    """On the event loop: wake the tasks that wait for these jobs."""
    for job in jobs:
        trio.lowlevel.reschedule(job.task)
