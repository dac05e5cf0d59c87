"""One error shape everywhere: {"error": {"code": "...", "message": "..."}}."""
from __future__ import annotations

import orjson
from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


# One instance for "does not exist" and "may not see it": the two must be indistinguishable.
def not_found() -> ApiError:
    return ApiError(404, "not_found", "post not found")


def error_response(status: int, code: str, message: str, *,
                   retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)
