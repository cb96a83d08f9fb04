"""Backpack's ``{"code","message"}`` errors and the HTTP statuses they travel with."""

from __future__ import annotations

from typing import Final

from engine.messages import Rejection

HTTP_STATUS: Final[dict[str, int]] = {
    "UNAUTHORIZED": 401,
    "INVALID_SIGNATURE": 401,
    "FORBIDDEN": 403,
    "RESOURCE_NOT_FOUND": 404,
    "TOO_MANY_REQUESTS": 429,
    "SERVER_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "MAINTENANCE": 503,
}


class ApiError(Exception):
    """A request refused before or by the engine; nothing changed."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else HTTP_STATUS.get(code, 400)

    @classmethod
    def of(cls, rejection: Rejection) -> ApiError:
        return cls(rejection.code, rejection.message)

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError("INVALID_CLIENT_REQUEST", message)
