"""/v1/conversations/{post_id}: a conversation around a post, and the next pages of its
replies and ancestors (DESIGN §4).

Each handler hands the read path (service/http/cached_render.py: the render cache,
coalescing, stale copies) its parsing (service/inputs/query.py), run on a cache miss only,
and a render, which calls the pipeline (service/pipeline/conversation.py).
"""
from __future__ import annotations

import time

from aiohttp import web

from service.core.errors import bad_request
from service.http.cached_render import Seen, render_viewer, serve
from service.http.keys import DEPS, READS, SETTINGS
from service.inputs.query import parse_int, parse_post_id, parse_view_limits, reject_unknown
from service.pipeline import conversation
from service.pipeline.cursors import AncestorsCursor, RepliesCursor


def _cursor_param(request: web.Request) -> str:
    raw = request.query.get("cursor")
    if raw is None:
        raise bad_request("missing_parameter", "cursor is required")
    return raw


EXPANSION_SHARE = 0.7


def _deadline(request: web.Request) -> float:
    """When the tree must stop growing: most of the time budget, leaving the rest for
    hydrating quotes and presenting."""
    return time.monotonic() + EXPANSION_SHARE * request.app[SETTINGS].request_budget_ms / 1000


# Each handler parses its parameters in `validate`, which the read path runs only on a cache
# miss: a cached read costs the lookup, not the parsing.

async def get_conversation(request: web.Request) -> web.Response:
    deps, seen, args = request.app[DEPS], Seen(), {}

    def validate() -> None:
        args["post_id"] = parse_post_id(request.match_info["post_id"])
        args["limits"] = parse_view_limits(request.query, request.app[SETTINGS])

    async def render():
        viewer = await render_viewer(request, seen)
        return await conversation.render_conversation(deps, args["post_id"], args["limits"],
                                                      viewer, _deadline(request))
    return await serve(request, request.app[READS], render, seen, validate=validate)


async def get_replies(request: web.Request) -> web.Response:
    deps, seen, args = request.app[DEPS], Seen(), {}

    def validate() -> None:
        args["post_id"] = parse_post_id(request.match_info["post_id"])
        settings = request.app[SETTINGS]
        reject_unknown(request.query, ("cursor", "max_nodes"))
        args["max_nodes"] = parse_int(request.query, "max_nodes", settings.default_max_nodes, 1,
                                      settings.max_max_nodes)
        args["raw"] = _cursor_param(request)

    async def render():
        viewer = await render_viewer(request, seen)
        cursor = deps.cursors.decode(args["raw"], RepliesCursor, viewer.id)
        seen.deps.append(cursor.conversation)
        return await conversation.render_replies_page(deps, args["post_id"], cursor,
                                                      args["max_nodes"], viewer,
                                                      _deadline(request))
    return await serve(request, request.app[READS], render, seen, validate=validate)


async def get_ancestors(request: web.Request) -> web.Response:
    deps, seen, args = request.app[DEPS], Seen(), {}

    def validate() -> None:
        args["post_id"] = parse_post_id(request.match_info["post_id"])
        reject_unknown(request.query, ("cursor",))
        args["raw"] = _cursor_param(request)

    async def render():
        viewer = await render_viewer(request, seen)
        cursor = deps.cursors.decode(args["raw"], AncestorsCursor)
        seen.deps.append(cursor.conversation)
        return await conversation.render_ancestors_page(deps, args["post_id"], cursor, viewer)
    return await serve(request, request.app[READS], render, seen, validate=validate)


ROUTES = [
    web.get("/v1/conversations/{post_id}", get_conversation),
    web.get("/v1/conversations/{post_id}/replies", get_replies),
    web.get("/v1/conversations/{post_id}/ancestors", get_ancestors),
]
