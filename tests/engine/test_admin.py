"""The admin socket's lifecycle in one process: what it answers while the daemon stops (engine/admin.py)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import orjson
import trio

from engine.admin import AdminServer
from engine.config import DEFAULT, parse_config
from engine.runtime import Engine


def answer_of(client: socket.socket) -> Any:
    reply = b""
    while not reply.endswith(b"\n") and (chunk := client.recv(65536)):
        reply += chunk
    return orjson.loads(reply)


async def test_close_answers_the_connections_the_kernel_queued_and_takes_no_new_one(tmp_path: Path) -> None:
    # Regression (audit 7): at shutdown the accepted connections were closed without their answers
    path = tmp_path / "admin.sock"
    with contextlib.ExitStack() as clients, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(parse_config(DEFAULT), tmp_path / "j").run)
            server = AdminServer(engine, path, "token")
            await nursery.start(server.serve)
            queued = []
            for _ in range(5):  # connected and sent, with no checkpoint between: still in the listen backlog
                client = clients.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                client.settimeout(10)
                client.connect(str(path))
                client.sendall(orjson.dumps({"token": "token", "command": "account.create", "args": {}}) + b"\n")
                queued.append(client)
            await server.close()
            assert not path.exists()
            answers = [answer_of(client) for client in queued]
            engine.stop()
    assert sorted(a["result"]["account_id"] for a in answers) == [1, 2, 3, 4, 5]


async def test_a_request_that_fails_unexpectedly_is_answered_and_the_server_goes_on(tmp_path: Path) -> None:
    # Regression (style review 2): an exception other than the argument errors ended the daemon
    path = tmp_path / "admin.sock"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(parse_config(DEFAULT), tmp_path / "j").run)
            server = AdminServer(engine, path, "token")

            async def broken(args: dict[str, Any]) -> Any:
                raise RuntimeError("a bug")

            server.handlers["status"] = broken
            await nursery.start(server.serve)
            answers = []
            for command in ("status", "account.create"):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(10)
                    await trio.to_thread.run_sync(client.connect, str(path))
                    client.sendall(orjson.dumps({"token": "token", "command": command, "args": {}}) + b"\n")
                    answers.append(await trio.to_thread.run_sync(answer_of, client))
            await server.close()
            engine.stop()
    assert answers[0]["error"]["code"] == "SERVER_ERROR"
    assert answers[0]["error"]["message"].startswith("internal error answering the request")
    assert answers[1] == {"ok": True, "result": {"account_id": 1}}
