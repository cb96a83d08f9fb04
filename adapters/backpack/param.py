"""Request parameters of the Backpack API: each reader takes one field, checks it and names it when it is wrong.

Every reader raises ``bad_request`` (400 INVALID_CLIENT_REQUEST) with the field's
name and the value it got, before the request changes anything.
"""

from __future__ import annotations

from typing import Any, Final

from adapters.backpack.errors import bad_request
from engine.messages import CLIENT_ID_MAX
from engine.units import is_integer_text

HISTORY_LIMIT_MAX: Final = 1000
MARKET_TYPES: Final = ("SPOT", "PERP", "IPERP", "DATED", "PREDICTION", "RFQ")


def integer(params: dict[str, Any], name: str, default: int, low: int | None = None, high: int | None = None) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, str) and is_integer_text(value):
        value = int(value)
    if type(value) is not int:
        raise bad_request(f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad_request(f"{name} must be between {low} and {high}, got {value}")
    return value


def decimal(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a decimal string, got {value!r}")
    return value


def boolean(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if value is True or value == "true":  # not ``in (True, ...)``: 1 == True would pass
        return True
    if value is False or value is None or value == "false":
        return False
    raise bad_request(f"{name} must be true or false, got {value!r}")


def target(params: dict[str, Any]) -> tuple[int | None, int | None]:
    order_id = params.get("orderId")
    client_id = params.get("clientId")
    if order_id is not None and client_id is not None:
        raise bad_request("Give exactly one of orderId or clientId")
    if order_id is None and client_id is None:
        raise bad_request("Missing orderId or clientId")
    if order_id is not None:
        return integer(params, "orderId", 0, 1), None
    return None, integer(params, "clientId", 0, 0, CLIENT_ID_MAX)


def window(params: dict[str, Any]) -> str:
    interval = params.get("interval", "1d")
    if interval not in ("1d", "1w"):
        raise bad_request(f"Invalid interval {interval!r}: expected 1d or 1w")
    return str(interval)


def spot_wanted(params: dict[str, Any], default: str | None = None) -> bool:
    """Whether the ``marketType`` filter (one value, or an array: ``marketType=SPOT&marketType=PERP``)
    lets spot markets through, the only kind this venue has; absent, ``default`` (None: every type)."""
    wanted = params.get("marketType", default)
    if wanted is None:
        return True
    values = wanted if isinstance(wanted, list) else [wanted]
    if not values or not all(isinstance(v, str) and v.upper() in MARKET_TYPES for v in values):
        raise bad_request(f"Invalid marketType {wanted!r}: expected one or more of {', '.join(MARKET_TYPES)}")
    return any(v.upper() == "SPOT" for v in values)


def strategy_filter(params: dict[str, Any]) -> bool:
    """Whether a ``strategyId`` filter is given (it matches nothing: this venue runs no strategies)."""
    strategy_id = params.get("strategyId")
    if strategy_id is None:
        return False
    if not isinstance(strategy_id, str | int) or isinstance(strategy_id, bool) or strategy_id == "":
        raise bad_request(f"strategyId must be a strategy id, got {strategy_id!r}")
    return True


def descending(params: dict[str, Any]) -> bool:
    direction = params.get("sortDirection", params.get("sort_direction", "Desc"))
    if direction not in ("Asc", "Desc"):
        raise bad_request(f"Invalid sortDirection {direction!r}: expected Asc or Desc")
    return bool(direction == "Desc")


def page(params: dict[str, Any], rows: list[Any]) -> list[Any]:
    limit = integer(params, "limit", 100, 1, HISTORY_LIMIT_MAX)
    offset = integer(params, "offset", 0, 0)
    return rows[offset:offset + limit]
