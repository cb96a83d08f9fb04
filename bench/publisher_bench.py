"""Publisher rebuild at start: how long histories, trades and klines take to come back from the journal.

The journal is the one ``journal_bench.history`` writes (the shared workload with
cancels mixed in, one record per group commit). A real ``Engine`` recovers it
(snapshot at 90 % of the events, as the daemon would find one), then
``Publisher.rebuild`` replays every event from genesis through the publisher's
normal path, as ``satchel run`` does before the adapters open their ports
when it has no saved state; then the state is saved and signed for (as at a clean
stop) and loaded again (the next start after a clean stop, with no tail to replay).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.engine_bench import engine_config
from bench.journal_bench import SYMBOL, history
from engine import publisher_state
from engine.publisher import Publisher
from engine.runtime import Engine


async def _rebuild(directory: Path) -> dict[str, Any]:
    engine = Engine(engine_config(directory), directory)
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        await nursery.start(engine.run)
        recovered = time.perf_counter() - started
        started = time.perf_counter()
        publisher = await Publisher.rebuild(engine)
        rebuilt = time.perf_counter() - started
        assert publisher.venue.state_hash() == engine.venue.state_hash()
        assert publisher.source == "replayed from genesis"
        trades = len(publisher.trades(SYMBOL, 1_000_000))
        started = time.perf_counter()
        path = publisher_state.save(publisher, directory)
        saved = time.perf_counter() - started
        assert (await engine.checkpoint("checkpoint")).ok  # a clean stop ends in one: it vouches for the saved state
        started = time.perf_counter()
        again = await Publisher.rebuild(engine)
        loaded = time.perf_counter() - started
        assert again.source == "saved state + tail" and again.venue.state_hash() == publisher.venue.state_hash()
        assert again.trades(SYMBOL, 1_000_000) == publisher.trades(SYMBOL, 1_000_000)
        engine.stop()
    return {"recovery_s": recovered, "rebuild_s": rebuilt, "events": publisher.events, "trades_kept": trades,
            "state_save_s": saved, "state_load_s": loaded, "state_bytes": path.stat().st_size}


def rebuild_once(n_events: int, base_dir: str | None = None) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(dir=base_dir))
    try:
        made = history(n_events, base / "history", snapshot_at=n_events * 9 // 10)
        out = trio.run(_rebuild, base / "history")
        out["records"] = made["records"]
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    import sys

    print(rebuild_once(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
