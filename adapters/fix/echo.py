"""The echo application QuickFIX's acceptance suite assumes behind the session (``at_application.h``).

NewOrderSingle, SecurityDefinition and Email are sent back unchanged (body
re-sorted by tag, header fields other than the session's own kept). A
NewOrderSingle with PossResend=Y whose ClOrdID was already seen in this logon is
dropped. Anything else is answered with BusinessMessageReject 380=3, and so is
a message over the session's rate limit (380=0). Only used to run the conformance suite (``[adapters.fix] application = "echo"``).
"""

from __future__ import annotations

from typing import Final

from adapters.fix.codec import Message
from adapters.fix.dictionary import SESSION_HEADER, Validated
from adapters.fix.session import Session

ECHOED: Final = frozenset({"D", "d", "C"})


class EchoApplication:
    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}

    def on_logon(self, session: Session) -> None:
        self.seen[session.name] = set()

    def on_disconnect(self, session: Session) -> None:
        self.seen.pop(session.name, None)

    def on_message(self, session: Session, message: Message, parts: Validated) -> None:
        msg_type = message.msg_type
        if msg_type not in ECHOED:
            session.business_reject(message, 3, "Unsupported Message Type")
            return
        if msg_type == "D":
            seen = self.seen.setdefault(session.name, set())
            cl_ord_id = message.get(11) or ""
            if message.get(97) == "Y" and cl_ord_id in seen:
                return
            seen.add(cl_ord_id)
        header = [(tag, value) for tag, value in parts.header if tag not in SESSION_HEADER]
        session.send(msg_type, parts.body, header)

    def refuse(self, session: Session, message: Message, text: str) -> None:
        session.business_reject(message, 0, text)
