"""The quote posts of a post, newest first: a keyset walk of the posts_quotes index."""
from __future__ import annotations

from .db import Database
from .post_queries import POST_COLUMNS, POST_JOINS, post_from_record
from .rows import PostRow

_PAGE = f"""
    SELECT {POST_COLUMNS} FROM (
        SELECT id FROM posts
        WHERE quote_of_id = $1 AND deleted_at IS NULL AND id < $2
        ORDER BY id DESC LIMIT $3) page
    JOIN posts p ON p.id = page.id {POST_JOINS}
    ORDER BY p.id DESC"""


async def quotes_page(db: Database, quoted_id: int, before: int | None, limit: int) -> list[PostRow]:
    """Up to `limit` live posts quoting `quoted_id` with ids below `before`, newest first."""
    rows = await db.fetch(_PAGE, quoted_id, before or (1 << 63) - 1, limit)
    return [post_from_record(r) for r in rows]
