"""aiohttp glue of the Mastodon API (/api/v1, /api/v2; service/api/mastodon/): its error
shape, and the Site its entities link to.

Mastodon's Error entity is `{"error": "<message>"}`. Every error answered under /api/ (by a
handler, or by the rate limits, admission or aiohttp before one) is rewritten into it, with
its status and headers kept. Every 404 says `Record not found`, Mastodon's words, so a
status that does not exist and one the viewer may not see answer the same bytes.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata

import orjson
from aiohttp import web

from service.core.settings import Settings
from service.pipeline.mastodon_entities import Site

PREFIX = "/api/"
NOT_FOUND = "Record not found"
NOT_FOUND_BODY = orjson.dumps({"error": NOT_FOUND})


@web.middleware
async def mastodon_errors(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status < 400 or not request.path.startswith(PREFIX):
        return response
    if (not isinstance(response, web.Response) or response.content_type != "application/json"
            or "Content-Encoding" in response.headers):  # errors are never compressed, but
        return response                                  # a coded body is not ours to parse
    if response.status == 404:
        body = NOT_FOUND_BODY
    else:
        try:
            error = orjson.loads(response.body)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return response
        if not isinstance(error, dict):
            return response  # already Mastodon's shape
        body = orjson.dumps({"error": str(error.get("message", error.get("code", "error")))})
    response.body = body
    return response


@lru_cache(maxsize=16)
def _version() -> str:
    try:
        return metadata.version("arbor")
    except metadata.PackageNotFoundError:
        return "0"


def site(settings: Settings) -> Site:
    """Where the entities link to: the mastodon_public_url setting, else localhost:port."""
    base = settings.mastodon_public_url or f"http://localhost:{settings.port}"
    return Site(base_url=base, arbor_version=_version())
