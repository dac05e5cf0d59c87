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


def post_from_record(r) -> PostRow:
    author = Author(r["author_id"], r["handle"], r["display_name"], r["state"], r["protected"])
    quoted = None
    if r["quote_of_id"] is not None:
        quoted = QuotedSummary(r["q_exists"], r["q_deleted"], r["q_author_id"],
                               r["q_author_state"], bool(r["q_author_protected"]))
    return PostRow(r["id"], r["conversation_id"], r["in_reply_to_id"], r["quote_of_id"], author,
                   r["text"], r["created_at"], r["deleted"], r["section"],
                   (r["replies_normal"], r["replies_low_quality"], r["replies_offensive"]),
                   r["likes"], r["reposts"], r["quotes"], quoted, r["rank_key"])


async def posts_by_id(db: Database, ids: Iterable[int]) -> dict[int, PostRow]:
    """Every existing post among `ids`, keyed by id. One round trip."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    return {r["id"]: post_from_record(r) for r in await db.fetch(_POSTS_SQL, wanted)}
