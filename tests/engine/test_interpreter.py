"""The interpreter settings the engine serves under (engine/interpreter.py ``tune_interpreter``)."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from engine.interpreter import GC_THRESHOLD, freeze_survivors, tune_interpreter, tuned_interpreter


class _Node:
    """A container the collector tracks; two of them pointing at each other make a cycle."""

    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def tuned() -> Iterator[None]:
    with tuned_interpreter():
        yield


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_of_a_pass_are_frozen(tuned: None) -> None:
    kept = [_Node() for _ in range(100)]
    before = gc.get_freeze_count()
    gc.collect(0)
    assert gc.get_freeze_count() >= before + len(kept)
    assert gc.get_objects(generation=1) == [] and gc.get_objects(generation=2) == [], "older generations stay empty"
    assert gc.get_threshold() == GC_THRESHOLD


def test_a_cycle_that_dies_young_is_still_collected(tuned: None) -> None:
    dead = _cycle()
    assert dead() is not None  # kept alive by its own cycle until a pass runs
    gc.collect(0)
    assert dead() is None


def test_a_frozen_cycle_is_not_collected_until_unfrozen(tuned: None) -> None:
    """The documented cost: a cycle that outlives a pass is left to the process's end (or an unfreeze)."""
    survivor = _Node()
    survivor.other = _Node()
    survivor.other.other = survivor
    probe = weakref.ref(survivor)
    gc.collect(0)  # alive here: frozen
    del survivor
    gc.collect()
    assert probe() is not None
    gc.unfreeze()
    gc.collect()
    assert probe() is None


def test_tuning_twice_registers_the_hook_once_and_the_block_restores_the_settings() -> None:
    threshold, switch = gc.get_threshold(), sys.getswitchinterval()
    with tuned_interpreter():
        tune_interpreter()  # as a second engine in the process does
        assert gc.callbacks.count(freeze_survivors) == 1
    assert freeze_survivors not in gc.callbacks
    assert gc.get_threshold() == threshold and sys.getswitchinterval() == switch and gc.get_freeze_count() == 0
