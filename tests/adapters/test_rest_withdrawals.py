"""Withdrawal requests over REST: signed raw requests, every refusal, and unmodified ccxt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pytest

from tests.adapters.live import Http, LiveVenue, Trader

PATH = "/wapi/v1/capital/withdrawals"
ADDRESS = "5Yq3kP9cFq2s7wWbJ8xYpA1nR4tLmZvD6hGe3uKsQ2Nf"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    with LiveVenue(Path(tmp_path_factory.mktemp("withdrawals"))) as live:
        yield live


def ask(http: Http, trader: Trader, **body: Any) -> tuple[int, Any]:
    return http.signed(trader, "POST", PATH, "withdraw", body)


def capital(http: Http, trader: Trader, asset: str) -> Any:
    status, balances = http.signed(trader, "GET", "/api/v1/capital", "balanceQuery")
    assert status == 200
    return balances[asset]


def test_request_is_queued_reserved_then_approved(venue: LiveVenue, http: Http) -> None:
    trader = venue.trader(USDC="100")
    status, queued = ask(http, trader, symbol="USDC", quantity="30.25", address=ADDRESS, blockchain="Solana", clientId="inv-7")
    assert status == 200, queued
    assert queued["status"] == "pending" and queued["quantity"] == "30.25" and queued["symbol"] == "USDC"
    assert (queued["toAddress"], queued["blockchain"], queued["clientId"], queued["fee"]) == (ADDRESS, "Solana", "inv-7", "0")
    assert queued["transactionHash"] is None and queued["isInternal"] is False and isinstance(queued["id"], int)
    venue.settle()
    assert capital(http, trader, "USDC") == {"available": "69.75", "locked": "30.25", "staked": "0"}
    status, listed = http.signed(trader, "GET", PATH, "withdrawalQueryAll")
    assert status == 200 and [w["status"] for w in listed] == ["pending"] and listed[0]["id"] == queued["id"]

    done = venue.run(venue.engine.approve_withdrawal, queued["id"], "0xfeed")
    assert done.ok, done
    venue.settle()
    assert capital(http, trader, "USDC") == {"available": "69.75", "locked": "0", "staked": "0"}
    status, listed = http.signed(trader, "GET", PATH, "withdrawalQueryAll", {"id": queued["id"]})
    assert [(w["status"], w["transactionHash"]) for w in listed] == [("confirmed", "0xfeed")]


def test_declined_request_releases_funds_and_listing_filters(venue: LiveVenue, http: Http) -> None:
    trader = venue.trader(SOL="3")
    _, first = ask(http, trader, symbol="SOL", quantity="1", address=ADDRESS, blockchain="Solana", clientId="a")
    _, second = ask(http, trader, symbol="SOL", quantity="2", address=ADDRESS, blockchain="Solana", clientId="b")
    assert second["status"] == "pending"
    status, refused = ask(http, trader, symbol="SOL", quantity="0.1", address=ADDRESS, blockchain="Solana")
    assert (status, refused["code"]) == (400, "INSUFFICIENT_FUNDS") and "available 0 SOL" in refused["message"]
    declined = venue.run(venue.engine.reject_withdrawal, first["id"], "address not whitelisted")
    assert declined.ok
    venue.settle()
    assert capital(http, trader, "SOL") == {"available": "1", "locked": "2", "staked": "0"}
    _, listed = http.signed(trader, "GET", PATH, "withdrawalQueryAll")
    assert [(w["id"], w["status"]) for w in listed] == [(second["id"], "pending"), (first["id"], "declined")]
    _, by_client = http.signed(trader, "GET", PATH, "withdrawalQueryAll", {"clientId": "a"})
    assert [w["id"] for w in by_client] == [first["id"]]
    _, paged = http.signed(trader, "GET", PATH, "withdrawalQueryAll", {"limit": 1, "offset": 1})
    assert [w["id"] for w in paged] == [first["id"]]
    other = venue.trader()
    assert http.signed(other, "GET", PATH, "withdrawalQueryAll") == (200, [])  # one's requests are not another's


def test_operator_withdrawals_are_listed_beside_requests(venue: LiveVenue, http: Http) -> None:
    trader = venue.trader(USDC="10")
    assert venue.run(venue.engine.withdraw, trader.account_id, "USDC", "4").ok
    assert ask(http, trader, symbol="USDC", quantity="1", address=ADDRESS, blockchain="Solana")[0] == 200
    venue.settle()
    _, listed = http.signed(trader, "GET", PATH, "withdrawalQueryAll")
    assert [(w["quantity"], w["status"], w["isInternal"]) for w in listed] == [("1", "pending", False), ("4", "confirmed", True)]
    assert len({w["id"] for w in listed}) == 2  # one id space: an id names one withdrawal
    for w in listed:
        _, found = http.signed(trader, "GET", PATH, "withdrawalQueryAll", {"id": w["id"]})
        assert found == [w]


@pytest.mark.parametrize(("body", "status", "code", "words"), [
    ({"symbol": "DOGE", "quantity": "1", "address": ADDRESS, "blockchain": "Solana"}, 400, "INVALID_ASSET", "DOGE"),
    ({"symbol": "USDC", "quantity": "1.0000001", "address": ADDRESS, "blockchain": "Solana"}, 400, "INVALID_QUANTITY", "decimal"),
    ({"symbol": "USDC", "quantity": "0", "address": ADDRESS, "blockchain": "Solana"}, 400, "INVALID_QUANTITY", "positive"),
    ({"symbol": "USDC", "quantity": "abc", "address": ADDRESS, "blockchain": "Solana"}, 400, "INVALID_QUANTITY", "decimal"),
    ({"symbol": "USDC", "quantity": "50.000001", "address": ADDRESS, "blockchain": "Solana"}, 400, "INSUFFICIENT_FUNDS", "50 USDC"),
    ({"symbol": "USDC", "quantity": "1", "blockchain": "Solana"}, 400, "INVALID_CLIENT_REQUEST", "address"),
    ({"symbol": "USDC", "quantity": "1", "address": " ", "blockchain": "Solana"}, 400, "INVALID_CLIENT_REQUEST", "address"),
    ({"symbol": "USDC", "quantity": "1", "address": ADDRESS, "blockchain": "My Chain"}, 400, "INVALID_CLIENT_REQUEST", "blockchain"),
    ({"symbol": "USDC", "quantity": "1", "address": ADDRESS, "blockchain": "Solana", "memo": "x"}, 400,
     "INVALID_CLIENT_REQUEST", "memo"),
    ({"symbol": "USDC", "quantity": "1", "address": ADDRESS, "blockchain": "Solana", "autoBorrow": True}, 501,
     "NOT_IMPLEMENTED", "autoBorrow"),
])
def test_bad_requests_are_refused_and_change_nothing(
    venue: LiveVenue, http: Http, body: dict[str, Any], status: int, code: str, words: str,
) -> None:
    trader = venue.trader(USDC="50")
    got_status, refused = ask(http, trader, **body)
    assert (got_status, refused["code"]) == (status, code) and words in refused["message"], refused
    venue.settle()
    assert capital(http, trader, "USDC") == {"available": "50", "locked": "0", "staked": "0"}
    assert http.signed(trader, "GET", PATH, "withdrawalQueryAll") == (200, [])


def test_unsigned_or_forged_requests_are_refused(venue: LiveVenue, http: Http) -> None:
    trader = venue.trader(USDC="50")
    body = {"symbol": "USDC", "quantity": "1", "address": ADDRESS, "blockchain": "Solana"}
    assert http.request("POST", PATH, body)[1]["code"] == "UNAUTHORIZED"  # no signature headers
    headers = trader.headers("withdraw", body)
    status, refused = http.request("POST", PATH, {**body, "quantity": "50"}, headers)
    assert (status, refused["code"]) == (401, "INVALID_SIGNATURE")
    headers = trader.headers("orderExecute", body)  # signed for another instruction
    assert http.request("POST", PATH, body, headers)[1]["code"] == "INVALID_SIGNATURE"
    venue.settle()
    assert capital(http, trader, "USDC")["locked"] == "0"


def test_ccxt_withdraw_and_fetch_withdrawals(venue: LiveVenue) -> None:
    trader = venue.trader(USDC="100")
    exchange = ccxt.backpack({
        "apiKey": trader.key, "secret": trader.secret,
        "urls": {"api": {"public": venue.http_url, "private": venue.http_url}},
    })
    try:
        exchange.load_markets()
        sent = exchange.withdraw("USDC", 12.5, ADDRESS, {"network": "Solana", "tag": "ccxt-1"})
        assert (sent["status"], sent["amount"], sent["currency"], sent["addressTo"]) == ("pending", 12.5, "USDC", ADDRESS)
        assert (sent["info"]["blockchain"], sent["info"]["clientId"], sent["fee"]["cost"]) == ("Solana", "ccxt-1", 0.0)
        venue.settle()
        assert exchange.fetch_balance()["USDC"]["used"] == 12.5
        assert venue.run(venue.engine.approve_withdrawal, int(sent["id"]), "0xccxt").ok
        venue.settle()
        history = exchange.fetch_withdrawals("USDC")
        assert [(w["id"], w["status"], w["txid"], w["amount"]) for w in history] == [(sent["id"], "ok", "0xccxt", 12.5)]
        assert exchange.fetch_balance()["USDC"]["total"] == 87.5
    finally:
        exchange.session.close()
