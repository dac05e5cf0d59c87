"""Likes and reposts: who reacted to which post, and the counters, exact under concurrency.

API (used by /v1/posts/{id}/like|repost and the Mastodon favourite/reblog routes):
  like(conn, post_id, account_id) -> bool        True when this call added the like
  unlike(conn, post_id, account_id) -> bool      True when this call removed it
  repost(...) / unrepost(...)                    the same for reposts
  viewer_state(conn, account_id, post_ids) -> {post_id: (liked, reposted)}   one round trip
  counts(conn, post_ids) -> {post_id: (likes, reposts)}   exact now (folded + pending)
  state_and_counts(conn, post_id, account_id) -> (liked, reposted, likes, reposts)  one query
  fold(conn, limit) -> [(post_id, conversation_id)]       pending deltas into post_counts

Each change is one statement: the reactions row is inserted (or deleted) and, only when that
happened, +1 (-1) is added to one of `shards` delta rows of the post chosen at random, in the
same statement, so a counter can never disagree with the rows (idempotent: a second like
changes nothing). No single row is locked by every liker of a viral post: concurrent likers
contend on a delta row only when they draw the same shard (1/shards), for the length of their
one-statement transaction. The rows are keyed by account first, so a hot post's inserts spread
over the primary key's pages.

fold() moves the deltas into post_counts and recomputes the engagement score
(storage/section_rules.rank_key, which orders `sort=ranked`) of the posts it folded, so the
rendered counts and the order follow the likes within one fold interval (the service runs it
in the background; service/http/reaction_folder.py). Its cost is bounded by `limit` delta rows
per call. A post's exact count at any moment is post_counts + the sum of its deltas (counts()).
Seeded posts may carry counts without rows (storage/seeding.py); the rows count from there.
A recount of the rows (write-time cost: repair, tests) is counter_writes.recount_reactions.
"""
from __future__ import annotations

from typing import Iterable

from .counter_writes import recount_reactions
from .db import CountedConnection, Database
from .section_rules import rank_key

LIKE, REPOST = 1, 2
DEFAULT_SHARDS = 16
Conn = Database | CountedConnection

# $1 post, $2 account, $3 kind, $4 shards
_ADD = """
    WITH added AS (
        INSERT INTO reactions (account_id, post_id, kind, conversation_id)
        SELECT $2, p.id, $3, p.conversation_id FROM posts p WHERE p.id = $1
        ON CONFLICT DO NOTHING
        RETURNING post_id, conversation_id)
    INSERT INTO reaction_deltas AS d (post_id, shard, conversation_id, likes, reposts)
    SELECT post_id, floor(random() * $4)::smallint, conversation_id,
           ($3 = 1)::int, ($3 = 2)::int FROM added
    ON CONFLICT (post_id, shard) DO UPDATE
        SET likes = d.likes + EXCLUDED.likes, reposts = d.reposts + EXCLUDED.reposts
    RETURNING 1"""

_REMOVE = """
    WITH removed AS (
        DELETE FROM reactions WHERE account_id = $2 AND post_id = $1 AND kind = $3
        RETURNING post_id, conversation_id)
    INSERT INTO reaction_deltas AS d (post_id, shard, conversation_id, likes, reposts)
    SELECT post_id, floor(random() * $4)::smallint, conversation_id,
           -($3 = 1)::int, -($3 = 2)::int FROM removed
    ON CONFLICT (post_id, shard) DO UPDATE
        SET likes = d.likes + EXCLUDED.likes, reposts = d.reposts + EXCLUDED.reposts
    RETURNING 1"""


async def _change(conn: Conn, sql: str, post_id: int, account_id: int, kind: int,
                  shards: int) -> bool:
    return await conn.fetchval(sql, post_id, account_id, kind, max(1, shards)) is not None


async def like(conn: Conn, post_id: int, account_id: int, *, shards: int = DEFAULT_SHARDS) -> bool:
    """Add account's like of post (a post that does not exist: nothing, False)."""
    return await _change(conn, _ADD, post_id, account_id, LIKE, shards)


async def unlike(conn: Conn, post_id: int, account_id: int, *,
                 shards: int = DEFAULT_SHARDS) -> bool:
    return await _change(conn, _REMOVE, post_id, account_id, LIKE, shards)


async def repost(conn: Conn, post_id: int, account_id: int, *,
                 shards: int = DEFAULT_SHARDS) -> bool:
    return await _change(conn, _ADD, post_id, account_id, REPOST, shards)


