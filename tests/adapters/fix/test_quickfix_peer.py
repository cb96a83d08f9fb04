"""End to end with a FIX engine nobody here wrote: the PyPI ``quickfix`` package (QuickFIX C++ 1.16.0).

The initiator validates every message Satchel sends with QuickFIX's own FIX 4.4
data dictionary (``UseDataDictionary=Y``); a message it found invalid would come
back as a session Reject (35=3) or BusinessMessageReject (35=j), which the test
watches for. It signs its Logon in ``toAdmin`` the way Binance documents for
QuickFIX users. Marked slow: the quickfix wheel compiles for ~5 minutes once
(pip caches it), and QuickFIX runs its own threads.
"""

from __future__ import annotations

import queue
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.fix.auth import sign_logon
from tests.adapters.fix.venue import FixVenue, start_venue

fix = pytest.importorskip("quickfix")
fix44 = pytest.importorskip("quickfix44")
pytestmark = pytest.mark.slow
DICTIONARY = Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"
SOL = "SOL_USDC"


class Initiator(fix.Application):  # type: ignore[misc]
    """Records what QuickFIX delivers; signs the Logon."""

    def __init__(self, key: Ed25519PrivateKey, api_key: str) -> None:
        super().__init__()
        self.key = key
        self.api_key = api_key
        self.app: queue.Queue[Any] = queue.Queue()
        self.logged_on: queue.Queue[Any] = queue.Queue()
        self.session_id: Any = None
        self.sent_rejects: list[str] = []
        self.received_admin: list[str] = []

    def onCreate(self, session_id: Any) -> None:
        self.session_id = session_id

    def onLogon(self, session_id: Any) -> None:
        self.logged_on.put(True)

    def onLogout(self, session_id: Any) -> None:
        return None

    def toAdmin(self, message: Any, session_id: Any) -> None:
        header = message.getHeader()
        msg_type = header.getField(35)
        if msg_type == "A":
            signature = sign_logon(self.key, header.getField(49), header.getField(56), int(header.getField(34)),
                                   header.getField(52))
            message.setField(fix.StringField(553, self.api_key))
            message.setField(fix.StringField(95, str(len(signature))))
            message.setField(fix.StringField(96, signature))
        if msg_type in ("3", "j"):
            self.sent_rejects.append(message.toString().replace("\x01", "|"))

    def fromAdmin(self, message: Any, session_id: Any) -> None:
        self.received_admin.append(message.toString().replace("\x01", "|"))

    def toApp(self, message: Any, session_id: Any) -> None:
        return None

    def fromApp(self, message: Any, session_id: Any) -> None:
        fields = {}
        for part in message.toString().split("\x01"):
            if "=" in part:
                tag, _, value = part.partition("=")
                fields.setdefault(int(tag), value)
        self.app.put(fields)


def start_initiator(tmp: Path, port: int, sender: str, app: Initiator) -> Any:
    cfg = tmp / f"{sender}.cfg"
    cfg.write_text(
        "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=60\nStartTime=00:00:00\nEndTime=00:00:00\n"
        f"FileStorePath={tmp}/store\nUseDataDictionary=Y\nDataDictionary={DICTIONARY}\n"
        f"SocketConnectHost=127.0.0.1\nSocketConnectPort={port}\nHeartBtInt=30\nResetOnLogon=Y\n"
        f"\n[SESSION]\nBeginString=FIX.4.4\nSenderCompID={sender}\nTargetCompID=SATCHEL\n"
    )
    settings = fix.SessionSettings(str(cfg))
    initiator = fix.SocketInitiator(app, fix.FileStoreFactory(settings), settings)
    initiator.start()
    return initiator


async def receive(app: Initiator, wait_s: float = 10.0) -> dict[int, str]:
    return await trio.to_thread.run_sync(lambda: app.app.get(timeout=wait_s))  # type: ignore[no-any-return]


def message(kind: Any, *fields: tuple[int, str]) -> Any:
    out = kind()
    for tag, value in fields:
        out.setField(fix.StringField(tag, value))
    return out


