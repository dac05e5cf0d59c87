"""The conversation pipeline: skeleton -> hydrate -> rules -> present.

Round trips per render: the ancestor chain (1), one per tree level (<= depth), the posts (1)
and the quoted posts (<= 1): at most depth + 3, whatever the size of the conversation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage import post_queries, thread_queries
from storage.db import Database
from storage.post_queries import PostRow

from . import presenters, visibility_rules as rules
from .cursors import AncestorsCursor, CursorCodec, RepliesCursor
from .errors import bad_request, not_found
from .params import ViewLimits
from .thread_skeleton import NORMAL, SkelNode, expand

Json = dict[str, Any]


@dataclass(frozen=True)
class Deps:
    db: Database
    cursors: CursorCodec


async def _hydrate(db: Database, ids: list[int]) -> tuple[dict[int, PostRow], dict[int, PostRow]]:
    """Posts in one batch, then the posts they quote (those not already loaded) in another."""
    posts = await post_queries.posts_by_id(db, ids)
    wanted = {p.quote_of_id for p in posts.values()
              if p.quote_of_id is not None and p.quote_of_id not in posts
              and p.quoted is not None and rules.quote_state(p.quoted) == "ok"}
    quoted = await post_queries.posts_by_id(db, wanted) if wanted else {}
    return posts, quoted


def _ancestors_json(chain: list[thread_queries.ChainRow], shown: int, ctx: presenters.RenderContext,
                    limit: int) -> Json:
    """Root first; the root always kept; the gap between it and the nearest ancestors as a
    count and a cursor. chain[0] is the focal post, chain[i] its i-th ancestor."""
    focal = chain[0]
    nearest = chain[1:shown + 1]
    gap_start = chain[shown + 1] if len(chain) > shown + 1 else None
    ids = [row.id for row in reversed(nearest)]
    if not ids or ids[0] != focal.conversation_id:
        if focal.id != focal.conversation_id:
            ids.insert(0, focal.conversation_id)
    cursor, omitted = None, 0
    if gap_start is not None and gap_start.depth > 0:
        omitted = gap_start.depth
        cursor = ctx.cursors.encode(AncestorsCursor(focal=focal.id, conversation=focal.conversation_id,
                                                    start=gap_start.id, page=limit))
    return {"items": [presenters.flat_node(i, ctx) for i in ids], "omitted": omitted,
            "cursor": cursor}


async def render_conversation(deps: Deps, focal_id: int, limits: ViewLimits) -> Json:
    # The chain walks `ancestors` hops: the root plus the nearest ancestors-1 are shown, and
    # the last hop, when it is not the root, is where the omitted gap starts.
    chain = await thread_queries.chain_up(deps.db, focal_id, limits.ancestors)
    if not chain or chain[0].deleted:
        raise not_found()
    focal = chain[0]
    shown = min(len(chain) - 1, limits.ancestors - 1)
    if len(chain) - 1 <= limits.ancestors and chain[-1].depth == 0:
        shown = len(chain) - 1  # the whole chain fits, root included
    root = SkelNode(focal.id, focal.counts, 0)
    skel = await expand(deps.db, focal.conversation_id, root, section=NORMAL, sort=limits.sort,
                        depth=limits.depth, branching=limits.branching, max_nodes=limits.max_nodes)
    ids = [row.id for row in chain[:shown + 1]] + [focal.conversation_id] + skel.ids
    posts, quoted = await _hydrate(deps.db, ids)
    if rules.post_verdict(posts.get(focal_id)) is not None:
        raise not_found()
    ctx = presenters.RenderContext(posts, quoted, deps.cursors, focal_id, focal.conversation_id,
                                   limits.sort, limits.branching, limits.depth)
    focal_post = posts[focal_id]
    return {
        "focal_id": str(focal_id),
        "ancestors": _ancestors_json(chain, shown, ctx, limits.ancestors),
        "focal": presenters.post_json(focal_post, presenters.quote_json(focal_post, ctx, False),
                                      presenters.replies_json(root, NORMAL, ctx,
                                                              with_sections=True)),
        "degraded": [],
        "partial": skel.partial,
    }


async def render_replies_page(deps: Deps, focal_id: int, cursor: RepliesCursor,
                              max_nodes: int) -> Json:
    if cursor.focal != focal_id:
        raise bad_request("invalid_cursor", "cursor belongs to another conversation")
    root = SkelNode(cursor.parent, (0, 0, 0), 0)
    depth = cursor.depth + 1  # the page's items, then cursor.depth levels under each
    skel = await expand(deps.db, cursor.conversation, root, section=cursor.section,
                        sort=cursor.sort, depth=depth, branching=cursor.branching,
                        max_nodes=max_nodes, after=cursor.after, consumed=cursor.consumed,
                        root_counts_known=False)
    posts, quoted = await _hydrate(deps.db, [cursor.parent] + skel.ids)
    parent = posts.get(cursor.parent)
    if parent is not None:  # the remaining count comes from the parent's counters
        root.counts = parent.replies
    ctx = presenters.RenderContext(posts, quoted, deps.cursors, focal_id, cursor.conversation,
                                   cursor.sort, cursor.branching, depth)
    return presenters.page_json(skel, ctx)


async def render_ancestors_page(deps: Deps, focal_id: int, cursor: AncestorsCursor) -> Json:
    if cursor.focal != focal_id:
        raise bad_request("invalid_cursor", "cursor belongs to another conversation")
    chain = await thread_queries.chain_up(deps.db, cursor.start, cursor.page)
    chain = [row for row in chain if row.depth > 0 and row.conversation_id == cursor.conversation]
    page, rest = chain[:cursor.page], chain[cursor.page:]
    posts, quoted = await _hydrate(deps.db, [row.id for row in page])
    ctx = presenters.RenderContext(posts, quoted, deps.cursors, focal_id, cursor.conversation,
                                   "ranked", 1, 0)
    next_cursor, omitted = None, 0
    if rest:
        omitted = rest[0].depth
        next_cursor = deps.cursors.encode(AncestorsCursor(
            focal=focal_id, conversation=cursor.conversation, start=rest[0].id, page=cursor.page))
    return {"items": [presenters.flat_node(row.id, ctx) for row in reversed(page)],
            "omitted": omitted, "cursor": next_cursor}