async def unrepost(conn: Conn, post_id: int, account_id: int, *,
                   shards: int = DEFAULT_SHARDS) -> bool:
    return await _change(conn, _REMOVE, post_id, account_id, REPOST, shards)


async def viewer_state(conn: Conn, account_id: int,
                       post_ids: Iterable[int]) -> dict[int, tuple[bool, bool]]:
    """(liked, reposted) of each post among post_ids that account reacted to (absent: neither).
    One round trip, a range of the primary key."""
    wanted = list(set(post_ids))
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT post_id, bool_or(kind = 1) AS liked, bool_or(kind = 2) AS reposted "
        "FROM reactions WHERE account_id = $1 AND post_id = ANY($2::bigint[]) GROUP BY post_id",
        account_id, wanted)
    return {r["post_id"]: (r["liked"], r["reposted"]) for r in rows}


async def counts(conn: Conn, post_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Exact (likes, reposts) of these posts now: folded counters plus pending deltas (at most
    `shards` rows per post). For answers that must include a write just made."""
    wanted = list(set(post_ids))
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT pc.post_id,
                  pc.likes + coalesce(sum(d.likes), 0) AS likes,
                  pc.reposts + coalesce(sum(d.reposts), 0) AS reposts
           FROM post_counts pc LEFT JOIN reaction_deltas d ON d.post_id = pc.post_id
           WHERE pc.post_id = ANY($1::bigint[]) GROUP BY pc.post_id""", wanted)
    return {r["post_id"]: (int(r["likes"]), int(r["reposts"])) for r in rows}


async def state_and_counts(conn: Conn, post_id: int,
                           account_id: int) -> tuple[bool, bool, int, int] | None:
    """The account's (liked, reposted) and the post's exact (likes, reposts), in one round
    trip (the answer to a like); None when the post has no counters (it does not exist)."""
    row = await conn.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM reactions r WHERE r.account_id = $2
                                 AND r.post_id = $1 AND r.kind = 1) AS liked,
                  EXISTS (SELECT 1 FROM reactions r WHERE r.account_id = $2
                                 AND r.post_id = $1 AND r.kind = 2) AS reposted,
                  pc.likes + coalesce(d.likes, 0) AS likes,
                  pc.reposts + coalesce(d.reposts, 0) AS reposts
           FROM post_counts pc,
                LATERAL (SELECT sum(likes) AS likes, sum(reposts) AS reposts
                         FROM reaction_deltas WHERE post_id = $1) d
           WHERE pc.post_id = $1""", post_id, account_id)
    if row is None:
        return None
    return row["liked"], row["reposted"], int(row["likes"]), int(row["reposts"])


_FOLD = """
    WITH picked AS (
        SELECT post_id, shard FROM reaction_deltas ORDER BY post_id, shard LIMIT $1
        FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM reaction_deltas d USING picked
        WHERE d.post_id = picked.post_id AND d.shard = picked.shard
        RETURNING d.post_id, d.likes, d.reposts),
    sums AS (
        SELECT post_id, sum(likes)::int AS likes, sum(reposts)::int AS reposts
        FROM gone GROUP BY post_id)
    UPDATE post_counts pc SET likes = pc.likes + s.likes, reposts = pc.reposts + s.reposts
    FROM sums s WHERE pc.post_id = s.post_id
    RETURNING pc.post_id, pc.conversation_id, pc.likes, pc.reposts, pc.quotes"""


async def fold(db: Database, limit: int = 10_000) -> list[tuple[int, int]]:
    """Move up to `limit` pending delta rows into post_counts and update the engagement score
    of their posts, in one transaction; return the (post_id, conversation_id) folded. Rows
    locked by a like in flight are left for the next call (SKIP LOCKED), so folding never
    waits for likers nor they (beyond one statement) for it; concurrent folds (other
    processes) take disjoint rows."""
    async with db.transaction() as tx:
        rows = await tx.fetch(_FOLD, limit)
        if not rows:
            return []
        ids = [r["post_id"] for r in rows]
        keys = [rank_key(r["likes"], r["reposts"], r["quotes"]) for r in rows]
        await tx.execute(
            """UPDATE posts p SET rank_key = v.rank_key
               FROM unnest($1::bigint[], $2::bigint[]) AS v(id, rank_key)
               WHERE p.id = v.id AND p.rank_key <> v.rank_key""", ids, keys)
    return [(r["post_id"], r["conversation_id"]) for r in rows]


# (likes, reposts) rows of a post, counted: write-time cost (repair, tests); kept under this
# name for callers of the first version of this API.
recount = recount_reactions
