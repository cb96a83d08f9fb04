"""The ``satchel`` command line, without a daemon: what each command asks the admin socket for (engine/cli.py)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from engine.cli import _parser, _request_of, main


@pytest.mark.parametrize(
    ("argv", "command", "field", "value"),
    [
        (["deposit", "1", "USDC", " 1000 "], "deposit", "amount", "1000"),
        (["withdraw", "1", "USDC", "2.5\n"], "withdraw", "amount", "2.5"),
        (["transfer", "1", "2", "USDC", "\t3"], "transfer", "amount", "3"),
        (["order", "place", "1", "SOL_USDC", "Bid", "Limit", "--price", " 20", "--quantity", "2 "], "order.place", "price", "20"),
        (["order", "place", "1", "SOL_USDC", "Bid", "Market", "--quote-quantity", " 15 "], "order.place", "quote_quantity", "15"),
        (["order", "amend", "1", "SOL_USDC", "--order-id", "4", "--quantity", " 1"], "order.amend", "quantity", "1"),
    ],
)
def test_amounts_typed_with_spaces_around_them_are_trimmed(argv: list[str], command: str, field: str, value: str) -> None:
    # The engine's decimal parser refuses whitespace (the wire must be strict); a quoted " 1000" at a shell is not an error
    asked, payload = _request_of(_parser().parse_args(argv))
    assert asked == command and payload[field] == value


def test_init_into_a_missing_directory_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression (audit 12): a FileNotFoundError traceback
    target = tmp_path / "nonexistent" / "x.toml"
    assert main(["init", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"satchel: cannot write {target}: No such file or directory\n"


@pytest.mark.parametrize("where", ["missing", "a file"])
def test_journal_dump_of_a_path_that_is_no_journal_fails(tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression (audit 12): printed nothing and exited 0, as if the journal were empty
    path = tmp_path / "nonexistent"
    if where == "a file":
        path.write_text("[venue]\n")
    assert main(["journal", "dump", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"satchel: journal dump: no journal segments in {path}\n"


class StandIn:
    """A stand-in admin socket that takes one request and sends ``reply`` (maybe nothing) before closing."""

    def __init__(self, path: Path, reply: bytes) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, args=(reply,))
        self.thread.start()

    def _serve(self, reply: bytes) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)

    def join(self) -> None:
        self.thread.join(timeout=10)
        self.server.close()


@pytest.mark.parametrize("reply", [b"", b'{"ok": tr', b"not json\n", b"[1, 2]\n"])
def test_a_connection_closed_without_an_answer_is_outcome_unknown(
    tmp_path: Path, reply: bytes, capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression (audit 7): an empty or garbled answer gave a JSONDecodeError traceback, exit 1
    config = tmp_path / "config.toml"
    assert main(["init", str(config)]) == 0
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "admin.token").write_text("token\n")
    sock = tmp_path / "admin.sock"
    stand_in = StandIn(sock, reply)
    try:
        code = main(["--config", str(config), "--socket", str(sock), "deposit", "1", "USDC", "5"])
    finally:
        stand_in.join()
    err = capsys.readouterr().err
    assert code == 3
    what = "daemon closed the connection" if reply == b"" else "daemon's answer is garbled"
    assert err == f"satchel: {what}; outcome unknown\n"
