"""FIX acceptor benchmarks (``python -m bench.run --only fix``).

* ``fix_orders_per_s``: signed Logon, then non-crossing NewOrderSingle limit
  orders pipelined with at most 100 in flight over loopback from another
  process; each counts when its ExecutionReport (150=0, after the journal's
  fsync) arrives. Session store on disk, dictionary validation on.
* ``fix_rtt_us_p50/p99``: one order in flight, send to ExecutionReport.
"""

from __future__ import annotations

import base64
import copy
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from adapters.fix.service import serve_fix
from engine.config import DEFAULT, parse_config
from engine.runtime import Engine

CLIENT = [sys.executable, "-m", "bench.fix_client"]
PIPELINED_ORDERS = 100_000
RTT_ORDERS = 3_000
RUNS = 3


def _config() -> Any:
    data = copy.deepcopy(DEFAULT)
    data["adapters"]["fix"]["sessions"] = [
        {"sender_comp_id": "SATCHEL", "target_comp_id": "BENCH", "account": 1, "reset_on_logon": True},
    ]
    return parse_config(data)


async def _bench(mode: str, n: int, run: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(_config(), Path(tmp))
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            private = Ed25519PrivateKey.generate()
            api_key = base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
            account = (await engine.create_account()).value
            await engine.add_api_key(account, api_key)
            await engine.deposit(account, "USDC", "100000000")
            await engine.deposit(account, "SOL", "10000000")
            await engine.wait_idle()
            scope = trio.CancelScope()

            async def fix(*, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    await serve_fix(engine, listen="127.0.0.1:0", task_status=task_status)

            info = await nursery.start(fix)
            host, port = info["fix"].rsplit(":", 1)
            key_hex = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
            result = await trio.run_process(
                [*CLIENT, mode, host, port, "BENCH", "SATCHEL", key_hex, api_key, str(n)], capture_stdout=True,
            )
            scope.cancel()
            engine.stop()
        return dict(orjson.loads(result.stdout))


def emit(name: str, value: float, unit: str, **extra: Any) -> None:
    sys.stdout.write(orjson.dumps({"name": name, "value": value, "unit": unit, **extra}).decode() + "\n")
    sys.stdout.flush()


def run(runs: int = RUNS) -> None:
    rates = []
    for i in range(runs):
        result = trio.run(_bench, "pipelined", PIPELINED_ORDERS, i)
        rates.append(result["orders"] / result["seconds"])
    median = statistics.median(rates)
    emit("fix_orders_per_s", round(median), "orders/s", median_of=runs, best=round(max(rates)),
         runs=[round(r) for r in rates], window=100, orders=PIPELINED_ORDERS,
         target=">= 50000", meets=median >= 50_000,
         how="signed Logon; NewOrderSingle limits pipelined (<=100 without their ExecutionReport) from another process "
             "over loopback; validated, journaled (fsync) and acknowledged with 35=8 150=0")
    p50s, p99s = [], []
    for i in range(runs):
        samples = sorted(trio.run(_bench, "rtt", RTT_ORDERS, runs + i)["rtt_us"])
        p50s.append(samples[len(samples) // 2])
        p99s.append(samples[int(len(samples) * 0.99)])
    emit("fix_rtt_us_p50", round(statistics.median(p50s), 1), "us", median_of=runs, runs=[round(v, 1) for v in p50s],
         target="<= 300", meets=statistics.median(p50s) <= 300, orders=RTT_ORDERS,
         how="one NewOrderSingle in flight: send to its ExecutionReport, including the journal's fsync")
    emit("fix_rtt_us_p99", round(statistics.median(p99s), 1), "us", median_of=runs, runs=[round(v, 1) for v in p99s])


if __name__ == "__main__":
    run()
