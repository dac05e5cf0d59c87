"""GET /v1/posts/{id}/quotes: the quote posts of a post, newest first, for one viewer.

The viewer's rules hide quoting posts (a flat list: hidden ones are left out, there is nothing
below them to keep); short pages are refilled a bounded number of times, and the cursor
continues from the last post examined, so nothing is skipped or repeated. For an anonymous
viewer the list reaches exactly `counts.quotes` posts (the counter's rule is the same).
"""
from __future__ import annotations

from typing import Any

from storage import post_queries, quote_queries, reactions
from storage.rows import Viewer

from service.core.errors import bad_request, not_found

from . import presenters, visibility_rules as rules
from .cursors import QuotesCursor
from .deps import Deps

Json = dict[str, Any]


async def render_quotes(deps: Deps, post_id: int, cursor: QuotesCursor | None, limit: int,
                        viewer: Viewer) -> Json:
    async with deps.db.pinned():  # its statements on one pool connection
        return await _render_quotes(deps, post_id, cursor, limit, viewer)


async def _render_quotes(deps: Deps, post_id: int, cursor: QuotesCursor | None, limit: int,
                         viewer: Viewer) -> Json:
    if cursor is not None and cursor.quoted != post_id:
        raise bad_request("invalid_cursor", "cursor belongs to another post")
    quoted = (await post_queries.posts_by_id(deps.db, [post_id])).get(post_id)
    if rules.post_verdict(quoted, viewer) is not None:
        raise not_found()
    items, before, more = [], cursor.before if cursor else None, False
    for _ in range(1 + deps.refill_rounds):
        fetch = limit - len(items) + 1  # one more than wanted tells whether the list goes on
        rows = await quote_queries.quotes_page(deps.db, post_id, before, fetch)
        taken = 0
        for row in rows:
            if len(items) == limit:
                break
            taken += 1
            before = row.id
            if rules.post_verdict(row, viewer) is None:
                items.append(row)
        more = taken < len(rows) or len(rows) == fetch
        if not more or len(items) == limit:
            break
    reacted = {} if viewer.anonymous else await reactions.viewer_state(
        deps.db, viewer.id, [post_id, *(p.id for p in items)])  # one query for the page
    ctx = presenters.RenderContext(
        posts={post_id: quoted}, quoted={}, cursors=deps.cursors, focal_id=post_id,
        conversation_id=quoted.conversation_id, sort="newest", branching=limit, depth=0,
        viewer=viewer, reactions=reacted)
    next_cursor = deps.cursors.encode(QuotesCursor(quoted=post_id, before=before, viewer=viewer.id)) \
        if more and before is not None else None
    return {"items": [presenters.post_json(p, presenters.quote_json(p, ctx, nested=False), None,
                                           ctx.reacted(p.id)) for p in items],
            "count": quoted.quotes, "cursor": next_cursor}
