"""REST and WebSocket adapter benchmarks (``python -m bench.run --only adapters``).

* ``ws_fanout_msgs_per_s``: depth + trade updates pushed through the WebSocket
  adapter's listener (encode once, batched writes) to 100 subscribers, counted
  as frames received by raw-socket clients in another process. The bench paces
  itself on the outboxes (no connection is ever dropped), so the figure is a
  sustainable rate.
* ``rest_orders_per_s`` and its platform ceilings: see ``bench.rest_bench``.
* ``ws_order_rtt_us_p50/p99``: one WebSocket client sending signed
  ``orderExecute`` requests one at a time; includes the journal's fsync. The
  client is a raw-socket one in another process (``bench.rest_ws_client rtt``),
  as for the other adapter figures: a trio-websocket client in the server's own
  event loop added its own tasks and parsing to every round trip.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from typing import Any

import orjson
import trio
import trio.lowlevel

from bench import rest_bench
from engine.runtime import Engine
from engine.updates import DepthUpdate, TradeRecord

SUBSCRIBERS = 100
CLIENT = rest_bench.CLIENT


async def _fanout(engine: Engine, info: dict[str, Any], updates: int) -> dict[str, Any]:
    publisher = info["publisher"]
    server = publisher.listeners[-1].__self__
    host, port = info["websocket"].rsplit(":", 1)
    streams = "depth.SOL_USDC,trade.SOL_USDC"
    proc = subprocess.Popen([*CLIENT, "fanout", host, port, str(SUBSCRIBERS), streams, str(updates)],  # noqa: ASYNC220 - its stdout is read line by line from a thread
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = await trio.to_thread.run_sync(proc.stdout.readline)
    assert line.strip() == "subscribed", line
    while sum(len(c.streams) for c in server.connections) < 2 * SUBSCRIBERS:  # noqa: ASYNC110 - polling another module's state
        await trio.sleep(0.01)
    ts = time.time_ns() // 1000
    batch_size = 50
    sent = 0
    while sent < updates:
        batch: list[Any] = []
        for i in range(sent, min(sent + batch_size, updates)):
            if i % 2:
                batch.append(TradeRecord("SOL_USDC", i, 10000 + i % 50, 100, 1_000_000, i, i + 1, False, ts))
            else:
                batch.append(DepthUpdate("SOL_USDC", i + 1, i + 1, [(9000 + i % 50, 100 + i % 7)], [], ts))
        sent += len(batch)
        for listener in publisher.listeners:
            listener(batch)
        await trio.lowlevel.checkpoint()
        while max((len(c.outbox) for c in server.connections), default=0) > 1024:  # noqa: ASYNC110 - pacing on outboxes
            await trio.sleep(0.0005)
    out = await trio.to_thread.run_sync(proc.stdout.readline)
    await trio.to_thread.run_sync(proc.wait)
    proc.stdout.close()
    return dict(orjson.loads(out))


async def _ws_rtt(engine: Engine, info: dict[str, Any], n: int) -> list[float]:
    """``n`` signed orders, one at a time, from a raw-socket client in another process (signed before it starts)."""
    private, key = await rest_bench.trader(engine)
    ts = time.time_ns() // 1_000_000
    messages = []
    for i in range(n):
        params = {"orderType": "Limit", "price": "80", "quantity": "0.02", "side": "Bid", "symbol": "SOL_USDC", "clientId": i}
        messages.append(orjson.dumps({"id": i, "method": "orderExecute", "params": params,
                                      "signature": [key, rest_bench.sign(private, "orderExecute", params, ts), str(ts), "60000"]}))
    host, port = info["websocket"].rsplit(":", 1)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"\0".join(messages))
    try:
        result = await trio.run_process([*CLIENT, "rtt", host, port, f.name], capture_stdout=True)
    finally:
        os.unlink(f.name)
    out = orjson.loads(result.stdout)
    assert out["first_error"] is None, out["first_error"]
    return list(out["rtts_us"])


def run(fanout_updates: int = 20_000, rest_orders: int = 6_000, rtt_orders: int = 500) -> None:
    from bench.run import at_least, emit

    fan = trio.run(rest_bench.with_venue, lambda e, i: _fanout(e, i, fanout_updates))
    rate = fan["frames"] / fan["seconds"]
    emit("ws_fanout_msgs_per_s", round(rate), "msgs/s", subscribers=SUBSCRIBERS, frames=fan["frames"],
         seconds=round(fan["seconds"], 3), how="depth+trade updates, encoded once, batched writes; raw-socket clients in another process",
         **at_least(rate, 50_000))
    rest_bench.run(rest_orders)
    rtts = sorted(trio.run(rest_bench.with_venue, lambda e, i: _ws_rtt(e, i, rtt_orders)))
    p50 = statistics.median(rtts)
    p99 = rtts[int(len(rtts) * 0.99) - 1]
    emit("ws_order_rtt_us_p50", round(p50), "us", orders=len(rtts), how="signed orderExecute over one WebSocket, one at a time, fsync included; raw-socket client in another process")
    emit("ws_order_rtt_us_p99", round(p99), "us", orders=len(rtts))


if __name__ == "__main__":
    run()
