"""The present stage: pure functions from (skeleton, hydrated rows) to the JSON of DESIGN §4.

Hidden posts become typed tombstones when they still carry replies, so nothing below them
is detached; hidden leaves are left out. Every cut gets a cursor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

from storage.rows import ANONYMOUS, PostRow, Viewer
from storage.thread_queries import SECTIONS

from . import visibility_rules as rules
from .cursors import CursorCodec
from .skeleton import Skeleton, SkelNode

Json = dict[str, Any]
TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"


@dataclass(frozen=True, kw_only=True)
class RenderContext:
    posts: dict[int, PostRow]      # ancestors, the focal post, continuation heads
    quoted: dict[int, PostRow]     # first-level quoted posts
    cursors: CursorCodec
    focal_id: int
    conversation_id: int
    sort: str
    branching: int
    depth: int                     # levels the current view shows below its root
    viewer: Viewer = ANONYMOUS
    focal_author: int = 0
    quotes_failed: bool = False    # quoted posts could not be loaded: embeds say so
    max_nodes_cap: int | None = None  # the conversation's cap, carried by cursors
    # the viewer's own (liked, reposted) per post id (storage/reactions.viewer_state)
    reactions: Mapping[int, tuple[bool, bool]] = field(default_factory=dict)

    def post(self, post_id: int) -> PostRow | None:
        return self.posts.get(post_id) or self.quoted.get(post_id)

    def reacted(self, post_id: int) -> tuple[bool, bool]:
        return self.reactions.get(post_id, _NEITHER)

    @cached_property
    def replies_cursor(self):
        """This view's RepliesCursor encoder: what its cursors share is packed once."""
        return self.cursors.replies(
            focal=self.focal_id, conversation=self.conversation_id, sort=self.sort,
            branching=self.branching, viewer=self.viewer.id, focal_author=self.focal_author,
            max_nodes=self.max_nodes_cap)


_NEITHER = (False, False)


def author_json(post: PostRow) -> Json:
    a = post.author
    return {"id": str(a.id), "handle": a.handle, "display_name": a.display_name}


def post_json(post: PostRow, quote: Json | None, replies: Json | None,
              reacted: tuple[bool, bool] = _NEITHER) -> Json:
    """`reacted`: the viewer's own (liked, reposted) of this post."""
    a = post.author  # author_json inlined: this runs for every post of every render
    return {
        "type": "post",
        "id": str(post.id),
        "conversation_id": str(post.conversation_id),
        "in_reply_to_id": None if post.in_reply_to_id is None else str(post.in_reply_to_id),
        "author": {"id": str(a.id), "handle": a.handle, "display_name": a.display_name},
        "text": post.text,
        "created_at": post.created_at,
        "counts": {"replies": sum(post.replies), "likes": post.likes, "reposts": post.reposts,
                   "quotes": post.quotes},
        "liked": reacted[0],
        "reposted": reacted[1],
        "quote": quote,
        "replies": replies,
    }


def tombstone_json(post_id: int, reason: str, replies: Json | None) -> Json:
    return {"type": "tombstone", "id": str(post_id), "reason": reason, "replies": replies}


def quote_json(post: PostRow, ctx: RenderContext, nested: bool) -> Json | None:
    """The quote embed of `post`; one level deep (a quote inside a quote: id and state only)."""
    if post.quoted is None or post.quote_of_id is None:
        return None
    state = rules.quote_state(post.quoted, ctx.viewer)
    embedded = None
    if state == "ok" and not nested:
        quoted = ctx.post(post.quote_of_id)
        verdict = rules.post_verdict(quoted, ctx.viewer)
        if quoted is None and ctx.quotes_failed:
            state = TEMPORARILY_UNAVAILABLE
        elif quoted is None or verdict not in (None, rules.MUTED):
            state = verdict or rules.DELETED
        else:
            embedded = post_json(quoted, quote_json(quoted, ctx, nested=True), None,
                                 ctx.reacted(quoted.id))
    return {"state": state, "id": str(post.quote_of_id), "post": embedded}


def flat_node(post_id: int, ctx: RenderContext) -> Json:
    """A node shown without replies (an ancestor). Hidden ones stay, as tombstones, to keep
    the chain from the root to the focal post whole."""
    post = ctx.posts.get(post_id)
    verdict = rules.post_verdict(post, ctx.viewer)
    if verdict is not None or post is None:
        return tombstone_json(post_id, verdict or rules.DELETED, None)
    return post_json(post, quote_json(post, ctx, nested=False), None, ctx.reacted(post_id))


def tree_node(node: SkelNode, ctx: RenderContext) -> Json | None:
    """A reply with its subtree; a hidden one becomes a tombstone while it still holds
    something the viewer may reach, and is left out otherwise."""
    post = node.post
    # A leaf (nothing below it, nothing listed): the common case, answered without a call.
    replies = None if post is not None and not node.children and not any(post.replies) \
        else replies_json(node, ctx, with_sections=True)
    if node.verdict is not None or post is None:
        if replies is None or not (replies["items"] or replies["more"]
                                   or any(replies["sections"].values())):
            return None
        return tombstone_json(node.id, node.verdict or rules.DELETED, replies)
    return post_json(post, quote_json(post, ctx, nested=False) if post.quoted is not None
                     else None, replies, ctx.reacted(node.id))


def _subtree_depth(level: int, depth: int) -> int:
    """Depth under each item of a cursor's page, for a node at `level` of a `depth`-level view:
    what the view would have shown there, or a fresh view's worth below a depth cut."""
    return max(0, depth - level - 1 if level < depth else depth - 1)


def replies_cursor(node: SkelNode, section: int, ctx: RenderContext, *, after, consumed,
                   head_shown: int) -> str:
    """A RepliesCursor for the node's list in `section` (see cursors.RepliesCursor)."""
    return ctx.replies_cursor(parent=node.id, section=section,
                              depth=_subtree_depth(node.level, ctx.depth), after=after,
                              consumed=consumed, head=node.head, head_shown=head_shown,
                              head_from=node.head_from)


def replies_json(node: SkelNode, ctx: RenderContext, *, with_sections: bool) -> Json | None:
    """The Replies object of a node's list, or None when it has no replies at all."""
    counts = node.counts
    if with_sections and not node.children and not any(counts):
        return None
    items = []
    for child in node.children or ():
        j = tree_node(child, ctx)
        if j is not None:
            items.append(j)
    more = None
    if node.more:
        count, exact = node.rest()
        more = {"count": count, "exact": exact,
                "cursor": replies_cursor(node, node.section, ctx, after=node.after,
                                         consumed=node.consumed, head_shown=node.head_shown)}
    sections: Json = {"low_quality": None, "offensive": None}
    if with_sections and (counts[1] or counts[2]):
        for i in (1, 2):
            # The stored count less the replies lifted out of it for this viewer (the head):
            # an upper bound, since no row of a section is read by the view.
            count = counts[i] - node.head_from[i]
            if count > 0:
                sections[SECTIONS[i]] = {
                    "count": count, "exact": False,
                    "cursor": replies_cursor(node, i, ctx, after=None, consumed=0,
                                             head_shown=len(node.head))}
    return {"items": items, "more": more, "sections": sections}


def page_json(skel: Skeleton, ctx: RenderContext) -> Json:
    """A continuation page: the Replies object of the cursor's parent in the cursor's list."""
    return replies_json(skel.root, ctx, with_sections=False) or {
        "items": [], "more": None, "sections": {"low_quality": None, "offensive": None}}
