"""/v1/posts: a post (`GET /v1/posts/{post_id}`) and its quotes (`GET
/v1/posts/{post_id}/quotes`), through the read path like a conversation
(service/http/cached_render.py, service/pipeline/); writes by the signed-in viewer (`POST
/v1/posts`, `DELETE /v1/posts/{post_id}`); the viewer's like and repost (`PUT` / `DELETE
/v1/posts/{post_id}/like|repost`, idempotent, storage/reactions.py).

A like changes the liker's own cached renders at once (their `liked`); the counts and the
ranked order shown to everyone follow within `reactions_fold_interval_ms` (the fold), and the
like's own answer carries the exact counts.

A post the viewer may not see (missing, deleted, by an account that blocks them or that they
block or mute, unavailable, protected and not followed, or with a muted word) is a 404
identical to that of a post that does not exist, whether it is replied to, quoted or deleted.
Each write runs in one transaction with its Idempotency-Key record (service/http/idempotency.py).
"""
from __future__ import annotations

import orjson
from aiohttp import web

from storage import post_queries, reactions
from storage.db import CountedConnection
from storage.rows import PostRow, Viewer

from service.core.errors import not_found
from service.http import idempotency
from service.http.auth import require_viewer
from service.http.cached_render import Seen, render_viewer, serve
from service.http.idempotency import Outcome
from service.http.keys import CHANGED, DB, DEPS, READS, SETTINGS
from service.http.responses import json_response
from service.inputs.bodies import json_object
from service.inputs.posts import FIELDS, NewPostInput, parse_new_post
from service.inputs.query import parse_int, parse_post_id, reject_unknown
from service.pipeline import (conversation, post_writes, presenters, quotes,
                              visibility_rules as rules)
from service.pipeline.cursors import QuotesCursor


def _created_json(post: PostRow, posts: dict[int, PostRow],
                  request: web.Request, viewer: Viewer) -> bytes:
    """The new post as a conversation's Post node (no replies yet), its quote embedded the way
    a conversation view embeds it."""
    ctx = presenters.RenderContext(
        posts=posts, quoted={}, cursors=request.app[DEPS].cursors, focal_id=post.id,
        conversation_id=post.conversation_id, sort="ranked", branching=1, depth=0,
        viewer=viewer, focal_author=post.author.id)
    body = presenters.post_json(post, presenters.quote_json(post, ctx, nested=False), None)
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def _creator(request: web.Request, viewer: Viewer, new: NewPostInput):
    async def write(tx: CountedConnection) -> Outcome:
        made = await post_writes.create(tx, viewer, new.text, in_reply_to_id=new.in_reply_to_id,
                                        quote_of_id=new.quote_of_id)
        request[CHANGED] = made.changed  # service/http/middlewares.invalidate_on_write
        return Outcome(201, _created_json(made.post, made.posts, request, viewer))
    return write


async def create_post(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    key = idempotency.key_of(request)
    settings = request.app[SETTINGS]
    body = json_object(await request.read(), FIELDS)
    new = parse_new_post(body, settings.max_post_length)
    response = await idempotency.run_write(
        request.app[DB], idempotency.keyed_request(request, viewer.id, key, body),
        settings.idempotency_ttl_s, _creator(request, viewer, new))
    if response.status == 201:  # fresh or replayed: the body names the post
        response.headers["Location"] = location(orjson.loads(response.body)["id"])
    return response


def location(post_id: str) -> str:
    """Where a created post is served: its conversation view, focused on it."""
    return f"/v1/conversations/{post_id}"


def _deleter(request: web.Request, viewer: Viewer, post_id: int):
    async def write(tx: CountedConnection) -> Outcome:
        post = await post_writes.deletable(tx, viewer, post_id, others_as_missing=False)
        request[CHANGED] = await post_writes.delete(tx, post)
        return Outcome(204)
    return write


async def delete_post(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    key = idempotency.key_of(request)
    post_id = parse_post_id(request.match_info["post_id"])
    return await idempotency.run_write(
        request.app[DB], idempotency.keyed_request(request, viewer.id, key, None),
        request.app[SETTINGS].idempotency_ttl_s, _deleter(request, viewer, post_id))


async def get_quotes(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    reject_unknown(request.query, ("cursor", "limit"))
    settings = request.app[SETTINGS]
    limit = parse_int(request.query, "limit", min(20, settings.max_quotes_page), 1,
                      settings.max_quotes_page)
    raw = request.query.get("cursor")
    deps, seen = request.app[DEPS], Seen()

    async def render():
        viewer = await render_viewer(request, seen)
        cursor = deps.cursors.decode(raw, QuotesCursor, viewer.id) if raw is not None else None
        seen.deps.append(("quotes", post_id))  # bumped by writes of posts quoting it
        return await quotes.render_quotes(deps, post_id, cursor, limit, viewer)
    return await serve(request, request.app[READS], render, seen)


async def get_post(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    reject_unknown(request.query, ())
    deps, seen = request.app[DEPS], Seen()

    async def render():
        viewer = await render_viewer(request, seen)
        return await conversation.render_post(deps, post_id, viewer)
    return await serve(request, request.app[READS], render, seen)


def _reaction(change):
    """PUT/DELETE /v1/posts/{post_id}/like|repost: `change` is storage/reactions' like, unlike,
    repost or unrepost. 200 with the viewer's state and the exact counts, changed or not."""
    async def react(request: web.Request) -> web.Response:
        viewer = await require_viewer(request)
        post_id = parse_post_id(request.match_info["post_id"])
        db = request.app[DB]
        post = (await post_queries.posts_by_id(db, [post_id])).get(post_id)
        if post is None or rules.post_verdict(post, viewer) is not None:
            raise not_found()
        await change(db, post_id, viewer.id, shards=request.app[SETTINGS].reactions_counter_shards)
        liked, reposted, likes, reposts = (
            await reactions.state_and_counts(db, post_id, viewer.id) or (False, False, 0, 0))
        request[CHANGED] = [("viewer", viewer.id)]  # the viewer's own renders show `liked`
        return json_response({"id": str(post_id), "liked": liked, "reposted": reposted,
                              "counts": {"likes": likes, "reposts": reposts}})
    return react


ROUTES = [
    web.get("/v1/posts/{post_id}", get_post),
    web.put("/v1/posts/{post_id}/like", _reaction(reactions.like)),
    web.delete("/v1/posts/{post_id}/like", _reaction(reactions.unlike)),
    web.put("/v1/posts/{post_id}/repost", _reaction(reactions.repost)),
    web.delete("/v1/posts/{post_id}/repost", _reaction(reactions.unrepost)),
    web.get("/v1/posts/{post_id}/quotes", get_quotes),
    web.post("/v1/posts", create_post),
    web.delete("/v1/posts/{post_id}", delete_post),
]
