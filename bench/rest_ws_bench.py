"""REST and WebSocket adapter benchmarks (``python -m bench.run --only adapters``).

* ``ws_fanout_msgs_per_s``: depth + trade updates pushed through the WebSocket
  adapter's listener (encode once, batched writes) to 100 subscribers, counted
  as frames received by raw-socket clients in another process. The bench paces
  itself on the outboxes (no connection is ever dropped), so the figure is a
  sustainable rate.
* ``rest_orders_per_s``: pre-signed ``POST /api/v1/order`` requests over
  keep-alive connections (64 connections x 4 pipelined) from another process;
  every request is verified (Ed25519) and journaled before its answer.
* ``ws_order_rtt_us_p50/p99``: one WebSocket client sending signed
  ``orderExecute`` requests one at a time; includes the journal's fsync.
"""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import trio
import trio.lowlevel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from trio_websocket import open_websocket_url

from adapters.service import serve_backpack
from engine.config import DEFAULT, parse_config
from engine.publisher import DepthUpdate, TradeRecord
from engine.runtime import Engine

SUBSCRIBERS = 100
CLIENT = [sys.executable, "-m", "bench.rest_ws_client"]


def _sign(private: Ed25519PrivateKey, instruction: str, params: dict[str, Any], ts: int, window: int = 60_000) -> str:
    kv = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    text = f"instruction={instruction}&{kv}&timestamp={ts}&window={window}"
    return base64.b64encode(private.sign(text.encode())).decode()


async def _trader(engine: Engine) -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    account = (await engine.create_account()).value
    await engine.add_api_key(account, key)
    await engine.deposit(account, "USDC", "100000000")
    await engine.deposit(account, "SOL", "1000000")
    await engine.wait_idle()
    await trio.sleep(0.05)  # the publisher applies the key
    return private, key


async def _with_venue(body: Any) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(parse_config(DEFAULT), Path(tmp))
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            scope = trio.CancelScope()

            async def adapters(*, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    await serve_backpack(engine, rest_listen="127.0.0.1:0", ws_listen="127.0.0.1:0",
                                         rate_per_minute=0, task_status=task_status)

            info = await nursery.start(adapters)
            try:
                return await body(engine, info)
            finally:
                scope.cancel()
                engine.stop()


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


async def _rest_orders(engine: Engine, info: dict[str, Any], n: int) -> dict[str, Any]:
    private, key = await _trader(engine)
    host, port = info["rest"].rsplit(":", 1)
    ts = time.time_ns() // 1_000_000
    requests = []
    for i in range(n):
        params = {"orderType": "Limit", "price": "90" if i % 2 else "110", "quantity": "0.02",
                  "side": "Bid" if i % 2 else "Ask", "symbol": "SOL_USDC"}
        body = orjson.dumps(params)
        head = (f"POST /api/v1/order HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-API-Key: {key}\r\nX-Timestamp: {ts}\r\nX-Window: 60000\r\n"
                f"X-Signature: {_sign(private, 'orderExecute', params, ts)}\r\n\r\n").encode()
        requests.append(head + body)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"\0".join(requests))
    try:
        result = await trio.run_process([*CLIENT, "orders", host, port, f.name, "64", "4"], capture_stdout=True)
    finally:
        os.unlink(f.name)
    return dict(orjson.loads(result.stdout))


async def _ws_rtt(engine: Engine, info: dict[str, Any], n: int) -> list[float]:
    private, key = await _trader(engine)
    ts = time.time_ns() // 1_000_000
    messages = []
    for i in range(n):
        params = {"orderType": "Limit", "price": "80", "quantity": "0.02", "side": "Bid", "symbol": "SOL_USDC", "clientId": i}
        messages.append(orjson.dumps({"id": i, "method": "orderExecute", "params": params,
                                      "signature": [key, _sign(private, "orderExecute", params, ts), str(ts), "60000"]}).decode())
    rtts = []
    async with open_websocket_url(f"ws://{info['websocket']}") as ws:
        for message in messages:
            start = time.perf_counter()
            await ws.send_message(message)
            reply = orjson.loads(await ws.get_message())
            rtts.append((time.perf_counter() - start) * 1e6)
            assert "result" in reply, reply
    return rtts


def run(fanout_updates: int = 20_000, rest_orders: int = 6_000, rtt_orders: int = 500, only: str = "") -> None:
    from bench.run import at_least, emit

    if only == "rest":
        orders = trio.run(_with_venue, lambda e, i: _rest_orders(e, i, rest_orders))
        print(orders)
        return
    fan = trio.run(_with_venue, lambda e, i: _fanout(e, i, fanout_updates))
    rate = fan["frames"] / fan["seconds"]
    emit("ws_fanout_msgs_per_s", round(rate), "msgs/s", subscribers=SUBSCRIBERS, frames=fan["frames"],
         seconds=round(fan["seconds"], 3), how="depth+trade updates, encoded once, batched writes; raw-socket clients in another process",
         **at_least(rate, 50_000))
    orders = trio.run(_with_venue, lambda e, i: _rest_orders(e, i, rest_orders))
    rate = orders["ok"] / orders["seconds"]
    emit("rest_orders_per_s", round(rate), "orders/s", ok=orders["ok"], sent=orders["sent"], first_error=orders["first_error"],
         seconds=round(orders["seconds"], 3), how="pre-signed POST /api/v1/order, 64 keep-alive connections x 4 pipelined (hypercorn answers one request per connection at a time), "
         "Ed25519 verified, durable before answered", **at_least(rate, 5_000))
    rtts = sorted(trio.run(_with_venue, lambda e, i: _ws_rtt(e, i, rtt_orders)))
    p50 = statistics.median(rtts)
    p99 = rtts[int(len(rtts) * 0.99) - 1]
    emit("ws_order_rtt_us_p50", round(p50), "us", orders=len(rtts), how="signed orderExecute over one WebSocket, one at a time, fsync included")
    emit("ws_order_rtt_us_p99", round(p99), "us", orders=len(rtts))


if __name__ == "__main__":
    run()
