"""Entry point: ``python -m bench.run`` prints one JSON object per line, one per figure.

Every figure has ``name``, ``value`` and ``unit``; most also carry ``target``
and ``meets`` (the issue's targets, set on the reference VM of
reference/performance.md §0), ``median_of`` and the individual ``runs``.
The throughput figures with a target also carry ``reference_vm_equivalent``
and ``meets_at_reference_speed``: each run divided by this box's speed, probed
beside it (``platform_bench.paced``).
Values are medians: the machine is noisy, so best-of figures are kept beside
them, and the ``platform_*`` figures printed first say how fast and how
quiet this box was during the run.

``--only GROUP[,GROUP]`` runs a subset: platform, book, peer, engine, latency, rss, journal, publisher, adapters, fix.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import statistics
import subprocess
import sys
from typing import Any

import orjson
import trio

from bench import book_bench, engine_bench, platform_bench, rest_ws_bench
from bench.workload import EXPECTED_CROSSING, EXPECTED_FILLS, EXPECTED_RESTING, N_ORDERS, SEED, generate

GROUPS = ("platform", "book", "peer", "engine", "latency", "rss", "journal", "publisher", "adapters", "fix")
REFERENCE_HEAP_BOOK = platform_bench.REFERENCE_HEAP_BOOK


def emit(name: str, value: float, unit: str, **extra: Any) -> None:
    row = {"name": name, "value": value, "unit": unit, **extra}
    sys.stdout.write(orjson.dumps(row).decode() + "\n")
    sys.stdout.flush()


def at_least(value: float, target: float) -> dict[str, Any]:
    return {"target": f">= {target:g}", "meets": value >= target}


def at_most(value: float, target: float) -> dict[str, Any]:
    return {"target": f"<= {target:g}", "meets": value <= target}


def run_platform(orders: list[Any], runs: int) -> None:
    result = book_bench.repeat(platform_bench.heap_book, orders, runs, engine_gc=False)
    emit(
        "platform_heap_book_orders_per_s", round(result["median"]), "orders/s",
        median_of=runs, best=round(result["best"]), runs=result["runs"], fills=result["fills"], gc=result["gc"],
        reference_vm=REFERENCE_HEAP_BOOK, speed_vs_reference_vm=round(result["median"] / REFERENCE_HEAP_BOOK, 3),
        note="plain dict+deque+heapq book of performance.md §4, against the reference VM's median run; the targets "
             "were set on that VM. The box's speed moves within minutes, so the throughput figures are scaled by "
             "probes taken beside each of their runs (reference_vm_equivalent), not by this one",
        python=platform.python_version(), cpus=os.cpu_count(),
    )
    stall = platform_bench.stalls(1.0)
    emit(
        "platform_stall_fraction", round(stall["lost_fraction"], 4), "fraction of wall time",
        largest_gap_ms=round(stall["largest_ms"], 2), gaps_over_1ms=stall["gaps"],
        note="busy loop for 1 s; gaps > 1 ms are time this process was not scheduled (other load on the box)",
    )


def run_book(orders: list[Any], runs: int) -> dict[str, Any]:
    emit(
        "workload_fills", EXPECTED_FILLS, "fills",
        orders=N_ORDERS, seed=SEED, crossing_orders=EXPECTED_CROSSING, resting_at_end=EXPECTED_RESTING,
        note="performance.md §2.2 workload; every book below is checked against these counts on every run",
    )
    book = book_bench.repeat(book_bench.run_book, orders, runs, pace=True)
    emit(
        "book_orders_per_s", round(book["median"]), "orders/s", median_of=runs, best=round(book["best"]),
        runs=book["runs"], fills=book["fills"], resting=book["resting"], gc=book["gc"],
        how="engine.book.OrderBook as Market drives it: place() an order that cannot cross; else match_limit() (walk and "
            "fill in one pass), place() the remainder; GTC limits, one account per order",
        **at_least(book["median"], 1_000_000),
        **platform_bench.at_reference_speed(book["rates"], book["speeds"], 1_000_000),
    )
    market = book_bench.repeat(book_bench.run_market, orders, runs)
    emit(
        "market_orders_per_s", round(market["median"]), "orders/s", median_of=runs, best=round(market["best"]),
        runs=market["runs"], fills=market["fills"], gc=market["gc"],
        how="engine.market.Market.place, decide + apply in one step as the market actor runs it (band check, fees, Fill/OrderPlaced objects); "
            "commands pre-built",
    )
    return book


def run_peer(orders: list[Any], runs: int, book: dict[str, Any] | None) -> None:
    peer = book_bench.repeat(book_bench.run_lightmatchingengine, orders, runs)
    emit(
        "peer_lightmatchingengine_orders_per_s", round(peer["median"]), "orders/s", median_of=runs,
        best=round(peer["best"]), runs=peer["runs"], fills=peer["fills"], resting=peer["resting"], gc=peer["gc"],
        conversion="integer ticks passed as-is (its comparisons work on ints, no float needed); "
                   "side string mapped to Side.BUY/SELL inside the timed loop; fills = passive trades",
        reference_vm="365k best / 360k median (performance.md §2.3)",
    )
    if book is not None:
        ratio = book["median"] / peer["median"]
        emit(
            "book_vs_peer", round(ratio, 2), "x", best_vs_best=round(book["best"] / peer["best"], 2),
            how="book_orders_per_s / peer_lightmatchingengine_orders_per_s (medians)", **at_least(ratio, 3),
        )


def run_engine(orders: list[Any], runs: int, base_dir: str | None) -> None:
    paced = [
        platform_bench.paced(functools.partial(trio.run, engine_bench.throughput_once, orders, base_dir), orders)
        for _ in range(runs)
    ]
    results = [result for result, _ in paced]
    rates = [r.orders_per_s for r in results]
    value = statistics.median(rates)
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r.codes.items():
            codes[code] = codes.get(code, 0) + n
    emit(
        "engine_orders_per_s", round(value), "orders/s", median_of=runs, best=round(max(rates)),
        runs=[round(r) for r in rates], rejected=sum(r.rejected for r in results), rejection_codes=codes,
        fills=[r.fills for r in results], resting=[r.resting for r in results],
        window=engine_bench.WINDOW, accounts=engine_bench.N_ACCOUNTS,
        how="Engine in a trio nursery on a temp journal (write+fdatasync group commit); build_order + submit "
            "with a counting sink, <= window in flight, a trio checkpoint every 64 submissions; timed until the last result; "
            "invariants checked after each run",
        fills_note="fills differ from 54071 because the engine keeps order only per account: "
                   "orders from different accounts reach the market in a different interleaving",
        **at_least(value, 100_000),
        **platform_bench.at_reference_speed(rates, [speed for _, speed in paced], 100_000),
    )


def run_latency(
    orders: list[Any], runs: int, base_dir: str | None, rate: float, seconds: float, *, batched: bool = False,
) -> None:
    results = [
        trio.run(functools.partial(engine_bench.latency_once, batched=batched), orders, base_dir, rate, seconds)
        for _ in range(runs)
    ]
    p50 = statistics.median(r.p50_us for r in results)
    p99 = statistics.median(r.p99_us for r in results)
    common = {
        "offered_per_s": rate, "seconds": seconds, "median_of": runs,
        "achieved_per_s": [round(r.achieved_per_s) for r in results],
        "rejected": sum(r.rejected for r in results),
        "how": "open loop, order i due at start + i/rate; latency from the due time to the sink "
               "(after fsync); the sender sends what is due, and sleeps 1 ms when nothing is (see engine_bench.latency_once), "
               + ("as one held intake batch, the way the FIX adapter submits a socket read's orders"
                  if batched else "one submit per order with no held batch, the way a REST request's order goes"),
    }
    suffix = ("" if rate == 20_000 else f"_at_{round(rate / 1000)}k") + ("_held" if batched else "")
    emit(f"engine_ack_latency_us_p50{suffix}", round(p50), "us", runs=[round(r.p50_us) for r in results], **common)
    emit(
        f"engine_ack_latency_us_p99{suffix}", round(p99), "us", runs=[round(r.p99_us) for r in results],
        p999_us=[round(r.p999_us) for r in results], max_us=[round(r.max_us) for r in results], **common,
        **(at_most(p99, 5_000) if rate == 20_000 and not batched else {}),
    )


def run_rss(n: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rss_bench", str(n)], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))},
    )
    result = orjson.loads(proc.stdout.strip().splitlines()[-1])
    value = result["bytes_per_order"]
    emit(
        "rss_bytes_per_resting_order", round(value, 1), "bytes", orders=result["orders"],
        rss_before=result["rss_before"], rss_after=result["rss_after"], build_s=result["build_s"], gc=result["gc"],
        how="subprocess; Venue.apply(OrderPlaced status New) x N, non-crossing, 1,000 accounts, 10..1,000-step sizes; "
            "/proc/self/statm resident pages after gc.collect(), before and after",
        **at_most(value, 500),
    )


def run_fix() -> None:
    """``fix_bench.run`` in a fresh interpreter, as ``run_rss``: the engines the groups before it ran are never
    freed in this process (their cycles were frozen with the rest of their state, ``freeze_survivors``), so by
    the last group the heap holds every earlier group's venues, and the FIX figures would measure that heap too."""
    sys.stdout.flush()
    subprocess.run(
        [sys.executable, "-m", "bench.fix_bench"], check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))},
    )


