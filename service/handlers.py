"""HTTP handlers: parse and validate input, call the pipeline, present. Nothing else."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from . import conversation, quotes
from .admission_middleware import ADMISSION
from .auth import viewer_of
from .breakers import BreakerOpen
from .cached_render import serve
from .appkeys import DB, DEPS, READS, SETTINGS
from .cursors import AncestorsCursor, QuotesCursor, RepliesCursor
from .errors import bad_request
from .openapi import build_spec
from .params import parse_int, parse_post_id, parse_view_limits, reject_unknown
from .rate_limit_middleware import RATE_LIMITS
from .viewer import Viewer


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body, option=orjson.OPT_UTC_Z),
                        content_type="application/json")


def _cursor_param(request: web.Request) -> str:
    raw = request.query.get("cursor")
    if raw is None:
        raise bad_request("missing_parameter", "cursor is required")
    return raw


EXPANSION_SHARE = 0.7


class _Seen:
    """What a render found out that the cache key must depend on."""

    def __init__(self) -> None:
        self.deps: list = []

    def __call__(self) -> tuple:
        return tuple(self.deps)


def _deadline(request: web.Request) -> float:
    """When the tree must stop growing: most of the time budget, leaving the rest for
    hydrating quotes and presenting."""
    return time.monotonic() + EXPANSION_SHARE * request.app[SETTINGS].request_budget_ms / 1000


async def _viewer(request: web.Request, seen: _Seen) -> Viewer:
    viewer = await viewer_of(request)
    seen.deps.append(("viewer", viewer.id))
    return viewer


async def get_conversation(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    limits = parse_view_limits(request.query, request.app[SETTINGS])
    deps, seen = request.app[DEPS], _Seen()

    async def render():
        viewer = await _viewer(request, seen)
        return await conversation.render_conversation(deps, post_id, limits, viewer,
                                                      _deadline(request))
    return await serve(request, request.app[READS], render, seen)


async def get_replies(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    settings = request.app[SETTINGS]
    reject_unknown(request.query, ("cursor", "max_nodes"))
    max_nodes = parse_int(request.query, "max_nodes", settings.default_max_nodes, 1,
                          settings.max_max_nodes)
    raw = _cursor_param(request)
    deps, seen = request.app[DEPS], _Seen()

    async def render():
        viewer = await _viewer(request, seen)
        cursor = deps.cursors.decode(raw, RepliesCursor, viewer.id)
        seen.deps.append(cursor.conversation)
        return await conversation.render_replies_page(deps, post_id, cursor, max_nodes, viewer,
                                                      _deadline(request))
    return await serve(request, request.app[READS], render, seen)


async def get_ancestors(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    reject_unknown(request.query, ("cursor",))
    raw = _cursor_param(request)
    deps, seen = request.app[DEPS], _Seen()

    async def render():
        viewer = await _viewer(request, seen)
        cursor = deps.cursors.decode(raw, AncestorsCursor)
        seen.deps.append(cursor.conversation)
        return await conversation.render_ancestors_page(deps, post_id, cursor, viewer)
    return await serve(request, request.app[READS], render, seen)


async def get_quotes(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    reject_unknown(request.query, ("cursor", "limit"))
    settings = request.app[SETTINGS]
    limit = parse_int(request.query, "limit", min(20, settings.max_quotes_page), 1,
                      settings.max_quotes_page)
    raw = request.query.get("cursor")
    deps, seen = request.app[DEPS], _Seen()

    async def render():
        viewer = await _viewer(request, seen)
        cursor = deps.cursors.decode(raw, QuotesCursor, viewer.id) if raw is not None else None
        seen.deps.append(("quotes", post_id))  # bumped by writes of posts quoting it
        return await quotes.render_quotes(deps, post_id, cursor, limit, viewer)
    return await serve(request, request.app[READS], render, seen)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _database_answers(app: web.Application) -> bool:
    """SELECT 1 within 0.5 s. While the database breaker is open, this check is also its
    probe once the backoff allows one: an instance that a load balancer took out of rotation
    gets no other traffic, and would otherwise never see the breaker close (and never be
    ready again)."""
    breaker = app[READS].database
    probe = False
    if breaker.state != "closed":
        try:
            breaker.before()
            probe = True
        except BreakerOpen:
            pass
    try:
        await asyncio.wait_for(app[DB].fetchval("SELECT 1"), timeout=0.5)
    except Exception:  # any failure to answer means not ready
        if probe:
            breaker.failure()
        return False
    except BaseException:  # cancelled: says nothing of the database
        if probe:
            breaker.release()
        raise
    if probe:
        breaker.success()
    return True


async def readyz(request: web.Request) -> web.Response:
    """Which parts are degraded, and the figures behind it. 503 while the database does not
    answer or its breaker is open (cached conversations are still served, flagged stale); 200
    otherwise, even when ranking is down (chronological order), requests are being shed, or
    the shared rate-limit store is down (limits are then kept per process)."""
    app = request.app
    reads = app[READS]
    degraded, details = [], {}
    if not await _database_answers(app):
        degraded.append("database")
    if reads.database.state != "closed" and "database" not in degraded:
        degraded.append("database")
    if reads.ranking.state != "closed":
        degraded.append("ranking")
    details["breakers"] = {"database": reads.database.snapshot(),
                           "ranking": reads.ranking.snapshot()}
    details["render_cache"] = {"entries": len(reads.cache), "bytes": reads.cache.bytes,
                               "hits": reads.cache.hits, "misses": reads.cache.misses,
                               "stale_served": reads.cache.stale_served,
                               "coalesced": reads.coalescer.shared}
    gate = app.get(ADMISSION)
    if gate is not None:
        details["admission"] = gate.snapshot()
        if gate.controller.overloaded:   # a standing queue: shedding
            degraded.append("overloaded")
    limits = app.get(RATE_LIMITS)
    if limits is not None:
        details["rate_limits"] = limits.snapshot()
        if limits.store.shared_up is False:
            degraded.append("rate_limit_store")  # limits kept per process: still serving
    status = 503 if "database" in degraded else 200
    return json_response({"status": "degraded" if degraded else "ok", "degraded": degraded,
                          "details": details}, status=status)


async def openapi(request: web.Request) -> web.Response:
    # Built from the live settings: its limits follow PATCH /v1/admin/settings.
    return web.Response(body=orjson.dumps(build_spec(request.app[SETTINGS])),
                        content_type="application/json")
