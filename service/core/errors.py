"""One error shape everywhere: {"error": {"code": "...", "message": "..."}}. ApiError is raised
at any layer; service/http/middlewares.py answers it (service/http/responses.error_response)."""
from __future__ import annotations

from typing import Mapping


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = headers


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


# One instance for "does not exist" and "may not see it": the two must be indistinguishable.
def not_found() -> ApiError:
    return ApiError(404, "not_found", "post not found")


# Said the same way whatever the account's state: never why an account is unavailable.
def account_not_found() -> ApiError:
    return ApiError(404, "not_found", "account not found")


def unauthorized(message: str, realm: str = "arbor") -> ApiError:
    return ApiError(401, "unauthorized", message,
                    headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
