"""/v1/admin/conversations/{post_id}/limits: caps on one conversation's view limits.

SREs give a viral conversation smaller limits without touching the others: the caps lower
both the defaults and what a request may ask for; the rest stays reachable through cursors.
"""
from __future__ import annotations

import orjson
from aiohttp import web

from storage import conversation_limits as store
from storage.rows import Caps

from service.core.errors import bad_request, not_found
from service.http.auth import require_admin
from service.http.keys import CHANGED, DB
from service.http.responses import json_response
from service.inputs.caps import RANGES, parse_caps
from service.inputs.query import parse_post_id

def _json(conversation_id: int, caps: Caps) -> dict:
    return {"conversation_id": str(conversation_id),
            **{name: getattr(caps, name) for name in RANGES}}


async def _conversation(request: web.Request) -> int:
    require_admin(request)
    post_id = parse_post_id(request.match_info["post_id"])
    conversation_id = await store.conversation_of(request.app[DB], post_id)
    if conversation_id is None:
        raise not_found()
    return conversation_id


async def get_limits(request: web.Request) -> web.Response:
    conversation_id = await _conversation(request)
    return json_response(_json(conversation_id, await store.get_caps(request.app[DB],
                                                                     conversation_id)))


async def put_limits(request: web.Request) -> web.Response:
    conversation_id = await _conversation(request)
    try:
        caps = parse_caps(orjson.loads(await request.read()))
    except orjson.JSONDecodeError:
        raise bad_request("invalid_json", "the body is not valid JSON") from None
    await store.set_caps(request.app[DB], conversation_id, caps)
    request[CHANGED] = [conversation_id]
    return json_response(_json(conversation_id, caps))


async def delete_limits(request: web.Request) -> web.Response:
    conversation_id = await _conversation(request)
    await store.clear_caps(request.app[DB], conversation_id)
    request[CHANGED] = [conversation_id]
    return web.Response(status=204)


ROUTES = [web.get("/v1/admin/conversations/{post_id}/limits", get_limits),
          web.put("/v1/admin/conversations/{post_id}/limits", put_limits),
          web.delete("/v1/admin/conversations/{post_id}/limits", delete_limits)]
