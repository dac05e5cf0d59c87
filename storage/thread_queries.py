"""Thread-shape SQL: ancestor chains and top-K children per parent. Ids and counters only.

Every statement filters on conversation_id and is an index range scan whose cost depends
on the page size, never on how many replies a post has. A tree level comes back as whole
posts (the hydrate stage for tree nodes), so a render needs no per-node lookups.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .db import Database
from .post_queries import POST_COLUMNS, POST_JOINS, post_from_record
from .rows import Caps, ChainRow, PostRow

SORTS = ("ranked", "newest", "oldest")
SECTIONS = ("normal", "low_quality", "offensive")

# ORDER BY and the keyset predicate for each sort. Fixed strings only: no input reaches SQL text.
_ORDER = {
    "ranked": "p.rank_key DESC, p.id DESC",
    "newest": "p.id DESC",
    "oldest": "p.id ASC",
}
_AFTER = {  # keyset predicate against per-parent positions q.after_rank, q.after_id
    "ranked": "AND (p.rank_key, p.id) < (q.after_rank, q.after_id)",
    "newest": "AND p.id < q.after_id",
    "oldest": "AND p.id > q.after_id",
}


@dataclass(frozen=True, slots=True)
class Fetch:
    """Take up to `limit` listed replies of `parent`, after keyset `after` (None: from the top)."""
    parent: int
    limit: int
    after: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """The replies ranked first under every parent, in every section (or only the demoted ones
    when `all_sections` is false), at most `limit` per parent: all of the focal author's and the
    viewer's, and those of `followed` found among the top `window` of each section by score.
    The window bounds the cost however many replies the followed accounts wrote."""
    followed: tuple[int, ...]
    focal_author: int
    viewer: int | None
    all_sections: bool
    limit: int
    window: int


@dataclass(slots=True)
class LevelRows:
    listed: list[PostRow]   # the parent's replies in the section, in sort order
    head: list[PostRow]     # replies by Head.authors, in head order


def _level_sql(sort: str, keyed: bool, with_head: bool, followed: bool) -> str:
    after = _AFTER[sort] if keyed else ""
    keys = ", $5::bigint[], $6::bigint[]) AS q(parent_id, lim, after_rank, after_id)" if keyed \
        else ") AS q(parent_id, lim)"
    head = ""
    if with_head:
        # The followed accounts are matched outside the per-parent windows, through one hash
        # of $5 for the whole level (inside, the array would be hashed again for every window).
        # The parts are joined with UNION ALL (a hash aggregate over every row cost the
        # database ~7%): a listed row and a head row differ by `src`, and the one row two head
        # parts can both find, a reply by a followed account that is also the focal author,
        # level() keeps once.
        window = " UNION ALL ".join(f"""
            (SELECT p.id, p.author_id FROM posts p
             WHERE p.conversation_id = $1 AND p.in_reply_to_id = q.parent_id
               AND p.section = {section} AND p.listed AND ($6 OR {section} <> $4)
             ORDER BY p.rank_key DESC, p.id DESC LIMIT $10)""" for section in range(3))
        head = f"""
        UNION ALL
        SELECT q.parent_id, 1, h.id FROM unnest($2::bigint[]) AS q(parent_id)
        CROSS JOIN LATERAL (
            SELECT p.id FROM posts p
            WHERE p.conversation_id = $1 AND p.in_reply_to_id = q.parent_id AND p.listed
              AND p.author_id IN ($7, $8) AND ($6 OR p.section <> $4)
            ORDER BY p.rank_key DESC, p.id DESC LIMIT $9) h"""
    if with_head and not followed:  # same parameters either way: type the unused ones
        head += "\n        WHERE $5::bigint[] IS NOT NULL AND $10::int IS NOT NULL"
    if with_head and followed:
        head += f"""
        UNION ALL
        SELECT q.parent_id, 1, w.id FROM unnest($2::bigint[]) AS q(parent_id)
        CROSS JOIN LATERAL ({window}) w
        JOIN (SELECT DISTINCT unnest($5::bigint[]) AS id) followed ON followed.id = w.author_id"""
    # The last parameter is the most rows the ids can make (level() computes it): a LIMIT
    # that never cuts, there to tell the planner how few they are. Without it the planner
    # guesses a tenth of each parent's replies per `q.lim` (~12,000 rows for a 38-parent
    # level of the 1M conversation), and a plan made for the actual parameters (psql,
    # EXPLAIN, a pool without force_generic_plan) merge-joins the whole post_counts table:
    # 72 ms instead of 1.4, and growing with the table.
    bound = 7 if keyed else 11 if with_head else 5   # the parameter after level()'s others
    return f"""
    SELECT c.parent_id, c.src, {POST_COLUMNS}
    FROM (SELECT * FROM (
        SELECT q.parent_id, 0 AS src, b.id FROM unnest($2::bigint[], $3::int[]{keys}
        CROSS JOIN LATERAL (
            SELECT p.id FROM posts p
            WHERE p.conversation_id = $1 AND p.in_reply_to_id = q.parent_id
              AND p.section = $4 AND p.listed {after}
            ORDER BY {_ORDER[sort]}
            LIMIT q.lim) b{head}
    ) ids LIMIT ${bound}) c
    JOIN posts p ON p.id = c.id {POST_JOINS}"""


_LEVEL_SQL = {(sort, keyed, head, followed): _level_sql(sort, keyed, head, followed)
              for sort in SORTS for keyed in (False, True) for head in (False, True)
              for followed in (False, True) if not (keyed and head) and (head or not followed)}


def sort_key(sort: str):
    if sort == "ranked":
        return lambda p: (-p.rank_key, -p.id)
    if sort == "newest":
        return lambda p: -p.id
    return lambda p: p.id


def keyset(post: PostRow, sort: str) -> tuple[int, int]:
    return (post.rank_key, post.id) if sort == "ranked" else (0, post.id)


def level_bound(fetches: Sequence[Fetch], head: Head | None) -> int:
    """The most id rows a level statement can make: each parent's limit, plus its head rows
    (the focal author's and the viewer's, up to `limit`; the followed accounts' among the
    top `window` of each of the 3 sections)."""
    bound = sum(f.limit for f in fetches)
    if head is not None:
        bound += len(fetches) * (head.limit + (3 * head.window if head.followed else 0))
    return bound


async def level(db: Database, conversation_id: int, fetches: Sequence[Fetch], sort: str,
                section: int, head: Head | None = None) -> dict[int, LevelRows]:
    """Whole posts for one tree level: per parent, a keyset page of its replies in `section`
    (an index range scan each), plus the head replies when asked. One round trip. Fetches
    must all have an `after`, or none; a head goes only with first pages."""
    out = {f.parent: LevelRows([], []) for f in fetches}
    if not fetches:
        return out
    keyed = fetches[0].after is not None
    args: list = [conversation_id, [f.parent for f in fetches], [f.limit for f in fetches], section]
    if keyed:
        args += [[f.after[0] for f in fetches], [f.after[1] for f in fetches]]
    elif head is not None:
        args += [list(head.followed), head.all_sections, head.focal_author, head.viewer,
                 head.limit, head.window]
    with_head = head is not None and not keyed
    followed = with_head and bool(head.followed)
    args.append(level_bound(fetches, head if with_head else None))
    rows = await db.fetch(_LEVEL_SQL[(sort, keyed, with_head, followed)], *args)
    for r in rows:  # parent_id, src, then POST_COLUMNS
        rows_of = out[r[0]]
        (rows_of.head if r[1] else rows_of.listed).append(post_from_record(r, 2))
    if head is not None:
        for rows_of in out.values():  # a followed focal author is found twice; keep one
            rows_of.head = list({p.id: p for p in rows_of.head}.values())
    key = sort_key(sort)
    for rows_of in out.values():
        rows_of.listed.sort(key=key)
        if head is not None:
            rows_of.head.sort(key=lambda p: (p.author.id != head.focal_author,
                                             p.author.id != head.viewer, -p.rank_key, -p.id))
            del rows_of.head[head.limit:]
    return out


_CHAIN_SQL = """
    WITH RECURSIVE chain (id, parent, conv, depth, deleted, hop) AS (
        SELECT id, in_reply_to_id, conversation_id, depth, deleted_at IS NOT NULL, 0
        FROM posts WHERE id = $1
      UNION ALL
        SELECT p.id, p.in_reply_to_id, p.conversation_id, p.depth, p.deleted_at IS NOT NULL,
               c.hop + 1
        FROM chain c JOIN posts p ON p.id = c.parent AND p.conversation_id = c.conv
        WHERE c.hop < $2
    )
    SELECT c.id, c.parent, c.conv, c.depth, c.deleted, c.hop,
           pc.replies_normal, pc.replies_low_quality, pc.replies_offensive,
           cl.depth AS cap_depth, cl.branching AS cap_branching, cl.max_nodes AS cap_max_nodes,
           cl.ancestors AS cap_ancestors
    FROM chain c JOIN post_counts pc ON pc.post_id = c.id
    LEFT JOIN conversation_limits cl ON cl.conversation_id = c.conv
    ORDER BY c.hop"""


async def chain_up(db: Database, start_id: int, hops: int) -> list[ChainRow]:
    """The post `start_id` and up to `hops` of its ancestors, nearest first. One round trip."""
    return _chain_rows(await db.fetch(_CHAIN_SQL, start_id, hops))


# The focal post's chain, gated: the walk starts only when, by the viewer's relations in the
# database ($3; NULL: anonymous), the focal post is one the viewer may see
# (service/pipeline/visibility_rules.author_verdict and the deleted flag, restated). A post
# hidden from this viewer then comes back exactly as a missing id does, as no rows, after
# the same work: whether the id exists or not, one lookup of the post, one of its author
# (key -1 when there is none), and the same four probes of the viewer's relations (all
# evaluated, OFFSET 0 keeps the planner from short-circuiting them), then no walk up its
# ancestors. What is left to tell them apart is whether those index lookups found a row.
# The service's rules run on the result as before (with the viewer's cached relations, and
# muted words): the post is shown only when both allow it.
_FOCAL_CHAIN_SQL = """
    WITH RECURSIVE focal AS (
        SELECT p.id, p.in_reply_to_id, p.conversation_id, p.depth,
               COALESCE(p.deleted_at IS NULL AND a.state = 'active' AND (a.id = $3 OR (
                   (NOT a.protected OR r.follows)
                   AND NOT r.blocks AND NOT r.blocked_by AND NOT r.mutes)), false) AS go
        FROM (SELECT $1::bigint AS want) w
        LEFT JOIN posts p ON p.id = w.want
        LEFT JOIN accounts a ON a.id = COALESCE(p.author_id, -1)
        CROSS JOIN LATERAL (SELECT
            EXISTS (SELECT 1 FROM follows f
                    WHERE f.follower_id = $3 AND f.followee_id = COALESCE(a.id, -1)) AS follows,
            EXISTS (SELECT 1 FROM blocks b
                    WHERE b.blocker_id = $3 AND b.blocked_id = COALESCE(a.id, -1)) AS blocks,
            EXISTS (SELECT 1 FROM blocks b
                    WHERE b.blocker_id = COALESCE(a.id, -1) AND b.blocked_id = $3) AS blocked_by,
            EXISTS (SELECT 1 FROM mutes m
                    WHERE m.muter_id = $3 AND m.muted_id = COALESCE(a.id, -1)) AS mutes
            OFFSET 0) r
    ), chain (id, parent, conv, depth, deleted, hop) AS (
        SELECT id, in_reply_to_id, conversation_id, depth, false, 0 FROM focal WHERE go
      UNION ALL
        SELECT p.id, p.in_reply_to_id, p.conversation_id, p.depth, p.deleted_at IS NOT NULL,
               c.hop + 1
        FROM chain c JOIN posts p ON p.id = c.parent AND p.conversation_id = c.conv
        WHERE c.hop < $2
    )
    """ + _CHAIN_SQL[_CHAIN_SQL.index("SELECT c.id"):]


# The focal chain's rows as _CHAIN_SQL returns them, each with its whole post (POST_COLUMNS),
# and the root's post as one more row (hop -1) when the walk did not reach it: the ancestors'
# posts come with the chain, in its round trip. Every row of the walk is hydrated (the last
# hop, where an omitted gap starts, is one post more than the view shows).
_FOCAL_VIEW_SQL = _FOCAL_CHAIN_SQL[:_FOCAL_CHAIN_SQL.index("SELECT c.id")] + f"""
    SELECT c.hop, c.id, c.parent, c.conv, c.depth, c.deleted,
           cc.replies_normal, cc.replies_low_quality, cc.replies_offensive,
           cl.depth AS cap_depth, cl.branching AS cap_branching, cl.max_nodes AS cap_max_nodes,
           cl.ancestors AS cap_ancestors, {POST_COLUMNS}
    FROM chain c JOIN post_counts cc ON cc.post_id = c.id
    LEFT JOIN conversation_limits cl ON cl.conversation_id = c.conv
    JOIN posts p ON p.id = c.id {POST_JOINS}
    UNION ALL
    SELECT -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           {POST_COLUMNS}
    FROM posts p {POST_JOINS}
    WHERE p.id = (SELECT conv FROM chain WHERE hop = 0)
      AND NOT EXISTS (SELECT 1 FROM chain WHERE id = p.id)
    ORDER BY 1"""
_VIEW_POST_AT = 13  # where POST_COLUMNS start in a _FOCAL_VIEW_SQL row


async def focal_chain(db: Database, focal_id: int, hops: int, viewer_id: int | None
                      ) -> tuple[list[ChainRow], dict[int, PostRow]]:
    """As chain_up, for the focal post of a conversation viewed by `viewer_id`, with the
    posts of the chain and of the conversation's root, keyed by id: both empty when the post
    does not exist or is hidden from the viewer (see _FOCAL_CHAIN_SQL). One round trip."""
    rows = await db.fetch(_FOCAL_VIEW_SQL, focal_id, hops, viewer_id)
    posts = {r[_VIEW_POST_AT]: post_from_record(r, _VIEW_POST_AT) for r in rows}
    # by position: POST_COLUMNS repeat some of the chain's names (id, deleted, replies_*)
    chain = [ChainRow(r[1], r[2], r[3], r[4], r[5], (r[6], r[7], r[8]),
                      Caps(depth=r[9], branching=r[10], max_nodes=r[11], ancestors=r[12]))
             for r in rows if r[0] >= 0]
    return chain, posts


def _chain_rows(rows) -> list[ChainRow]:
    return [ChainRow(r["id"], r["parent"], r["conv"], r["depth"], r["deleted"],
                     (r["replies_normal"], r["replies_low_quality"], r["replies_offensive"]),
                     Caps(depth=r["cap_depth"], branching=r["cap_branching"],
                          max_nodes=r["cap_max_nodes"], ancestors=r["cap_ancestors"]))
            for r in rows]


def section_index(name: str) -> int:
    return SECTIONS.index(name)
