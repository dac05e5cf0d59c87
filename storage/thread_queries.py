"""Thread-shape SQL: ancestor chains and top-K children per parent. Ids and counters only.

Every statement filters on conversation_id and is an index range scan whose cost depends
on the page size, never on how many replies a post has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .db import Database

SORTS = ("ranked", "newest", "oldest")
SECTIONS = ("normal", "low_quality", "offensive")

# ORDER BY and the keyset predicate for each sort. Fixed strings only: no input reaches SQL text.
_ORDER = {
    "ranked": "p.rank_key DESC, p.id DESC",
    "newest": "p.id DESC",
    "oldest": "p.id ASC",
}
_AFTER = {
    "ranked": "AND (p.rank_key, p.id) < ($5::bigint, $6::bigint)",
    "newest": "AND p.id < $5::bigint",
    "oldest": "AND p.id > $5::bigint",
}
_CHILD_COLUMNS = """c.id, c.section, c.rank_key, pc.replies_normal, pc.replies_low_quality,
                    pc.replies_offensive"""


@dataclass(frozen=True, slots=True)
class ChildRow:
    """One listed reply: its sort key and how many listed replies it has per section."""
    id: int
    section: int
    rank_key: int
    counts: tuple[int, int, int]

    def key(self, sort: str) -> tuple[int, int]:
        return (self.rank_key, self.id) if sort == "ranked" else (0, self.id)


@dataclass(frozen=True, slots=True)
class ChainRow:
    id: int
    in_reply_to_id: int | None
    conversation_id: int
    depth: int
    deleted: bool
    counts: tuple[int, int, int]


def _child(r) -> ChildRow:
    return ChildRow(r["id"], r["section"], r["rank_key"],
                    (r["replies_normal"], r["replies_low_quality"], r["replies_offensive"]))


def _sort_key(sort: str):
    if sort == "ranked":
        return lambda c: (-c.rank_key, -c.id)
    if sort == "newest":
        return lambda c: -c.id
    return lambda c: c.id


_LEVEL_SQL = {sort: f"""
    SELECT q.parent_id, {_CHILD_COLUMNS}
    FROM unnest($2::bigint[], $3::int[]) AS q(parent_id, lim)
    CROSS JOIN LATERAL (
        SELECT p.id, p.section, p.rank_key FROM posts p
        WHERE p.conversation_id = $1 AND p.in_reply_to_id = q.parent_id
          AND p.section = $4 AND p.listed
        ORDER BY {_ORDER[sort]}
        LIMIT q.lim
    ) c
    JOIN post_counts pc ON pc.post_id = c.id""" for sort in SORTS}


async def children_of_many(db: Database, conversation_id: int, limits: dict[int, int],
                           sort: str, section: int = 0) -> dict[int, list[ChildRow]]:
    """Up to limits[parent] listed replies of each parent in one section, in sort order.
    One round trip for a whole tree level (LATERAL top-K per parent)."""
    parents = [p for p, n in limits.items() if n > 0]
    out: dict[int, list[ChildRow]] = {p: [] for p in parents}
    if not parents:
        return out
    rows = await db.fetch(_LEVEL_SQL[sort], conversation_id, parents,
                          [limits[p] for p in parents], section)
    for r in rows:
        out[r["parent_id"]].append(_child(r))
    key = _sort_key(sort)
    for children in out.values():
        children.sort(key=key)
    return out


_PAGE_SQL = {(sort, keyed): f"""
    SELECT {_CHILD_COLUMNS}
    FROM (SELECT p.id, p.section, p.rank_key FROM posts p
          WHERE p.conversation_id = $1 AND p.in_reply_to_id = $2 AND p.section = $3 AND p.listed
                {_AFTER[sort] if keyed else ""}
          ORDER BY {_ORDER[sort]}
          LIMIT $4) c
    JOIN post_counts pc ON pc.post_id = c.id""" for sort in SORTS for keyed in (False, True)}


async def children_page(db: Database, conversation_id: int, parent_id: int, section: int,
                        sort: str, limit: int, after: tuple[int, int] | None) -> list[ChildRow]:
    """One keyset page of a parent's listed replies in one section, in sort order."""
    args: tuple = (conversation_id, parent_id, section, limit)
    if after is not None:
        args += after if sort == "ranked" else (after[1],)
    rows = await db.fetch(_PAGE_SQL[(sort, after is not None)], *args)
    return sorted((_child(r) for r in rows), key=_sort_key(sort))


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
           pc.replies_normal, pc.replies_low_quality, pc.replies_offensive
    FROM chain c JOIN post_counts pc ON pc.post_id = c.id
    ORDER BY c.hop"""


async def chain_up(db: Database, start_id: int, hops: int) -> list[ChainRow]:
    """The post `start_id` and up to `hops` of its ancestors, nearest first. One round trip."""
    rows = await db.fetch(_CHAIN_SQL, start_id, hops)
    return [ChainRow(r["id"], r["parent"], r["conv"], r["depth"], r["deleted"],
                     (r["replies_normal"], r["replies_low_quality"], r["replies_offensive"]))
            for r in rows]


def section_index(name: str) -> int:
    return SECTIONS.index(name)


def ids_of(rows: Sequence[ChildRow]) -> list[int]:
    return [r.id for r in rows]
