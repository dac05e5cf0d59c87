"""Responses in the service's shapes: JSON bodies (orjson, times in UTC with a Z), and the one
error shape {"error": {"code", "message"}} with its headers."""
from __future__ import annotations

from typing import Any, Mapping

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body, option=orjson.OPT_UTC_Z),
                        content_type="application/json")


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)
