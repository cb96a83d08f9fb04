"""``satchel run``: the engine and the admin socket in one nursery, stopped by a signal.

Shutdown on SIGINT/SIGTERM: stop intake (admin socket closes, the engine refuses
new commands), drain what is in flight, final fsync, exit 0. A second signal
while draining is ignored; the drain is bounded by the engine's timeout.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import trio

from engine.admin import AdminServer, ensure_token
from engine.config import Config
from engine.runtime import Engine

log = logging.getLogger("satchel.daemon")


def admin_socket_path(config: Config, base: Path) -> Path:
    if config.admin.socket:
        path = Path(config.admin.socket)
        return path if path.is_absolute() else base / path
    return config.journal_dir(base) / "admin.sock"


async def serve(config: Config, base: Path) -> None:
    directory = config.journal_dir(base)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        engine = Engine(config, directory)
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            token = ensure_token(directory / "admin.token")
            admin = AdminServer(engine, admin_socket_path(config, base), token)
            admin_scope = trio.CancelScope()

            async def run_admin(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with admin_scope:
                    await admin.serve(task_status=task_status)

            await nursery.start(run_admin)
            print(f"satchel ready: venue {config.venue.name}, journal {directory}, "
                  f"admin socket {admin.socket_path}", file=sys.stderr, flush=True)
            async for signum in signals:
                log.info("received %s: stopping intake, draining", signal.Signals(signum).name)
                break
            admin_scope.cancel()
            engine.stop()
    print("satchel stopped cleanly", file=sys.stderr, flush=True)
