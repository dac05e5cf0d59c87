"""The conversation pipeline: skeleton (+ tree posts) -> hydrate -> rules -> present.

A render runs its statements on one pool connection (storage/db.py `pinned`), acquired once,
so they run one after the other. Round trips per render: the ancestor chain with its posts
(1), one per tree level (<= depth; a level also brings its posts), the quoted posts (<= 1)
and, for a signed-in viewer, their own likes and reposts of the posts shown (1): at most
depth + 3, whatever the size of the conversation. Visibility rules that hide rows can add refill
rounds (at most `visibility_refill_rounds` per level, one or two queries each).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from storage import post_queries, reactions, thread_queries
from storage.rows import ANONYMOUS, ChainRow, PostRow, Viewer

from service.core.errors import bad_request, not_found
from service.resilience.failures import DATABASE_ERRORS

from . import presenters, visibility_rules as rules
from .cursors import AncestorsCursor, RepliesCursor
from .deps import Deps
from .limits import ViewLimits, capped
from .skeleton import NORMAL, ExpandSpec, RankingUnavailable, SkelNode, chronological, expand

Json = dict[str, Any]
log = logging.getLogger("arbor.conversation")


async def _quoted(deps: Deps, posts: Iterable[PostRow], have: dict[int, PostRow],
                  viewer: Viewer) -> tuple[dict[int, PostRow], bool]:
    """The posts quoted by `posts` that the embeds will show, in one batch, and whether that
    failed. Quotes fail open (DESIGN §5): the quoting posts are shown anyway, their embeds
    `temporarily_unavailable`, and the response says `degraded: ["quotes"]`."""
    wanted = {p.quote_of_id for p in posts
              if p.quote_of_id is not None and p.quote_of_id not in have
              and p.quoted is not None and rules.quote_state(p.quoted, viewer) == "ok"}
    if not wanted:
        return {}, False
    try:
        if deps.faults.quote_hydration is not None:
            raise deps.faults.quote_hydration
        async with asyncio.timeout(deps.quote_timeout_s):  # no task created, unlike wait_for
            return await post_queries.posts_by_id(deps.db, wanted), False
    except DATABASE_ERRORS as e:
        log.warning("quote hydration failed, serving without embeds: %s: %s",
                    type(e).__name__, e)
        return {}, True


async def _hydrate(deps: Deps, posts: list[PostRow], have: dict[int, PostRow],
                   viewer: Viewer) -> tuple[dict[int, PostRow], bool, dict]:
    """The quoted posts (_quoted) and, for a signed-in viewer, their own likes and reposts
    of every post shown (one query for the page). One after the other: a render's statements
    share its one connection (a pinned connection runs one statement at a time)."""
    quoted, failed = await _quoted(deps, posts, have, viewer)
    if viewer.anonymous:
        return quoted, failed, {}
    ids = {p.id for p in posts} | {p.quote_of_id for p in posts if p.quote_of_id is not None}
    return quoted, failed, await reactions.viewer_state(deps.db, viewer.id, ids)


def _spec(deps: Deps, conversation_id: int, sort: str, depth: int, branching: int,
          max_nodes: int, viewer: Viewer, focal_author: int, deadline: float | None) -> ExpandSpec:
    filters = bool(viewer.blocks or viewer.blocked_by or viewer.mutes or viewer.muted_words)
    return ExpandSpec(conversation_id=conversation_id, sort=sort, depth=depth,
                      branching=branching, max_nodes=max_nodes, viewer=viewer,
                      focal_author=focal_author, head_limit=deps.head_limit,
                      refill_rounds=deps.refill_rounds,
                      overfetch=deps.overfetch if filters else 0, head_window=deps.head_window,
                      deadline=deadline, ranking=deps.ranking, ranking_fault=deps.faults.ranking)


async def _expand(deps: Deps, spec: ExpandSpec, make_root, **kwargs):
    """Expand; when ranking is unavailable, expand chronologically instead (fail open)."""
    try:
        root = make_root()
        return spec, root, await expand(deps.db, spec, root, **kwargs), []
    except RankingUnavailable as e:
        log.warning("ranking unavailable, rendering chronologically: %s", e)
        spec = chronological(spec)
        root = make_root(restart=True)
        if "head_posts" in kwargs:
            kwargs["head_posts"] = []  # make_root(restart=True) counts the head as shown
        return spec, root, await expand(deps.db, spec, root, **kwargs), ["ranking"]


def _ancestors_json(chain: list[ChainRow], shown: int, ctx: presenters.RenderContext,
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


async def render_conversation(deps: Deps, focal_id: int, limits: ViewLimits,
                              viewer: Viewer = ANONYMOUS, deadline: float | None = None) -> Json:
    async with deps.db.pinned():
        return await _render_conversation(deps, focal_id, limits, viewer, deadline)


async def _render_conversation(deps: Deps, focal_id: int, limits: ViewLimits,
                               viewer: Viewer = ANONYMOUS, deadline: float | None = None) -> Json:
    # The chain walks `ancestors` hops: the root plus the nearest ancestors-1 are shown, and
    # the last hop, when it is not the root, is where the omitted gap starts.
    # The first round trip decides whether this viewer may see the focal post, before any
    # other work: a hidden post's 404 then costs what a missing id's does (same query, no
    # rows, same code path), so that time cannot tell them apart (thread_queries._FOCAL_CHAIN_SQL).
    chain, hydrated = await thread_queries.focal_chain(deps.db, focal_id, limits.ancestors,
                                                       viewer.id)
    if not chain:
        raise not_found()
    focal = chain[0]
    limits = capped(limits, focal.caps)
    shown = min(len(chain) - 1, limits.ancestors - 1)
    if len(chain) - 1 <= limits.ancestors and chain[-1].depth == 0:
        shown = len(chain) - 1  # the whole chain fits, root included
    # The chain's round trip brought the posts (the whole walk and the root): keep the shown.
    posts = {i: hydrated[i] for i in [row.id for row in chain[:shown + 1]]
             + [focal.conversation_id] if i in hydrated}
    focal_post = posts.get(focal_id)
    if rules.post_verdict(focal_post, viewer) is not None:
        raise not_found()  # the same 404 as a post that never existed
    spec = _spec(deps, focal.conversation_id, limits.sort, limits.depth, limits.branching,
                 limits.max_nodes, viewer, focal_post.author.id, deadline)
    spec, root, skel, degraded = await _expand(
        deps, spec, lambda restart=False: SkelNode(focal_id, focal_post, 0))
    quoted, quotes_failed, reacted = await _hydrate(deps, [*posts.values(), *skel.posts], posts,
                                                    viewer)
    ctx = presenters.RenderContext(
        posts=posts, quoted=quoted, cursors=deps.cursors, focal_id=focal_id,
        conversation_id=focal.conversation_id, sort=spec.sort, branching=limits.branching,
        depth=limits.depth, viewer=viewer, focal_author=focal_post.author.id,
        quotes_failed=quotes_failed, max_nodes_cap=focal.caps.max_nodes, reactions=reacted)
    return {
        "focal_id": str(focal_id),
        "ancestors": _ancestors_json(chain, shown, ctx, limits.ancestors),
        "focal": presenters.post_json(focal_post, presenters.quote_json(focal_post, ctx, False),
                                      presenters.replies_json(root, ctx, with_sections=True),
                                      ctx.reacted(focal_id)),
        "degraded": degraded + (["quotes"] if quotes_failed else []),
        "partial": skel.partial,
    }


async def render_replies_page(deps: Deps, focal_id: int, cursor: RepliesCursor,
                              max_nodes: int, viewer: Viewer = ANONYMOUS,
                              deadline: float | None = None) -> Json:
    async with deps.db.pinned():
        return await _render_replies_page(deps, focal_id, cursor, max_nodes, viewer, deadline)


async def _render_replies_page(deps: Deps, focal_id: int, cursor: RepliesCursor,
                               max_nodes: int, viewer: Viewer = ANONYMOUS,
                               deadline: float | None = None) -> Json:
    if cursor.focal != focal_id:
        raise bad_request("invalid_cursor", "cursor belongs to another conversation")
    head_left = cursor.head[cursor.head_shown:] if cursor.section == NORMAL else ()
    posts = await post_queries.posts_by_id(deps.db, [cursor.parent, *head_left])
    head_posts = [posts[i] for i in head_left
                  if i in posts and rules.post_verdict(posts[i], viewer) is None]
    depth = cursor.depth + 1  # the page's items, then cursor.depth levels under each
    if cursor.max_nodes is not None:  # the conversation was capped when the view was made
        max_nodes = min(max_nodes, cursor.max_nodes)
    spec = _spec(deps, cursor.conversation, cursor.sort, depth, cursor.branching, max_nodes,
                 viewer, cursor.focal_author, deadline)

    def make_root(restart: bool = False) -> SkelNode:
        # Restarting chronologically (ranking unavailable), a ranked keyset means nothing:
        # the list starts over, oldest first, without the head already shown.
        root = SkelNode(cursor.parent, posts.get(cursor.parent), 0, section=cursor.section,
                        after=None if restart else cursor.after,
                        consumed=0 if restart else cursor.consumed, head=cursor.head,
                        head_shown=len(cursor.head) if restart else cursor.head_shown,
                        head_from=cursor.head_from)
        # Head replies that have gone since the cursor was issued still count as shown.
        if not restart:
            root.head_shown += len(head_left) - len(head_posts)
        return root
    spec, root, skel, _ = await _expand(deps, spec, make_root, head_posts=head_posts)
    quoted, quotes_failed, reacted = await _hydrate(deps, list(skel.posts), posts, viewer)
    ctx = presenters.RenderContext(
        posts=posts, quoted=quoted, cursors=deps.cursors, focal_id=focal_id,
        conversation_id=cursor.conversation, sort=spec.sort, branching=cursor.branching,
        depth=depth, viewer=viewer, focal_author=cursor.focal_author,
        quotes_failed=quotes_failed, max_nodes_cap=cursor.max_nodes, reactions=reacted)
    return presenters.page_json(skel, ctx)


async def render_ancestors_page(deps: Deps, focal_id: int, cursor: AncestorsCursor,
                                viewer: Viewer = ANONYMOUS) -> Json:
    async with deps.db.pinned():
        return await _render_ancestors_page(deps, focal_id, cursor, viewer)


async def _render_ancestors_page(deps: Deps, focal_id: int, cursor: AncestorsCursor,
                                 viewer: Viewer = ANONYMOUS) -> Json:
    if cursor.focal != focal_id:
        raise bad_request("invalid_cursor", "cursor belongs to another conversation")
    chain = await thread_queries.chain_up(deps.db, cursor.start, cursor.page)
    chain = [row for row in chain if row.depth > 0 and row.conversation_id == cursor.conversation]
    page, rest = chain[:cursor.page], chain[cursor.page:]
    posts = await post_queries.posts_by_id(deps.db, [row.id for row in page])
    quoted, quotes_failed, reacted = await _hydrate(deps, list(posts.values()), posts, viewer)
    ctx = presenters.RenderContext(
        posts=posts, quoted=quoted, cursors=deps.cursors, focal_id=focal_id,
        conversation_id=cursor.conversation, sort="ranked", branching=1, depth=0, viewer=viewer,
        quotes_failed=quotes_failed, reactions=reacted)
    next_cursor, omitted = None, 0
    if rest:
        omitted = rest[0].depth
        next_cursor = deps.cursors.encode(AncestorsCursor(
            focal=focal_id, conversation=cursor.conversation, start=rest[0].id, page=cursor.page))
    return {"items": [presenters.flat_node(row.id, ctx) for row in reversed(page)],
            "omitted": omitted, "cursor": next_cursor}


async def render_post(deps: Deps, post_id: int, viewer: Viewer = ANONYMOUS) -> Json:
    """One post as a conversation shows it (its quote embedded, the viewer's own `liked` and
    `reposted`), without its replies (`replies: null`; they are the conversation's). A post
    the viewer may not see is the same 404 as a missing one: one query decides both."""
    posts = await post_queries.posts_by_id(deps.db, [post_id])
    post = posts.get(post_id)
    if post is None or rules.post_verdict(post, viewer) is not None:
        raise not_found()
    quoted, quotes_failed, reacted = await _hydrate(deps, [post], posts, viewer)
    ctx = presenters.RenderContext(
        posts=posts, quoted=quoted, cursors=deps.cursors, focal_id=post_id,
        conversation_id=post.conversation_id, sort="ranked", branching=1, depth=0,
        viewer=viewer, focal_author=post.author.id, quotes_failed=quotes_failed,
        reactions=reacted)
    return presenters.post_json(post, presenters.quote_json(post, ctx, nested=False), None,
                                ctx.reacted(post_id))
