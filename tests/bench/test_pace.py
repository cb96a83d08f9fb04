"""The benchmarks' speed probe: scaling a run to the reference VM, and the collector settings it probes under."""

from __future__ import annotations

import gc

from bench import platform_bench
from bench.workload import generate
from engine.interpreter import GC_THRESHOLD, freeze_survivors, tuned_interpreter


def test_each_run_is_divided_by_the_speed_beside_it() -> None:
    fields = platform_bench.at_reference_speed([500_000, 900_000, 400_000], [0.5, 0.9, 0.25], 1_000_000)
    assert fields["reference_vm_equivalent_runs"] == [1_000_000, 1_000_000, 1_600_000]
    assert fields["reference_vm_equivalent"] == 1_000_000
    assert fields["meets_at_reference_speed"] is True
    slower = platform_bench.at_reference_speed([500_000, 800_000], [0.5, 0.9], 1_000_000)
    assert slower["reference_vm_equivalent"] == 944_444
    assert slower["meets_at_reference_speed"] is False


def test_the_probe_runs_under_the_default_collector_and_restores_the_engines() -> None:
    seen = []

    def record(_: list[int]) -> tuple[float, int, int]:
        seen.append((gc.get_threshold(), list(gc.callbacks)))
        return 0.1, 0, 0

    orders = generate(1_000)
    with tuned_interpreter():
        real = platform_bench.heap_book
        platform_bench.heap_book = record  # type: ignore[assignment]
        try:
            speed = platform_bench.speed(orders)
        finally:
            platform_bench.heap_book = real
        assert gc.get_threshold() == GC_THRESHOLD
        assert freeze_survivors in gc.callbacks
    assert seen == [(platform_bench.DEFAULT_GC_THRESHOLD, [])]
    assert speed == 1_000 / 0.1 / platform_bench.REFERENCE_HEAP_BOOK
