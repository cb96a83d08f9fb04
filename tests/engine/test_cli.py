"""The ``satchel`` command line, without a daemon: what each command asks the admin socket for (engine/cli.py)."""

from __future__ import annotations

import pytest

from engine.cli import _parser, _request_of


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
