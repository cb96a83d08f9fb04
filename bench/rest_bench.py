"""REST order-entry benchmark and the platform ceilings it is read against.

``rest_orders_per_s``: ``POST /api/v1/order`` through the real REST adapter
(``adapters.httpserver`` on trio, Ed25519 verification, the engine, the journal's
fsync before the answer) from a client in another process over ``CONNS``
keep-alive connections with ``PIPELINE`` requests in flight on each. Every
request carries its own ``clientId``, so no two requests share a signed
message or a signature; the bench signs them all before the clock starts
(Ed25519 signing is deterministic and costs the client ~0.05-0.1 ms each, which
would otherwise compete with the server for the same two cores), with one
timestamp taken then: a run lasts seconds, well inside the 60 s window the
requests declare, and the server still checks the window and verifies every
signature. The client (``bench/rest_ws_client.py orders``) is one thread on
epoll sending the raw bytes and counting the answers: ~10 µs of CPU per request,
reported as ``client_cpu_us_per_request`` so a reader sees which side limits.

Measured in the same run with the same client, connections and request
bytes, so the figure can be read against what the stack allows:

* ``platform_rest_trivial_per_s``: the same HTTP server with a handler that
  answers a fixed JSON (HTTP/1.1 on trio, nothing else): the ceiling. (With
  hypercorn 0.18's trio worker, which served REST before, this read ~1,100/s at
  ~900 µs of server CPU per request; the lean server reads ~30-40 µs.)
* ``platform_rest_verify_only_per_s``: the same plus parsing the JSON body,
  building Backpack's signing string and verifying the Ed25519 signature
  (libsodium) as the adapter verifies new orders: the requests a connection
  read together, verified together on the signature workers
  (``adapters.backpack.sigthread``, one per core), then answered at once.
* ``rest_app_orders_per_s``: the real orders through ``RestApp``'s request
  handler called in-process, no HTTP server, verified on the loop: the
  adapter's, verify's and engine's own cost.
* ``platform_ed25519_verify_per_s`` / ``..._sign_per_s``: one core's rate
  (verify: libsodium, with OpenSSL's via cryptography alongside).

Each figure is the median of ``rounds`` runs, interleaved so that load from
other tenants hits all of them alike; the platform servers run with the
interpreter settings the engine applies (GC thresholds, switch interval).
CPU per request of both processes is reported (server: the whole process,
engine, journal and signature threads included; client: the load generator),
and the server's event-loop thread alone (``loop_cpu_us_per_request``): the
engine and the HTTP server run on that one thread, so on a quiet machine its
CPU per request is what bounds the rate (1e6 / it), and on a busy one it says
how much of the server's CPU the other threads took off it.

Where the server's work goes (callgrind, all threads, 2,000 orders, the same on
both sides of the change that moved verification to two workers): ~1.0M
instructions per order, ~65% of them libsodium's Ed25519 verify (on the
signature workers, without the GIL) and ~35% Python on the loop (HTTP parsing,
the adapter's checks, the engine and its journal). So the rate depends on two
cores: the verify work parallelises across the workers, the Python work does not.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.backpack.auth import signing_string, valid_signature
from adapters.backpack.sigthread import SignatureThread
from adapters.httpserver import Begin, HttpServer, Later, Request, Response
from adapters.rest import JSON_TYPE, SIGNING_HEADERS, RestApp, error_response, serve_http
from adapters.service import serve_backpack
from bench.engine_bench import BENCH_LIMITS
from engine.config import DEFAULT, parse_config
from engine.interpreter import tune_interpreter
from engine.runtime import Engine

CLIENT = [sys.executable, str(Path(__file__).with_name("rest_ws_client.py"))]  # stdlib + orjson only: runs from any directory
CONNS = 64
PIPELINE = 4
WINDOW_MS = 60_000



def sign(private: Ed25519PrivateKey, instruction: str, params: dict[str, Any], ts: int, window: int = WINDOW_MS) -> str:
    kv = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    text = f"instruction={instruction}&{kv}&timestamp={ts}&window={window}"
    return base64.b64encode(private.sign(text.encode())).decode()


def order_requests(private: Ed25519PrivateKey, key: str, host: str, n: int) -> list[bytes]:
    """``n`` signed limit orders that rest (bids at 90, asks at 110), each with its own clientId."""
    ts = time.time_ns() // 1_000_000
    requests = []
    for i in range(n):
        params = {"clientId": i, "orderType": "Limit", "price": "90" if i % 2 else "110", "quantity": "0.02",
                  "side": "Bid" if i % 2 else "Ask", "symbol": "SOL_USDC"}
        body = orjson.dumps(params)
        head = (f"POST /api/v1/order HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-API-Key: {key}\r\nX-Timestamp: {ts}\r\nX-Window: {WINDOW_MS}\r\n"
                f"X-Signature: {sign(private, 'orderExecute', params, ts)}\r\n\r\n").encode()
        requests.append(head + body)
    return requests


async def drive(host: str, port: str, requests: list[bytes], conns: int | None = None, pipeline: int | None = None) -> dict[str, Any]:
    """Send ``requests`` from the client process; adds this (server) process's CPU seconds meanwhile."""
    shape = [str(conns or CONNS), str(pipeline or PIPELINE)]
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"\0".join(requests))
    try:
        cpu, loop_cpu = time.process_time(), time.thread_time()
        result = await trio.run_process([*CLIENT, "orders", host, port, f.name, *shape], capture_stdout=True)
        server_cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    finally:
        os.unlink(f.name)
    return {**orjson.loads(result.stdout), "server_cpu_s": server_cpu, "loop_cpu_s": loop_cpu}