def run_journal(base_dir: str | None, n_events: int, n_accounts: int, runs: int) -> None:
    import tempfile
    from pathlib import Path

    from bench import journal_bench
    from engine import por

    with tempfile.TemporaryDirectory(dir=base_dir) as tmp:
        base = Path(tmp)
        appends = [journal_bench.append_events_per_s(base) for _ in range(runs)]
        value = statistics.median(appends)
        emit("journal_append_events_per_s", round(value), "events/s", median_of=runs, best=round(max(appends)),
             runs=[round(v) for v in appends], how="JournalActor group commit (write + fdatasync in a worker thread); "
             "8 producer tasks submitting 4 OrderPlaced (1 fill) per message, 300k events", **at_least(value, 300_000))
        timings = [journal_bench.replay_and_recovery(base, n_events, n_events * 9 // 10) for _ in range(max(1, runs - 1))]
        made = timings[0]["made"]
        replay = statistics.median(made["events"] / t["replay_s"] for t in timings)
        emit("replay_events_per_s", round(replay), "events/s", median_of=len(timings),
             runs=[round(made["events"] / t["replay_s"]) for t in timings], events=made["events"], records=made["records"],
             journal_bytes=made["bytes"], how="Engine._recover from genesis (CRC, chain, codec.decode_rows checks, Venue.replay_rows, invariants); "
             f"{journal_bench.EVENTS_PER_RECORD} events per record", **at_least(replay, 200_000))
        recovery = statistics.median(t["recovery_s"] for t in timings)
        emit("recovery_s_for_1m_events", round(recovery, 3), "s", median_of=len(timings),
             runs=[round(t["recovery_s"], 3) for t in timings], events=made["events"],
             how="Engine._recover with a snapshot at 90% of the events: load + self-check the snapshot, chain-check "
                 "every record, replay the tail", **at_most(recovery, 2.0))
    seconds, root = journal_bench.por_build_s(n_accounts)
    alone, same = journal_bench.por_build_s(n_accounts, 1)
    assert same == root, "the tree built in one process differs from the one built in several"
    emit("por_build_s_for_1m_accounts", round(seconds, 3), "s", accounts=n_accounts, workers=por.WORKERS,
         one_process_s=round(alone, 3),
         how="por.venue_tree: salt + leaf hash per account, leaves in salt order, Merkle sum tree over 3 of 4 "
             "assets non-zero; runs of whole subtrees hashed in forked workers (one per core, at most 4), as the "
             "replica builds a publication",
         **at_most(seconds, 10.0))


def run_publisher(base_dir: str | None, n_events: int) -> None:
    from bench import publisher_bench

    out = publisher_bench.rebuild_once(n_events, base_dir)
    emit("publisher_rebuild_s_for_1m_events", round(out["rebuild_s"], 3), "s", events=out["events"],
         records=out["records"], events_per_s=round(out["events"] / out["rebuild_s"]),
         engine_recovery_s=round(out["recovery_s"], 3), trades_kept=out["trades_kept"],
         state_save_s=round(out["state_save_s"], 3), state_load_s=round(out["state_load_s"], 3),
         state_bytes=out["state_bytes"],
         how="Publisher.rebuild at start: every journal event from genesis through the publisher (state, trades, "
             "klines, fills and order histories), bulk in a worker thread, the exact boundary on the event loop; "
             "engine_recovery_s is Engine._recover of the same journal from a snapshot at 90 %; state_save_s and "
             "state_load_s: the publisher state written at a clean stop and loaded at the next start (no tail)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups: " + ", ".join(GROUPS))
    parser.add_argument("--book-runs", type=int, default=7)
    parser.add_argument("--engine-runs", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--latency-rates", default="20000,2000", help="offered rates; 20000 gives the headline figures")
    parser.add_argument("--rss-orders", type=int, default=1_000_000)
    parser.add_argument("--journal-events", type=int, default=1_000_000)
    parser.add_argument("--por-accounts", type=int, default=1_000_000)
    parser.add_argument("--journal-runs", type=int, default=3)
    parser.add_argument("--journal-dir", default=os.environ.get("SATCHEL_BENCH_DIR"),
                        help="where the temporary journals go (default: the system temp dir; must be a real disk)")
    args = parser.parse_args(argv)
    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")

    orders = generate()
    gc.collect()
    if "platform" in groups:
        run_platform(orders, args.book_runs)
    book = run_book(orders, args.book_runs) if "book" in groups else None
    if "peer" in groups:
        run_peer(orders, max(5, args.book_runs - 2), book)
    if "engine" in groups:
        run_engine(orders, args.engine_runs, args.journal_dir)
    if "latency" in groups:
        for rate in (float(r) for r in args.latency_rates.split(",") if r.strip()):
            run_latency(orders, args.latency_runs, args.journal_dir, rate, args.latency_seconds)
            if rate == 20_000:  # the same load as held intake batches (as FIX submits a read), for comparison
                run_latency(orders, args.latency_runs, args.journal_dir, rate, args.latency_seconds, batched=True)
    if "rss" in groups:
        run_rss(args.rss_orders)
    if "journal" in groups:
        run_journal(args.journal_dir, args.journal_events, args.por_accounts, args.journal_runs)
    if "publisher" in groups:
        run_publisher(args.journal_dir, args.journal_events)
    if "adapters" in groups:
        rest_ws_bench.run()
    if "fix" in groups:
        run_fix()
    if "platform" in groups:
        stall = platform_bench.stalls(1.0)
        emit(
            "platform_stall_fraction_end", round(stall["lost_fraction"], 4), "fraction of wall time",
            largest_gap_ms=round(stall["largest_ms"], 2), gaps_over_1ms=stall["gaps"],
            note="the same busy-loop probe, run again after all the benchmarks",
        )


if __name__ == "__main__":
    main()
