"""The interpreter settings the engine serves under: the garbage collector and the GIL switch interval.

``tune_interpreter`` is process-wide; ``Engine.run`` applies it before intake
opens, and benchmarks that measure the engine's code apply it as the engine
does (``tuned_interpreter`` restores the settings from before).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Final

# The collector's thresholds while serving. A young-generation pass walks every young
# object, so its pause grows with the first threshold: measured at 20k orders/s offered
# (journal on tmpfs), 50,000 gave 16-22 ms pauses and 22-38 ms worst acks; 5,000 gives
# 2.8-3.4 ms pauses and 6-9 ms worst acks for the same total GC time (ten times as many
# passes, each a tenth). The older generations stay empty (``freeze_survivors``), so
# their thresholds only decide how often an almost free pass runs.
GC_THRESHOLD: Final = (5_000, 50, 1_000)


def freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook: after every pass, freeze what survived it.

    What outlives a young-generation pass is the engine's long-lived state
    (resting orders, accounts, histories), freed by reference counting when it
    goes, never by the collector. Left in the older generations it made every
    middle pass walk all of it: 20-80 ms inside the 20k/s latency run, one or
    two per five seconds, the largest stalls in its ack tail. Frozen, it is
    never walked again; a young pass still collects the cycles that die young.
    The cost is a cycle that survives one pass and dies later: the collector
    never frees it. Measured: none per order (the engine and FIX runs leave the
    same cyclic garbage at any length, 65-340 objects of start-up class
    building), so this bounds nothing that grows with the traffic.
    """
    if phase == "stop":
        gc.freeze()


def tune_interpreter() -> None:
    """Process-wide settings the engine's latency depends on (reference/performance.md §4.1).

    * Recovered state is long-lived: ``gc.freeze()`` moves it out of the
      collector's sight, and ``freeze_survivors`` does the same for what the
      engine builds while it serves.
    * ``GC_THRESHOLD``: see there.
    * The journal's fsync thread needs the GIL back the moment the disk answers;
      the default 5 ms switch interval would add up to 5 ms to every ack under load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    if freeze_survivors not in gc.callbacks:
        gc.callbacks.append(freeze_survivors)
    sys.setswitchinterval(0.0005)


@contextlib.contextmanager
def tuned_interpreter() -> Iterator[None]:
    """``tune_interpreter`` for a block, then the settings from before it (benchmarks that also
    measure code under the interpreter's defaults, and tests)."""
    threshold, switch_interval = gc.get_threshold(), sys.getswitchinterval()
    tune_interpreter()
    try:
        yield
    finally:
        if freeze_survivors in gc.callbacks:
            gc.callbacks.remove(freeze_survivors)
        gc.unfreeze()
        gc.set_threshold(*threshold)
        sys.setswitchinterval(switch_interval)
