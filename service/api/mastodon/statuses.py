"""/api/v1/statuses: a status, its context, posting, deleting, favourite and reblog, in
Mastodon's shapes, over Arbor's pipeline and storage (service/pipeline/mastodon_views.py).

`GET .../context` is a conversation view (the same render as /v1/conversations, the same
render cache) presented as Mastodon's Context: bounded by Arbor's limits (the view's query
parameters `depth`, `branching`, `max_nodes`, `ancestors`, `sort` are accepted too), the root
kept, hidden posts' replies kept in place, and every cut listed in the body's `more` and, for
the first `mastodon_context_max_links`, in a `Link` header. A cut's link is this endpoint
with `replies_cursor` or `ancestors_cursor`: the next page of that list, as a Context.

Writes run in one transaction with their Idempotency-Key record (service/http/idempotency.py).
A status the viewer may not see, one that does not exist, an id that is not one, and (for
DELETE) someone else's status: one 404, `{"error": "Record not found"}`, the same bytes.
Unknown parameters are ignored, as Mastodon ignores them.
"""
from __future__ import annotations

import time

import orjson
from aiohttp import web
from multidict import MultiDict

from storage import post_queries, reactions
from storage.db import CountedConnection
from storage.rows import PostRow, Viewer

from service.core.errors import bad_request, not_found
from service.http import idempotency
from service.http.auth import require_viewer, viewer_of
from service.http.cached_render import Seen, render_viewer, serve
from service.http.idempotency import Outcome
from service.http.keys import CHANGED, DB, DEPS, READS, SETTINGS
from service.http.mastodon import site
from service.http.responses import json_response
from service.inputs.mastodon import (CONTEXT_CURSORS, NewStatus, json_params, parse_new_status,
                                     status_id)
from service.inputs.query import CONVERSATION_PARAMS, parse_int, parse_view_limits
from service.pipeline import mastodon_views, post_writes, visibility_rules as rules
from service.pipeline.cursors import AncestorsCursor, RepliesCursor
from service.pipeline.mastodon_entities import link_header

EXPANSION_SHARE = 0.7  # as /v1/conversations: most of the budget, the rest to present


def _deadline(request: web.Request) -> float:
    return time.monotonic() + EXPANSION_SHARE * request.app[SETTINGS].request_budget_ms / 1000


def _json(status: dict) -> bytes:
    return orjson.dumps(status, option=orjson.OPT_UTC_Z)


async def _state_of(db, post_ids: list[int], viewer: Viewer) -> dict[int, tuple[bool, bool]]:
    if viewer.anonymous:
        return {}
    return await reactions.viewer_state(db, viewer.id, post_ids)


async def _status(db, request: web.Request, post: PostRow, viewer: Viewer, *,
                  state: tuple[bool, bool] | None = None,
                  counts: tuple[int, int] | None = None) -> dict:
    """`post` as a Status for `viewer`. `state`: the viewer's (liked, reposted) when known
    (else read, signed in); `counts`: exact (likes, reposts) when a write just changed them."""
    if state is None:
        state = (await _state_of(db, [post.id], viewer)).get(post.id, (False, False))
    extra = {"liked": state[0], "reposted": state[1]}
    status = await mastodon_views.status_of(db, post, request.app[DEPS].cursors, viewer,
                                            site(request.app[SETTINGS]), extra)
    if counts is not None:
        status["favourites_count"], status["reblogs_count"] = counts
    return status


async def get_status(request: web.Request) -> web.Response:
    post_id = status_id(request.match_info["status_id"])
    viewer = await viewer_of(request)
    status = await mastodon_views.status(request.app[DEPS], post_id, viewer,
                                         site(request.app[SETTINGS]))
    return web.Response(body=_json(status), content_type="application/json")


def _query(request: web.Request, names: tuple[str, ...]) -> MultiDict:
    """Only the parameters this endpoint reads (Mastodon ignores the others)."""
    return MultiDict((k, v) for k, v in request.query.items() if k in names)


# The tail of a rendered Context: its continuations and flags (mastodon_entities._context).
_MORE = b',"more":'


def _links(body: bytes, limit: int) -> str | None:
    """The Link header of a rendered (or cached) Context, from its `more` member: found from
    the end (a status's text cannot hold an unescaped quote), so only the tail is parsed."""
    at = body.rfind(_MORE)
    if at < 0 or limit <= 0:
        return None
    return link_header(orjson.loads(b"{" + body[at + 1:])["more"], limit)


