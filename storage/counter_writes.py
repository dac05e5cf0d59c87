"""Counter SQL that more than one writer shares (write-time only: it may count rows): the
reply-counter columns per section, the quote counter's rule with the recount that applies it,
and the recount of a post's likes and reposts rows (storage/reactions.py keeps the counters).

Quote counter rule: a post's `post_counts.quotes` is the number of its quoting posts an
anonymous viewer can see (not deleted, author active and not protected), so that it equals
what the quotes list reaches. Writes keep it by +/- 1 (storage/post_writes.py); a change of
an author's state or protection recounts the posts they quote (storage/section_updates.py);
repair compares it with the same rule (storage/repair.py).
"""
from __future__ import annotations

from .db import CountedConnection, Database

# post_counts' listed direct replies per section, indexed by section (section_rules' order).
REPLY_COLUMNS = ("replies_normal", "replies_low_quality", "replies_offensive")

# The quote counter's rule for post $1.
QUOTES_OF = """
    SELECT count(*) FROM posts q JOIN accounts a ON a.id = q.author_id
    WHERE q.quote_of_id = $1 AND q.deleted_at IS NULL AND a.state = 'active' AND NOT a.protected"""


async def recount_quotes(tx: CountedConnection, post_ids: list[int]) -> None:
    """Set the quotes counter of these posts from their quoting posts (a write-time count,
    bounded by the quotes of these posts): after an author's state or protection changed."""
    await tx.execute(
        f"UPDATE post_counts pc SET quotes = ({QUOTES_OF.replace('$1', 'pc.post_id')}) "
        "WHERE pc.post_id = ANY($1::bigint[])", post_ids)


async def recount_reactions(conn: Database | CountedConnection, post_id: int) -> tuple[int, int]:
    """(likes, reposts) rows of a post, counted: what post_counts plus the pending
    reaction_deltas must equal (repair and tests; an index range of reactions_post)."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE kind = 1) AS likes, "
        "count(*) FILTER (WHERE kind = 2) AS reposts FROM reactions WHERE post_id = $1",
        post_id)
    return int(row["likes"]), int(row["reposts"])
