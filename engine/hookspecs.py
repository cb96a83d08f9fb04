"""Hook specifications for jurisdiction plugins. Specs only; no logic.

Every hook is pure: it reads the values it is given and returns a verdict. No
I/O, no clock, no randomness, because hooks run inside actor decisions and
their outcome must not depend on when or where they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from engine.messages import PlaceOrder
    from engine.plugin_api import AccountProfile
    from engine.spec import MarketSpec

hookspec = pluggy.HookspecMarker("satchel")
hookimpl = pluggy.HookimplMarker("satchel")

# --- accounts -----------------------------------------------------------------


@hookspec
def satchel_account_opening(country: str, category: str, parent_id: int) -> str | None:
    """Called before an account is created. Return a reason to refuse it, or None.

    All implementations are called; any refusal wins (the first reason is shown).
    """


# --- orders ---------------------------------------------------------------------


@hookspec
def satchel_order_gate(account: AccountProfile, market: MarketSpec, order: PlaceOrder) -> str | None:
    """Called by the account actor for every new order, before funds are held.

    Return a reason to refuse the order (the user sees it with code FORBIDDEN),
    or None to allow it. All implementations are called; any refusal wins.
    """
