"""Writes that keep the reply counters exact, inside the write's own transaction.

Counter rule: post_counts.replies_<section> of a post is the number of its *listed* direct
replies in that section. A post is listed while it is not deleted or still has listed replies.
So deleting a leaf unlists it (its parent's counter drops), deleting a post with replies keeps
it listed as a tombstone, and the change can ripple up through deleted ancestors. Row locks
are taken bottom-up (a post's counter row before its parent's); a concurrent reply to the same
parent waits on the counter row.

Advisory locks first (storage/write_locks.py, the discipline in storage/ingestion.py): unless
the caller says it holds them (`lock=False`, the import path, which holds them exclusively),
insert_post_tx and delete_post_tx begin by taking, shared, the keys of the conversations whose
rows they write (the post's, and the quoted post's, or the quoted post's own id while it has
not arrived), and exclusively the (conversation, normalized text) key of a reply, before any
row lock. So a normal write never runs beside an import in the same conversation, and two
replies with the same text are never classified blind to each other. (Two normal writes still
run side by side in one conversation: a participant's first post and a reply by someone they
block can each miss the other in the shunned-by rule, as before. And a quoted post that
arrives between a normal write's read and its lock is written to under its arrival key rather
than its conversation's: still exact, but a row-lock cycle with an import is then possible;
the normal path runs a deadlocked write again, service/http/idempotency.py.)

Duplicate rule upkeep: a reply's section depends on whether a *live* (not deleted) reply with
the same normalized text and a smaller id exists in the conversation. When a reply joins that
live set (inserted) or leaves it (deleted), the replies whose fact changes are recomputed in
the same transaction: those with the same text after it, up to and including the next live
one, and only when no live one precedes it (_later_duplicates) — so arrival order does not
matter. Cost: an index range over the same-text replies of one conversation between two live
ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from . import section_updates, write_locks
from .counter_writes import QUOTES_OF, REPLY_COLUMNS
from .db import CountedConnection, Database
from .ids import MAX_ID, IdGenerator
from .write_locks import conversation_key

_ids = IdGenerator()

# The quote counter's rule is storage/counter_writes.QUOTES_OF; a write moves it by one.
_QUOTE_COUNTED = """
    UPDATE post_counts SET quotes = quotes {delta} WHERE post_id = $1
      AND EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND state = 'active' AND NOT protected)"""


def _later_duplicates(conversation: str, text_hash: str, post: str) -> str:
    """SQL: the ids of the replies whose duplicate fact (section_rules.ReplyFacts.duplicate)
    changes when reply `post` joins or leaves the live replies of `conversation` with its text:
    the same-text replies after it up to the next live one, when no live one is before it."""
    def same(alias: str) -> str:
        return (f"{alias}.conversation_id = {conversation} AND {alias}.text_hash = {text_hash} "
                f"AND {alias}.in_reply_to_id IS NOT NULL")
    return f"""ARRAY(
        SELECT d.id FROM posts d
        WHERE {same("d")} AND d.id > {post}
          AND d.id <= coalesce((SELECT n.id FROM posts n
                                WHERE {same("n")} AND n.id > {post} AND n.deleted_at IS NULL
                                ORDER BY n.id LIMIT 1), {MAX_ID})
          AND NOT EXISTS (SELECT 1 FROM posts e
                          WHERE {same("e")} AND e.id < {post} AND e.deleted_at IS NULL)
        ORDER BY d.id)"""


_AFTER_REPLY = f"""
    SELECT NOT EXISTS (SELECT 1 FROM posts WHERE conversation_id = $1 AND author_id = $2
                                              AND id <> $3) AS first_in_conversation,
           {_later_duplicates("$1", "(SELECT text_hash FROM posts WHERE id = $3)", "$3")}
               AS later_duplicates"""

# What a write reads before it locks: the parent (or the post deleted) and the quoted post's
# conversation. Conversations and quote targets never change, so reading them unlocked is safe.
_TARGETS = """
    SELECT p.conversation_id, p.depth,
           (SELECT q.conversation_id FROM posts q WHERE q.id = $2) AS quote_conversation
    FROM (SELECT 1) one LEFT JOIN posts p ON p.id = $1"""
_DELETE_TARGET = """
    SELECT p.conversation_id, p.in_reply_to_id IS NOT NULL AS is_reply, p.text, p.quote_of_id,
           q.conversation_id AS quote_conversation
    FROM posts p LEFT JOIN posts q ON q.id = p.quote_of_id WHERE p.id = $1"""


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


async def insert_post_tx(tx: CountedConnection, author_id: int, text: str, *,
                         in_reply_to_id: int | None = None, quote_of_id: int | None = None,
                         post_id: int | None = None, created_at: datetime | None = None,
                         rank_key: int = 0, lock: bool = True) -> NewPost:
    """insert_post inside the caller's transaction. Raises ParentNotFound. `lock=False`: the
    caller already holds the advisory locks (module docstring) exclusively."""
    post_id = _ids.next() if post_id is None else post_id
    created_at = created_at or datetime.now(timezone.utc)
    quote_conversation = None
    if in_reply_to_id is None:
        conversation_id, depth = post_id, 0
        if lock and quote_of_id is not None:
            quote_conversation = (await tx.fetchrow(_TARGETS, None, quote_of_id))["quote_conversation"]
    else:
        parent = await tx.fetchrow(_TARGETS, in_reply_to_id, quote_of_id if lock else None)
        if parent["conversation_id"] is None:
            raise ParentNotFound(in_reply_to_id)
        conversation_id, depth = parent["conversation_id"], parent["depth"] + 1
        quote_conversation = parent["quote_conversation"]
    if lock:
        await write_locks.acquire(
            tx, shared=[conversation_key(conversation_id) if in_reply_to_id is not None else None,
                        conversation_key(quote_conversation) if quote_conversation else quote_of_id],
            duplicate=(conversation_id, text) if in_reply_to_id is not None else None)
    await tx.execute(
        """INSERT INTO posts (id, conversation_id, author_id, in_reply_to_id, quote_of_id, text,
                              created_at, depth, section, rank_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)""",
        post_id, conversation_id, author_id, in_reply_to_id, quote_of_id, text, created_at,
        depth, rank_key)
    # quotes: quoting posts that arrived before this one (out-of-order ingestion)
    await tx.execute(
        f"INSERT INTO post_counts (post_id, conversation_id, quotes) VALUES ($1, $2, ({QUOTES_OF}))",
        post_id, conversation_id)
    if in_reply_to_id is not None:
        await _reply_listed(tx, in_reply_to_id, 0)
        after = await tx.fetchrow(_AFTER_REPLY, conversation_id, author_id, post_id)
        # its own section, and those of the later same-text replies it now precedes
        await section_updates.recompute(tx, [post_id, *after["later_duplicates"]])
        if after["first_in_conversation"]:
            await section_updates.on_new_participant(tx, conversation_id, author_id)
    if quote_of_id is not None:
        await tx.execute(_QUOTE_COUNTED.format(delta="+ 1"), quote_of_id, author_id)
    return NewPost(post_id, conversation_id, depth)


async def delete_post(db: Database, post_id: int) -> bool:
    """Mark a post deleted. Returns False when it does not exist or was already deleted."""
    async with db.transaction() as tx:
        return await delete_post_tx(tx, post_id)


async def delete_post_tx(tx: CountedConnection, post_id: int, deleted_at: datetime | None = None, *,
                         lock: bool = True) -> bool:
    """delete_post inside the caller's transaction (`lock`: as for insert_post_tx)."""
    if lock:
        target = await tx.fetchrow(_DELETE_TARGET, post_id)
        if target is None:
            return False
        await write_locks.acquire(
            tx, shared=[conversation_key(target["conversation_id"]),
                        conversation_key(target["quote_conversation"])
                        if target["quote_conversation"] else target["quote_of_id"]],
            duplicate=(target["conversation_id"], target["text"]) if target["is_reply"] else None)
    counts = await tx.fetchrow(
        f"SELECT {', '.join(REPLY_COLUMNS)} FROM post_counts WHERE post_id = $1 FOR UPDATE",
        post_id)
    row = await tx.fetchrow(
        f"""UPDATE posts SET deleted_at = coalesce($2, now()) WHERE id = $1 AND deleted_at IS NULL
            RETURNING in_reply_to_id, section, quote_of_id, author_id,
                      CASE WHEN in_reply_to_id IS NOT NULL THEN {_later_duplicates(
                          "posts.conversation_id", "posts.text_hash", "posts.id")} END
                          AS later_duplicates""", post_id, deleted_at)
    if row is None or counts is None:
        return False
    if row["quote_of_id"] is not None:
        await tx.execute(_QUOTE_COUNTED.format(delta="- 1"), row["quote_of_id"], row["author_id"])
    if sum(counts) == 0:
        await _unlist(tx, post_id, row["in_reply_to_id"], row["section"])
    if row["later_duplicates"]:
        # it no longer makes them duplicates (after the unlisting: recompute reads `listed`)
        await section_updates.recompute(tx, row["later_duplicates"])
    return True


async def _reply_listed(tx: CountedConnection, parent_id: int, section: int) -> None:
    """A reply in `section` became listed under parent_id: count it, and if the parent was an
    unlisted (deleted, childless) post, list it again and ripple up."""
    while parent_id is not None:
        await tx.execute(
            f"UPDATE post_counts SET {REPLY_COLUMNS[section]} = {REPLY_COLUMNS[section]} + 1 "
            "WHERE post_id = $1", parent_id)
        relisted = await tx.fetchrow(
            """UPDATE posts SET listed = true WHERE id = $1 AND NOT listed
               RETURNING in_reply_to_id, section""", parent_id)
        if relisted is None:
            return
        parent_id, section = relisted["in_reply_to_id"], relisted["section"]


async def _unlist(tx: CountedConnection, post_id: int, parent_id: int | None, section: int) -> None:
    """post_id is deleted and has no listed replies: drop it from its parent's list, and ripple
    up while that leaves a deleted parent with no listed replies either."""
    while True:
        await tx.execute("UPDATE posts SET listed = false WHERE id = $1", post_id)
        if parent_id is None:
            return
        col = REPLY_COLUMNS[section]
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