async def get_context(request: web.Request) -> web.Response:
    focal_id = status_id(request.match_info["status_id"])
    settings = request.app[SETTINGS]
    query = _query(request, (*CONVERSATION_PARAMS, *CONTEXT_CURSORS))
    replies_raw, ancestors_raw = query.get("replies_cursor"), query.get("ancestors_cursor")
    if replies_raw is not None and ancestors_raw is not None:
        raise bad_request("invalid_parameter",
                          "give replies_cursor or ancestors_cursor, not both")
    if replies_raw is not None or ancestors_raw is not None:
        max_nodes = parse_int(query, "max_nodes", settings.default_max_nodes, 1,
                              settings.max_max_nodes)
    else:
        limits = parse_view_limits(_query(request, CONVERSATION_PARAMS), settings)
    deps, seen, where = request.app[DEPS], Seen(), site(settings)

    async def render():
        viewer = await render_viewer(request, seen)
        if replies_raw is not None:
            cursor = deps.cursors.decode(replies_raw, RepliesCursor, viewer.id)
            result, shown = await mastodon_views.context_replies(
                deps, focal_id, cursor, max_nodes, viewer, where, _deadline(request))
        elif ancestors_raw is not None:
            cursor = deps.cursors.decode(ancestors_raw, AncestorsCursor)
            result, shown = await mastodon_views.context_ancestors(deps, focal_id, cursor,
                                                                   viewer, where)
        else:
            result, shown = await mastodon_views.context(deps, focal_id, limits, viewer, where,
                                                         _deadline(request))
        seen.deps.extend(shown)  # Statuses carry no conversation_id for the cache to find
        return result
    response = await serve(request, request.app[READS], render, seen)
    if response.status == 200:
        link = _links(response.body, settings.mastodon_context_max_links)
        if link:
            response.headers["Link"] = link
    return response


async def _params(request: web.Request):
    """The parameters of a write: JSON, a form (what Mastodon.py sends), or the query."""
    if request.content_type == "application/json":
        return json_params(await request.read())
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            return await request.post()
        except ValueError as e:  # e.g. multipart without a boundary
            raise bad_request("invalid_body", f"the form cannot be read: {str(e)[:120]}") from None
    return request.query


def _creator(request: web.Request, viewer: Viewer, new: NewStatus):
    async def write(tx: CountedConnection) -> Outcome:
        made = await post_writes.create(tx, viewer, new.post.text,
                                        in_reply_to_id=new.post.in_reply_to_id,
                                        quote_of_id=new.post.quote_of_id)
        request[CHANGED] = made.changed  # service/http/middlewares.invalidate_on_write
        status = await _status(tx, request, made.post, viewer, state=(False, False))  # new
        return Outcome(200, _json(status))
    return write


async def create_status(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    key = idempotency.key_of(request)
    settings = request.app[SETTINGS]
    new = parse_new_status(await _params(request), settings.max_post_length)
    return await idempotency.run_write(
        request.app[DB], idempotency.keyed_request(request, viewer.id, key, new.canonical()),
        settings.idempotency_ttl_s, _creator(request, viewer, new))


def _deleter(request: web.Request, viewer: Viewer, post_id: int):
    async def write(tx: CountedConnection) -> Outcome:
        # someone else's status is "not found" too, as Mastodon answers it
        post = await post_writes.deletable(tx, viewer, post_id, others_as_missing=True)
        status = await _status(tx, request, post, viewer)
        request[CHANGED] = await post_writes.delete(tx, post)
        # Mastodon answers the deleted status with its source text (for "delete and redraft")
        return Outcome(200, _json({**status, "text": post.text}))
    return write


async def delete_status(request: web.Request) -> web.Response:
    post_id = status_id(request.match_info["status_id"])
    viewer = await require_viewer(request)
    key = idempotency.key_of(request)
    return await idempotency.run_write(
        request.app[DB], idempotency.keyed_request(request, viewer.id, key, None),
        request.app[SETTINGS].idempotency_ttl_s, _deleter(request, viewer, post_id))


def _reaction(change):
    """POST .../favourite, unfavourite, reblog, unreblog: the viewer's like or repost, made or
    undone (again is fine: nothing changes), then the status with the viewer's state and the
    exact counts (one query: storage/reactions.state_and_counts). As /v1's likes: only the
    viewer's own cached renders go stale (their `favourited`); everyone's counts follow when
    the background fold moves the deltas into the counters."""
    async def handler(request: web.Request) -> web.Response:
        post_id = status_id(request.match_info["status_id"])
        viewer = await require_viewer(request)
        db = request.app[DB]
        post = (await post_queries.posts_by_id(db, [post_id])).get(post_id)
        if post is None or rules.post_verdict(post, viewer) is not None:
            raise not_found()
        await change(db, post_id, viewer.id,
                     shards=request.app[SETTINGS].reactions_counter_shards)
        liked, reposted, likes, reposts = (
            await reactions.state_and_counts(db, post_id, viewer.id) or (False, False, 0, 0))
        request[CHANGED] = [("viewer", viewer.id)]
        return json_response(await _status(db, request, post, viewer, state=(liked, reposted),
                                           counts=(likes, reposts)))
    return handler


ROUTES = [
    web.post("/api/v1/statuses", create_status),
    web.get("/api/v1/statuses/{status_id}", get_status),
    web.delete("/api/v1/statuses/{status_id}", delete_status),
    web.get("/api/v1/statuses/{status_id}/context", get_context),
    web.post("/api/v1/statuses/{status_id}/favourite", _reaction(reactions.like)),
    web.post("/api/v1/statuses/{status_id}/unfavourite", _reaction(reactions.unlike)),
    web.post("/api/v1/statuses/{status_id}/reblog", _reaction(reactions.repost)),
    web.post("/api/v1/statuses/{status_id}/unreblog", _reaction(reactions.unrepost)),
]