# --- the platform apps ------------------------------------------------------------------------------

OK_BODY = b'{"ok":true}'
OK = (200, OK_BODY, JSON_TYPE)


async def trivial_handler(request: Request) -> Response:
    """Answer every request with a fixed JSON."""
    return OK


def verifying_begin(key: bytes, signatures: SignatureThread) -> Begin:
    """Answer every request with a fixed JSON once its signature verified, as the adapter verifies new orders:
    the requests read together, their signatures verified together on a signature worker."""

    async def begin(requests: list[Request]) -> list[Response | Later]:
        items = []
        for request in requests:
            headers = request.headers
            message = signing_string("orderExecute", orjson.loads(request.body), headers["x-timestamp"], headers["x-window"])
            items.append((key, base64.b64decode(headers["x-signature"]), message))
        assert all(await signatures.verify(items))
        return [OK] * len(requests)

    return begin


def tune_like_the_engine() -> None:
    """The interpreter settings ``Engine.run`` applies (engine/interpreter.py ``tune_interpreter``).

    The platform servers run without an engine; without these they would pay the
    default collector thresholds on the server's per-request garbage and read slower
    than the real adapter, which is no ceiling at all.
    """
    tune_interpreter()


async def platform_once(n: int, verify: bool, conns: int | None = None, pipeline: int | None = None) -> dict[str, Any]:
    tune_like_the_engine()
    private = Ed25519PrivateKey.generate()
    key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    raw_key = private.public_key().public_bytes_raw()
    signatures = SignatureThread()
    server = HttpServer(trivial_handler, error_response, SIGNING_HEADERS, begin=verifying_begin(raw_key, signatures) if verify else None)
    stop = trio.Event()

    with signatures.running():
        return await _serve_and_drive(server, stop, private, key, n, conns, pipeline)


async def _serve_and_drive(server: HttpServer, stop: trio.Event, private: Ed25519PrivateKey, key: str, n: int,
                           conns: int | None, pipeline: int | None) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(serve_http, server, "127.0.0.1:0", shutdown=stop))
        host, port = bound.rsplit(":", 1)
        try:
            return await drive(host, port, order_requests(private, key, host, n), conns, pipeline)
        finally:
            stop.set()


# --- the real adapter ---------------------------------------------------------------------------------


async def trader(engine: Engine) -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    account = (await engine.create_account()).value
    await engine.add_api_key(account, key)
    await engine.deposit(account, "USDC", "100000000")
    await engine.deposit(account, "SOL", "1000000")
    await engine.wait_idle()
    await trio.sleep(0.05)  # the publisher applies the key
    return private, key


async def orders_once(n: int, conns: int | None = None, pipeline: int | None = None) -> dict[str, Any]:
    """``n`` orders through the REST adapter's socket."""

    async def body(engine: Engine, info: dict[str, Any]) -> dict[str, Any]:
        private, key = await trader(engine)
        host, port = info["rest"].rsplit(":", 1)
        return await drive(host, port, order_requests(private, key, host, n), conns, pipeline)

    return await with_venue(body)


async def app_once(n: int) -> dict[str, Any]:
    """``n`` orders through ``RestApp`` called in-process (no HTTP server): the adapter's own cost."""

    async def body(engine: Engine, info: dict[str, Any]) -> dict[str, Any]:
        private, key = await trader(engine)
        requests = [_request(raw) for raw in order_requests(private, key, "127.0.0.1", n)]
        app = RestApp(info["api"])
        ok = 0

        async def connection(mine: list[Request]) -> None:
            nonlocal ok
            for request in mine:
                status, _, _ = await app(request)
                ok += status == 200

        cpu, loop, start = time.process_time(), time.thread_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(CONNS):
                nursery.start_soon(connection, requests[i::CONNS])
        return {"seconds": time.perf_counter() - start, "server_cpu_s": time.process_time() - cpu, "cpu_s": 0.0,
                "loop_cpu_s": time.thread_time() - loop,
                "ok": ok, "sent": n, "first_error": None}

    return await with_venue(body)


def _request(raw: bytes) -> Request:
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    headers = {}
    for name, _, value in (line.partition(b":") for line in lines[1:]):
        key = SIGNING_HEADERS.get(name.strip().lower())
        if key is not None:
            headers[key] = value.strip().decode("latin-1")
    return Request(method.decode(), target.decode(), b"", headers, payload)


