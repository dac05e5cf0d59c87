"""Hydration: posts with their counters and authors, loaded in one batch per call."""
from __future__ import annotations

from typing import Iterable

from .db import Database
from .rows import Author, PostRow, QuotedSummary

# The columns and joins of a hydrated post; thread_queries reuses them so that a tree level's
# query returns whole posts (alias p must be the post).
POST_COLUMNS = """p.id, p.conversation_id, p.in_reply_to_id, p.quote_of_id, p.text, p.created_at,
           p.deleted_at IS NOT NULL AS deleted, p.section,
           pc.replies_normal, pc.replies_low_quality, pc.replies_offensive,
           pc.likes, pc.reposts, pc.quotes,
           a.id AS author_id, a.handle, a.display_name, a.state, a.protected,
           q.id IS NOT NULL AS q_exists, q.deleted_at IS NOT NULL AS q_deleted,
           qa.id AS q_author_id, qa.state AS q_author_state, qa.protected AS q_author_protected,
           p.rank_key"""
POST_JOINS = """
    JOIN post_counts pc ON pc.post_id = p.id
    JOIN accounts a ON a.id = p.author_id
    LEFT JOIN posts q ON q.id = p.quote_of_id
    LEFT JOIN accounts qa ON qa.id = q.author_id"""
_POSTS_SQL = f"SELECT {POST_COLUMNS} FROM posts p {POST_JOINS} WHERE p.id = ANY($1::bigint[])"


# post_from_record reads the columns by position (by name cost ~1 us a row, paid for every
# post of every render): this is their order, checked against POST_COLUMNS at import.
_ORDER = ("id", "conversation_id", "in_reply_to_id", "quote_of_id", "text", "created_at",
          "deleted", "section", "replies_normal", "replies_low_quality", "replies_offensive",
          "likes", "reposts", "quotes", "author_id", "handle", "display_name", "state",
          "protected", "q_exists", "q_deleted", "q_author_id", "q_author_state",
          "q_author_protected", "rank_key")
if tuple(c.split()[-1].split(".")[-1] for c in POST_COLUMNS.split(",")) != _ORDER:
    raise AssertionError("POST_COLUMNS and post_from_record's order differ")


def post_from_record(r, at: int = 0) -> PostRow:
    """A PostRow from a record whose POST_COLUMNS start at column `at`."""
    (id_, conversation_id, in_reply_to_id, quote_of_id, text, created_at, deleted, section,
     r0, r1, r2, likes, reposts, quotes, author_id, handle, display_name, state, protected,
     q_exists, q_deleted, q_author_id, q_author_state, q_author_protected,
     rank_key) = r[at:] if at else r
    quoted = None
    if quote_of_id is not None:
        quoted = QuotedSummary(q_exists, q_deleted, q_author_id, q_author_state,
                               bool(q_author_protected))
    return PostRow(id_, conversation_id, in_reply_to_id, quote_of_id,
                   Author(author_id, handle, display_name, state, protected), text, created_at,
                   deleted, section, (r0, r1, r2), likes, reposts, quotes, quoted, rank_key)


async def posts_by_id(db: Database, ids: Iterable[int]) -> dict[int, PostRow]:
    """Every existing post among `ids`, keyed by id. One round trip."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    return {r[0]: post_from_record(r) for r in await db.fetch(_POSTS_SQL, wanted)}
