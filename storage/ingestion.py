"""Posts from another system, with their own ids, authors and timestamps, in any order.

A post whose parent exists goes through the normal write path (counters, sections); then its
own waiting replies, and theirs, are attached the same way. A reply whose parent has not
arrived waits in pending_posts. Parent and child may arrive concurrently in two requests:
both take a transaction-scoped advisory lock on the parent's id, so one of them always sees
the other (the child finds the parent, or the parent finds the waiting child).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import post_writes
from .db import Database, _Counted

_LOCK_SPACE = 0x41524252  # advisory lock namespace: "ARBR"
MAX_ATTACH = 10_000       # replies attached per arrival in one transaction; repair does the rest


@dataclass(frozen=True)
class ImportedPost:
    id: int
    author_id: int
    text: str
    created_at: datetime
    in_reply_to_id: int | None = None
    quote_of_id: int | None = None
    deleted_at: datetime | None = None


async def _lock(tx: _Counted, post_id: int) -> None:
    await tx.execute("SELECT pg_advisory_xact_lock($1, hashint8($2))", _LOCK_SPACE, post_id)


class UnknownAuthor(LookupError):
    pass


async def ingest_many(db: Database, posts: list[ImportedPost]) -> dict[str, int]:
    """ingest_one for each post (a transaction each); counts per outcome."""
    report = {"imported": 0, "pending": 0, "duplicate": 0}
    for post in posts:
        report[await ingest_one(db, post)] += 1
    return report


async def ingest_one(db: Database, post: ImportedPost) -> str:
    """Store one post: "imported", "pending" (waiting for its parent) or "duplicate".
    Raises UnknownAuthor when its author is not an account here."""
    async with db.transaction() as tx:
        if not await tx.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)",
                                 post.author_id):
            raise UnknownAuthor(post.author_id)
        if post.in_reply_to_id is not None:
            await _lock(tx, post.in_reply_to_id)
        await _lock(tx, post.id)
        if await tx.fetchval(
                "SELECT EXISTS (SELECT 1 FROM posts WHERE id = $1) "
                "OR EXISTS (SELECT 1 FROM pending_posts WHERE id = $1)", post.id):
            return "duplicate"
        if post.in_reply_to_id is not None and not await tx.fetchval(
                "SELECT EXISTS (SELECT 1 FROM posts WHERE id = $1)", post.in_reply_to_id):
            await tx.execute(
                """INSERT INTO pending_posts (id, author_id, in_reply_to_id, quote_of_id, text,
                                              created_at, deleted_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                post.id, post.author_id, post.in_reply_to_id, post.quote_of_id, post.text,
                post.created_at, post.deleted_at)
            return "pending"
        await _store(tx, post)
        await attach_pending(tx, post.id)
        return "imported"


async def _store(tx: _Counted, post: ImportedPost) -> None:
    await post_writes.insert_post_tx(
        tx, post.author_id, post.text, in_reply_to_id=post.in_reply_to_id,
        quote_of_id=post.quote_of_id, post_id=post.id, created_at=post.created_at)
    if post.deleted_at is not None:
        await post_writes.delete_post_tx(tx, post.id, post.deleted_at)


async def attach_pending(tx: _Counted, parent_id: int, limit: int = MAX_ATTACH) -> int:
    """Move the replies waiting for parent_id (which now exists), and theirs, into posts,
    parents before children. Returns how many were attached."""
    attached, frontier = 0, [parent_id]
    while frontier and attached < limit:
        rows = await tx.fetch(
            """DELETE FROM pending_posts WHERE id IN (
                   SELECT id FROM pending_posts WHERE in_reply_to_id = ANY($1::bigint[])
                   ORDER BY id LIMIT $2)
               RETURNING id, author_id, in_reply_to_id, quote_of_id, text, created_at, deleted_at""",
            frontier, limit - attached)
        posts = sorted((ImportedPost(r["id"], r["author_id"], r["text"], r["created_at"],
                                     r["in_reply_to_id"], r["quote_of_id"], r["deleted_at"])
                        for r in rows), key=lambda p: p.id)
        for post in posts:
            await post_writes.insert_post_tx(
                tx, post.author_id, post.text, in_reply_to_id=post.in_reply_to_id,
                quote_of_id=post.quote_of_id, post_id=post.id, created_at=post.created_at)
        # A deleted one is unlisted now; if replies of its own wait below, attaching them
        # at the next level lists it again, as a tombstone (post_writes' ripple rule).
        for post in posts:
            if post.deleted_at is not None:
                await post_writes.delete_post_tx(tx, post.id, post.deleted_at)
        attached += len(posts)
        frontier = [p.id for p in posts]
    return attached
