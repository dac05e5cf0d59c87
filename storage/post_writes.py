"""Writes that keep the reply counters exact, inside the write's own transaction.

Counter rule: post_counts.replies_<section> of a post is the number of its *listed* direct
replies in that section. A post is listed while it is not deleted or still has listed replies.
So deleting a leaf unlists it (its parent's counter drops), deleting a post with replies keeps
it listed as a tombstone, and the change can ripple up through deleted ancestors. Locks are
taken bottom-up (a post's counter row before its parent's), on every path, so concurrent
writers cannot deadlock; a concurrent reply to the same parent waits on the counter row.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from . import section_updates
from .db import Database, _Counted
from .ids import IdGenerator

_REPLY_COLUMNS = ("replies_normal", "replies_low_quality", "replies_offensive")
_ids = IdGenerator()


# Counter rule for quotes: the number of quoting posts an anonymous viewer can see (not
# deleted, author active and not protected), so that it equals what the quotes list reaches.
_QUOTES_OF = """
    SELECT count(*) FROM posts q JOIN accounts a ON a.id = q.author_id
    WHERE q.quote_of_id = $1 AND q.deleted_at IS NULL AND a.state = 'active' AND NOT a.protected"""
_QUOTE_COUNTED = """
    UPDATE post_counts SET quotes = quotes {delta} WHERE post_id = $1
      AND EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND state = 'active' AND NOT protected)"""
_FIRST_IN_CONVERSATION = """
    SELECT NOT EXISTS (SELECT 1 FROM posts WHERE conversation_id = $1 AND author_id = $2
                                              AND id <> $3)"""


class ParentNotFound(LookupError):
    pass


@dataclass(frozen=True)
class NewPost:
    id: int
    conversation_id: int
    depth: int


async def insert_account(db: Database, account_id: int, handle: str, display_name: str = "",
                         *, state: str = "active", protected: bool = False,
                         has_avatar: bool = False, verified: bool = False) -> int:
    await db.execute(
        """INSERT INTO accounts (id, handle, display_name, state, protected, has_avatar, verified)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        account_id, handle, display_name, state, protected, has_avatar, verified)
    return account_id


async def insert_post(db: Database, author_id: int, text: str, **kwargs) -> NewPost:
    """Insert a post (a root when in_reply_to_id is None), classify it into its section and
    update every counter it touches, in one transaction."""
    async with db.transaction() as tx:
        return await insert_post_tx(tx, author_id, text, **kwargs)


async def insert_post_tx(tx: _Counted, author_id: int, text: str, *,
                         in_reply_to_id: int | None = None, quote_of_id: int | None = None,
                         post_id: int | None = None, created_at: datetime | None = None,
                         rank_key: int = 0) -> NewPost:
    """insert_post inside the caller's transaction. Raises ParentNotFound."""
    post_id = _ids.next() if post_id is None else post_id
    created_at = created_at or datetime.now(timezone.utc)
    if in_reply_to_id is None:
        conversation_id, depth = post_id, 0
    else:
        parent = await tx.fetchrow(
            "SELECT conversation_id, depth FROM posts WHERE id = $1", in_reply_to_id)
        if parent is None:
            raise ParentNotFound(in_reply_to_id)
        conversation_id, depth = parent["conversation_id"], parent["depth"] + 1
    await tx.execute(
        """INSERT INTO posts (id, conversation_id, author_id, in_reply_to_id, quote_of_id, text,
                              created_at, depth, section, rank_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)""",
        post_id, conversation_id, author_id, in_reply_to_id, quote_of_id, text, created_at,
        depth, rank_key)
    # quotes: quoting posts that arrived before this one (out-of-order ingestion)
    await tx.execute(
        f"INSERT INTO post_counts (post_id, conversation_id, quotes) VALUES ($1, $2, ({_QUOTES_OF}))",
        post_id, conversation_id)
    if in_reply_to_id is not None:
        await _reply_listed(tx, in_reply_to_id, 0)
        await section_updates.recompute(tx, [post_id])
        if await tx.fetchval(_FIRST_IN_CONVERSATION, conversation_id, author_id, post_id):
            await section_updates.on_new_participant(tx, conversation_id, author_id)
    if quote_of_id is not None:
        await tx.execute(_QUOTE_COUNTED.format(delta="+ 1"), quote_of_id, author_id)
    return NewPost(post_id, conversation_id, depth)


async def delete_post(db: Database, post_id: int) -> bool:
    """Mark a post deleted. Returns False when it does not exist or was already deleted."""
    async with db.transaction() as tx:
        return await delete_post_tx(tx, post_id)


async def delete_post_tx(tx: _Counted, post_id: int, deleted_at: datetime | None = None) -> bool:
    counts = await tx.fetchrow(
        f"SELECT {', '.join(_REPLY_COLUMNS)} FROM post_counts WHERE post_id = $1 FOR UPDATE",
        post_id)
    row = await tx.fetchrow(
        """UPDATE posts SET deleted_at = coalesce($2, now()) WHERE id = $1 AND deleted_at IS NULL
           RETURNING in_reply_to_id, section, quote_of_id, author_id""", post_id, deleted_at)
    if row is None or counts is None:
        return False
    if row["quote_of_id"] is not None:
        await tx.execute(_QUOTE_COUNTED.format(delta="- 1"), row["quote_of_id"], row["author_id"])
    if sum(counts) == 0:
        await _unlist(tx, post_id, row["in_reply_to_id"], row["section"])
    return True


async def recount_quotes(tx: _Counted, post_ids: list[int]) -> None:
    """Set the quotes counter of these posts from their quoting posts (a write-time count,
    bounded by the quotes of these posts): after an author's state or protection changed."""
    await tx.execute(
        f"UPDATE post_counts pc SET quotes = ({_QUOTES_OF.replace('$1', 'pc.post_id')}) "
        "WHERE pc.post_id = ANY($1::bigint[])", post_ids)


async def _reply_listed(tx: _Counted, parent_id: int, section: int) -> None:
    """A reply in `section` became listed under parent_id: count it, and if the parent was an
    unlisted (deleted, childless) post, list it again and ripple up."""
    while parent_id is not None:
        await tx.execute(
            f"UPDATE post_counts SET {_REPLY_COLUMNS[section]} = {_REPLY_COLUMNS[section]} + 1 "
            "WHERE post_id = $1", parent_id)
        relisted = await tx.fetchrow(
            """UPDATE posts SET listed = true WHERE id = $1 AND NOT listed
               RETURNING in_reply_to_id, section""", parent_id)
        if relisted is None:
            return
        parent_id, section = relisted["in_reply_to_id"], relisted["section"]


async def _unlist(tx: _Counted, post_id: int, parent_id: int | None, section: int) -> None:
    """post_id is deleted and has no listed replies: drop it from its parent's list, and ripple
    up while that leaves a deleted parent with no listed replies either."""
    while True:
        await tx.execute("UPDATE posts SET listed = false WHERE id = $1", post_id)
        if parent_id is None:
            return
        col = _REPLY_COLUMNS[section]
        left = await tx.fetchrow(
            f"""UPDATE post_counts SET {col} = {col} - 1 WHERE post_id = $1
                RETURNING replies_normal + replies_low_quality + replies_offensive AS total""",
            parent_id)
        if left is None or left["total"] > 0:
            return
        parent = await tx.fetchrow(
            "SELECT in_reply_to_id, section, deleted_at IS NOT NULL AS deleted FROM posts "
            "WHERE id = $1", parent_id)
        if parent is None or not parent["deleted"]:
            return
        post_id, parent_id, section = parent_id, parent["in_reply_to_id"], parent["section"]
