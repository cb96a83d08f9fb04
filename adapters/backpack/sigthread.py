"""Ed25519 verification on a worker thread, so the event loop keeps matching while signatures are checked.

Why: verifying one signature (libsodium via PyNaCl) costs ~75 µs of CPU, the
largest single cost of a signed REST order, and the event loop's thread is the
one the whole engine runs on. libsodium runs without the GIL (cffi releases it
around every call), so a second thread verifies in parallel with the loop. The
worker takes every job queued since its last pass and reports them back with
one ``run_sync_soon``; a connection hands over all the orders it read at once,
so the loop pays one hand-off per batch, not per order.

Invariants: every signature is verified, exactly as ``auth.valid_signature``
does on the loop (nothing is cached or skipped); results come back in the
order of the items given. Bounded: at most ``MAX_QUEUED`` jobs wait; beyond that
(or once the thread is stopped) a job is verified on the caller's thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Final

import trio

from adapters.backpack.auth import valid_signature

log = logging.getLogger("satchel.adapters.backpack")

MAX_QUEUED: Final = 1024  # jobs (one per connection's batch) waiting for the worker
Item = tuple[bytes, bytes, bytes]  # public key, signature, signed message


class _Job:
    __slots__ = ("items", "results", "task")

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.results: list[bool] = []
        self.task = trio.lowlevel.current_task()


class SignatureThread:
    """One worker thread that verifies batches of signatures; ``verify`` awaits a batch's results."""

    def __init__(self) -> None:
        self._jobs: deque[_Job] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stopping = False

    @contextlib.contextmanager
    def running(self) -> Iterator[SignatureThread]:
        """Run the worker while the block runs (inside trio); stop it after (the batch in progress completes)."""
        self._token = trio.lowlevel.current_trio_token()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="satchel-ed25519", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            with self._wake:
                self._stopping = True
                self._wake.notify()
            self._thread = None

    async def verify(self, items: list[Item]) -> list[bool]:
        """Whether each signature is valid, in order. Verified on the worker, or here if it is not running or full."""
        if self._thread is None or self._stopping or len(self._jobs) >= MAX_QUEUED:
            return [valid_signature(key, signature, message) for key, signature, message in items]
        job = _Job(items)
        with self._wake:
            self._jobs.append(job)
            self._wake.notify()

        def abort(_: Any) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED  # the worker holds the job: wait for its answer (it is quick)

        await trio.lowlevel.wait_task_rescheduled(abort)
        return job.results

    def _work(self) -> None:
        """The worker: take every queued job, verify, hand the finished ones back to trio in one call."""
        jobs, wake = self._jobs, self._wake
        while True:
            with wake:
                while not jobs and not self._stopping:
                    wake.wait()
                if not jobs:
                    return
                taken = list(jobs)
                jobs.clear()
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
