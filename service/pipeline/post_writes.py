"""A viewer's post writes, the rules both dialects share (/v1/posts in service/api/posts.py,
Mastodon's /api/v1/statuses in service/api/mastodon/statuses.py): what may be replied to or
quoted, who may delete, and which cached reads a write changes. The endpoints only parse,
present and answer; so a rule (or a cache key to drop) cannot differ between the two.

Called inside the write's transaction (service/http/idempotency.run_write). A post the viewer
may not see is `not_found()`, the uniform 404, whether it is replied to, quoted or deleted.
`changed` is what service/http/middlewares.invalidate_on_write drops once the transaction
commits: conversation ids and ("quotes", post id); empty means every cached read (a deleted
quote's quoted post is not at hand).

Cost: two by-id lookups and the insert (or one lookup and the delete); nothing grows with a
conversation.
"""
from __future__ import annotations

from dataclasses import dataclass

from storage import post_queries, post_writes as stored  # the SQL under the same name
from storage.db import CountedConnection
from storage.rows import PostRow, Viewer

from service.core.errors import ApiError, not_found

from . import visibility_rules as rules


@dataclass(frozen=True, kw_only=True)
class Created:
    post: PostRow
    posts: dict[int, PostRow]  # the new post and what it replies to and quotes
    changed: list


async def create(tx: CountedConnection, viewer: Viewer, text: str, *,
                 in_reply_to_id: int | None, quote_of_id: int | None) -> Created:
    targets = [i for i in (in_reply_to_id, quote_of_id) if i is not None]
    seen = await post_queries.posts_by_id(tx, targets) if targets else {}
    for target in targets:
        if rules.post_verdict(seen.get(target), viewer) is not None:
            raise not_found()
    try:
        created = await stored.insert_post_tx(tx, viewer.id, text, in_reply_to_id=in_reply_to_id,
                                              quote_of_id=quote_of_id)
    except stored.ParentNotFound:  # deleted meanwhile
        raise not_found() from None
    posts = await post_queries.posts_by_id(tx, [created.id, *targets])
    changed: list = [created.conversation_id]
    if quote_of_id is not None:
        changed += [("quotes", quote_of_id), posts[quote_of_id].conversation_id]
    return Created(post=posts[created.id], posts=posts, changed=changed)


async def deletable(tx: CountedConnection, viewer: Viewer, post_id: int, *,
                    others_as_missing: bool) -> PostRow:
    """The viewer's own post, to delete. Someone else's is a 403 (/v1), or the 404 itself
    with `others_as_missing` (Mastodon answers it so)."""
    post = (await post_queries.posts_by_id(tx, [post_id])).get(post_id)
    if post is None or rules.post_verdict(post, viewer) is not None:
        raise not_found()
    if post.author.id != viewer.id:
        if others_as_missing:
            raise not_found()
        raise ApiError(403, "forbidden", "only the author can delete a post")
    return post


async def delete(tx: CountedConnection, post: PostRow) -> list:
    """Delete a post `deletable` returned; what cached reads it changes."""
    if not await stored.delete_post_tx(tx, post.id):  # deleted meanwhile
        raise not_found()
    return [post.conversation_id] if post.quote_of_id is None else []