async def test_quickfix_initiator_trades_and_validates_everything(nursery: trio.Nursery, tmp_path: Path) -> None:
    venue: FixVenue = await start_venue(nursery, tmp_path / "venue")
    maker_id = await venue.account(SOL="10")
    taker_id = await venue.account(USDC="1000")
    app = Initiator(venue.keys[maker_id], venue.public_key(maker_id))
    initiator = start_initiator(tmp_path, venue.address[1], "MAKER", app)
    try:
        with trio.fail_after(60):
            assert await trio.to_thread.run_sync(lambda: app.logged_on.get(timeout=20))
            now = fix.TransactTime()

            def send(msg: Any) -> None:
                msg.setField(now)
                assert fix.Session.sendToTarget(msg, app.session_id)

            send(message(fix44.NewOrderSingle, (11, "q1"), (55, SOL), (54, "2"), (38, "2"), (40, "2"), (44, "100"),
                         (59, "1"), (18, "6")))
            new = await receive(app)
            assert (new[35], new[150], new[39], new[11], new[151]) == ("8", "0", "0", "q1", "2")
            assert (await venue.engine.place_order(taker_id, SOL, "Bid", "Limit", price="100", quantity="0.5")).ok
            fill = await receive(app)
            assert (fill[150], fill[39], fill[31], fill[32], fill[14], fill[151], fill[6]) == ("F", "1", "100", "0.5", "0.5", "1.5", "100")
            replace = message(fix44.OrderCancelReplaceRequest, (41, "q1"), (11, "q2"), (55, SOL), (54, "2"), (38, "3"),
                              (40, "2"), (44, "101"))
            send(replace)
            replaced = await receive(app)
            assert (replaced[150], replaced[11], replaced[41], replaced[38], replaced[44]) == ("5", "q2", "q1", "3", "101")
            status = message(fix44.OrderStatusRequest, (11, "q2"), (55, SOL), (54, "2"))
            fix.Session.sendToTarget(status, app.session_id)
            assert (await receive(app))[150] == "I"
            mass = message(fix44.OrderMassStatusRequest, (584, "all"), (585, "7"))
            fix.Session.sendToTarget(mass, app.session_id)
            assert (await receive(app))[912] == "Y"
            listing = message(fix44.SecurityListRequest, (320, "s"), (559, "4"))
            fix.Session.sendToTarget(listing, app.session_id)
            securities = await receive(app)
            assert (securities[35], securities[146]) == ("y", "3")
            request = fix44.MarketDataRequest()
            for tag, value in ((262, "md"), (263, "1"), (264, "0")):
                request.setField(fix.StringField(tag, value))
            for entry_type in "012":
                group = fix44.MarketDataRequest.NoMDEntryTypes()
                group.setField(fix.StringField(269, entry_type))
                request.addGroup(group)
            symbols = fix44.MarketDataRequest.NoRelatedSym()
            symbols.setField(fix.StringField(55, SOL))
            request.addGroup(symbols)
            fix.Session.sendToTarget(request, app.session_id)
            snapshot = await receive(app)
            assert (snapshot[35], snapshot[55]) == ("W", SOL)
            assert (await venue.engine.place_order(taker_id, SOL, "Bid", "Limit", price="101", quantity="0.5")).ok
            got = [await receive(app), await receive(app)]
            assert {m[35] for m in got} == {"8", "X"}
            send(message(fix44.OrderCancelRequest, (41, "q2"), (11, "q3"), (55, SOL), (54, "2"), (38, "3")))
            cancelled = await receive(app)
            assert (cancelled[150], cancelled[39], cancelled[11], cancelled[41], cancelled[151]) == ("4", "4", "q3", "q2", "0")
            while cancelled[35] != "8":
                cancelled = await receive(app)
            send(message(fix44.OrderCancelRequest, (41, "q2"), (11, "q4"), (55, SOL), (54, "2"), (38, "3")))
            rejected = await receive(app)
            while rejected[35] == "X":
                rejected = await receive(app)
            assert (rejected[35], rejected[434], rejected[102], rejected[39]) == ("9", "1", "0", "4")  # too late
            send(message(fix44.OrderMassCancelRequest, (11, "mc"), (530, "7")))
            report = await receive(app)
            assert (report[35], report[531], report[533]) == ("r", "7", "0")
        assert app.sent_rejects == [], app.sent_rejects
        assert not [m for m in app.received_admin if "|35=3|" in m or "|35=j|" in m]
    finally:
        await trio.to_thread.run_sync(initiator.stop)