async def with_venue(body: Callable[[Engine, dict[str, Any]], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """An engine on a temporary journal with the Backpack adapters on port 0, rate limits off."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(parse_config({**DEFAULT, "limits": BENCH_LIMITS}), Path(tmp))
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


# --- the figures ----------------------------------------------------------------------------------------


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median rate over runs, with the CPU split per request (µs) of server and client."""
    rates = [r["ok"] / r["seconds"] for r in results]
    n = [r["sent"] for r in results]
    return {
        "value": round(statistics.median(rates)),
        "runs": [round(r) for r in rates],
        "server_cpu_us_per_request": round(statistics.median(r["server_cpu_s"] / k * 1e6 for r, k in zip(results, n, strict=True))),
        "loop_cpu_us_per_request": round(statistics.median(r["loop_cpu_s"] / k * 1e6 for r, k in zip(results, n, strict=True))),
        "client_cpu_us_per_request": round(statistics.median(r["cpu_s"] / k * 1e6 for r, k in zip(results, n, strict=True))),
        "ok": [r["ok"] for r in results], "sent": n[0],
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
    }


def measure(n: int = 6_000, rounds: int = 3) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {"trivial": [], "verify_only": [], "orders": [], "app": []}
    for _ in range(rounds):
        runs["trivial"].append(trio.run(platform_once, n, False))
        runs["verify_only"].append(trio.run(platform_once, n, True))
        runs["orders"].append(trio.run(orders_once, n))
        runs["app"].append(trio.run(app_once, n))
    return {name: summary(results) for name, results in runs.items()}


def ed25519_per_s(n: int = 1_000) -> tuple[float, float, float]:
    """Ed25519 per CPU second of one thread: (libsodium verifies, cryptography verifies, cryptography signatures).

    The adapter verifies with libsodium (``auth.valid_signature``); cryptography's
    (OpenSSL's) verify is measured alongside to show why.
    """
    private = Ed25519PrivateKey.generate()
    message = b"instruction=orderExecute&clientId=1&orderType=Limit&price=90&quantity=0.02&side=Bid&symbol=SOL_USDC"
    signature, public = private.sign(message), private.public_key()
    raw_key = public.public_bytes_raw()
    start = time.process_time()
    for _ in range(n):
        valid_signature(raw_key, signature, message)
    sodium_s = time.process_time() - start
    start = time.process_time()
    for _ in range(n):
        public.verify(signature, message)
    openssl_s = time.process_time() - start
    start = time.process_time()
    for _ in range(n):
        private.sign(message)
    return n / sodium_s, n / openssl_s, n / (time.process_time() - start)


def run(n: int = 6_000, rounds: int = 3) -> None:
    from bench.run import at_least, emit

    rates = [ed25519_per_s() for _ in range(3)]
    verifies, openssl, signs = (statistics.median(r[i] for r in rates) for i in range(3))
    emit("platform_ed25519_verify_per_s", round(verifies), "verifies/s per core", median_of=3,
         us_each=round(1e6 / verifies), cryptography_us_each=round(1e6 / openssl),
         how="libsodium's verify via PyNaCl (what the adapter uses) in a loop, CPU time of this process; "
             "cryptography_us_each: OpenSSL's through cryptography, which the adapter used before")
    emit("platform_ed25519_sign_per_s", round(signs), "signatures/s per core", median_of=3, us_each=round(1e6 / signs),
         how="cryptography's Ed25519PrivateKey.sign: what signing during the run would add to the client per request")
    figures = measure(n, rounds)
    shape = f"{CONNS} keep-alive connections x {PIPELINE} pipelined"
    trivial, verify, orders = figures["trivial"], figures["verify_only"], figures["orders"]
    ceiling = trivial.pop("value")
    emit("platform_rest_trivial_per_s", ceiling, "requests/s", median_of=rounds, **trivial,
         how=f"adapters.httpserver (trio + httptools), same limits and client as rest_orders_per_s, app answers a fixed JSON; {shape}")
    emit("platform_rest_verify_only_per_s", verify.pop("value"), "requests/s", median_of=rounds, **verify,
         how="as platform_rest_trivial_per_s, plus JSON body parse, signing string and Ed25519 verify per request, "
             "answered at once")
    app = figures["app"]
    emit("rest_app_orders_per_s", app.pop("value"), "orders/s", median_of=rounds, runs=app["runs"],
         server_cpu_us_per_request=app["server_cpu_us_per_request"],
         loop_cpu_us_per_request=app["loop_cpu_us_per_request"], ok=app["ok"],
         how=f"the same signed orders through RestApp called in-process by {CONNS} tasks, no HTTP server or socket: "
             "what the adapter, Ed25519 verify, engine and journal cost without the HTTP server")
    value = orders.pop("value")
    emit("rest_orders_per_s", value, "orders/s", median_of=rounds, **orders, of_trivial_ceiling=round(value / max(1, ceiling), 2),
         how=f"signed POST /api/v1/order (unique clientId each) through the REST adapter, Ed25519 verified, "
             f"durable before answered; {shape} (a connection's pipelined orders reach the engine at once, in order; "
             "answered in order); signed before the clock starts",
         **at_least(value, 5_000))


if __name__ == "__main__":
    print(orjson.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 6_000,
                               int(sys.argv[2]) if len(sys.argv) > 2 else 3), option=orjson.OPT_INDENT_2).decode())
