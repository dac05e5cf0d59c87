"""The Mastodon API's reads over Arbor's pipeline: the same renders as /v1/conversations
(service/pipeline/conversation.py), then the accounts they show (one batch), then the pure
presenter (mastodon_entities.py). Not a second pipeline: a Context is a conversation view
presented in Mastodon's shape, so it has the same visibility rules, limits and cursors.

Round trips: a conversation's render plus 1 (the accounts) plus, for a signed-in viewer
whose render does not carry them, 1 (its likes and reposts among the posts shown); a status:
GET /v1/posts/{id}'s render (its first query decides a hidden or missing post's 404, so
their 404s cost the same), then 1 (its parent) and 1 (the accounts). A status a write just
made or changed is presented from the write's transaction (status_of).
"""
from __future__ import annotations

from typing import Any

from storage import account_queries, post_queries, reactions
from storage.rows import PostRow, Viewer

from . import conversation, presenters, visibility_rules as rules
from .cursors import AncestorsCursor, CursorCodec, RepliesCursor
from .deps import Deps
from .limits import ViewLimits
from .mastodon_entities import (Site, ancestors_page_context, author_ids, context_entity,
                                posts_in, replies_page_context, status_entity)

Json = dict[str, Any]


async def _hydrate(db, view: Json, viewer: Viewer):
    """The accounts a rendered view shows (one round trip) and, for a signed-in viewer whose
    view does not carry it yet, its own state (liked, reposted) on each post (one more)."""
    accounts = await account_queries.accounts_by_id(db, author_ids(view))
    if not viewer.anonymous:
        lacking = [node for node in posts_in(view) if "liked" not in node]
        if lacking:
            state = await reactions.viewer_state(db, viewer.id, [int(n["id"]) for n in lacking])
            for node in lacking:
                node["liked"], node["reposted"] = state.get(int(node["id"]), (False, False))
    return accounts


async def context(deps: Deps, focal_id: int, limits: ViewLimits, viewer: Viewer, site: Site,
                  deadline: float | None) -> tuple[Json, set[int]]:
    view = await conversation.render_conversation(deps, focal_id, limits, viewer, deadline)
    accounts = await _hydrate(deps.db, view, viewer)
    return context_entity(view, accounts, site, signed_in=not viewer.anonymous)


async def context_replies(deps: Deps, focal_id: int, cursor: RepliesCursor, max_nodes: int,
                          viewer: Viewer, site: Site,
                          deadline: float | None) -> tuple[Json, set[int]]:
    page = await conversation.render_replies_page(deps, focal_id, cursor, max_nodes, viewer,
                                                  deadline)
    accounts = await _hydrate(deps.db, page, viewer)
    result = replies_page_context(page, cursor.parent, focal_id, accounts, site,
                                  signed_in=not viewer.anonymous)
    return result[0], result[1] | {cursor.conversation}


async def context_ancestors(deps: Deps, focal_id: int, cursor: AncestorsCursor, viewer: Viewer,
                            site: Site) -> tuple[Json, set[int]]:
    page = await conversation.render_ancestors_page(deps, focal_id, cursor, viewer)
    accounts = await _hydrate(deps.db, page, viewer)
    result = ancestors_page_context(page, focal_id, accounts, site,
                                    signed_in=not viewer.anonymous)
    return result[0], result[1] | {cursor.conversation}


async def status(deps: Deps, post_id: int, viewer: Viewer, site: Site) -> Json:
    """GET /api/v1/statuses/{id}: the node GET /v1/posts/{id} renders (the same 404, the same
    fail-open quote, the viewer's liked and reposted), its parent's author when the viewer may
    see it (1 round trip), the accounts (1)."""
    node = await conversation.render_post(deps, post_id, viewer)
    parent = None
    if node["in_reply_to_id"] is not None:
        parent_id = int(node["in_reply_to_id"])
        parent = (await post_queries.posts_by_id(deps.db, [parent_id])).get(parent_id)
    parent_account = None
    if parent is not None and rules.post_verdict(parent, viewer) is None:
        parent_account = str(parent.author.id)
    accounts = await _hydrate(deps.db, node, viewer)
    return status_entity(node, accounts, site, signed_in=not viewer.anonymous,
                         conversations=set(), parent_account=parent_account)


def post_node(post: PostRow, posts: dict[int, PostRow], cursors: CursorCodec,
              viewer: Viewer) -> Json:
    """A post as a conversation shows it (no replies), its quote embedded from `posts`."""
    ctx = presenters.RenderContext(
        posts=posts, quoted={}, cursors=cursors, focal_id=post.id,
        conversation_id=post.conversation_id, sort="ranked", branching=1, depth=0,
        viewer=viewer, focal_author=post.author.id)
    return presenters.post_json(post, presenters.quote_json(post, ctx, nested=False), None)


def parent_account(post: PostRow, posts: dict[int, PostRow], viewer: Viewer) -> str | None:
    """The author of the post replied to, when the viewer may see it (else not named)."""
    parent = posts.get(post.in_reply_to_id) if post.in_reply_to_id is not None else None
    if parent is None or rules.post_verdict(parent, viewer) is not None:
        return None
    return str(parent.author.id)


async def status_of(db, post: PostRow, cursors: CursorCodec, viewer: Viewer, site: Site,
                    extra: Json | None = None) -> Json:
    """`post` (already checked visible) as a Status: its parent and quoted post in one batch,
    the accounts in another. `extra` is merged into the Arbor node first (liked, reposted)."""
    wanted = [i for i in (post.in_reply_to_id, post.quote_of_id) if i is not None]
    posts = {post.id: post, **(await post_queries.posts_by_id(db, wanted) if wanted else {})}
    node = post_node(post, posts, cursors, viewer)
    if extra:
        node.update(extra)
    accounts = await account_queries.accounts_by_id(db, author_ids(node))
    return status_entity(node, accounts, site, signed_in=not viewer.anonymous,
                         conversations=set(),
                         parent_account=parent_account(post, posts, viewer))
