"""The skeleton stage: which reply ids a view shows, level by level, within its limits.

Breadth-first: level 1 is one keyset page of the root's replies; every deeper level is one
round trip that fetches the top-K replies of all of that level's parents at once. The node
budget (max_nodes) is handed out in display order, so better-ranked branches fill first.
Whatever is cut (by branching, depth or budget) is marked so that the presenter can give it
a cursor. Nothing here depends on the viewer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from storage import thread_queries as q
from storage.db import Database

NORMAL = 0


@dataclass(slots=True, eq=False)
class SkelNode:
    id: int
    counts: tuple[int, int, int]  # listed replies per section
    level: int                    # 0 for the view's root, 1 for its replies, ...
    key: tuple[int, int] = (0, 0)  # this node's keyset position among its siblings
    children: list["SkelNode"] | None = None  # None: not expanded
    more: bool = False            # replies in the listed section exist past `children`
    after: tuple[int, int] | None = None  # keyset of the last reply taken
    consumed: int = 0             # replies of the listed section before the cut


@dataclass(slots=True)
class Skeleton:
    root: SkelNode
    section: int       # the section the root lists (deeper nodes list NORMAL)
    sort: str
    depth: int         # levels below the root this view may show
    nodes: int = 0     # reply nodes taken
    partial: bool = False
    ids: list[int] = field(default_factory=list)


def _node(row: q.ChildRow, level: int, sort: str) -> SkelNode:
    return SkelNode(row.id, row.counts, level, row.key(sort))


def _take(node: SkelNode, rows: list[q.ChildRow], k: int, sort: str) -> list[SkelNode]:
    """Attach up to k of `rows` (fetched with limit k+1) as node's children."""
    node.children = [_node(r, node.level + 1, sort) for r in rows[:k]]
    node.more = len(rows) > k
    if node.children:
        node.after = node.children[-1].key
    node.consumed += len(node.children)
    return node.children


async def expand(db: Database, conversation_id: int, root: SkelNode, *, section: int, sort: str,
                 depth: int, branching: int, max_nodes: int,
                 after: tuple[int, int] | None = None, consumed: int = 0,
                 root_counts_known: bool = True) -> Skeleton:
    """Build the skeleton under `root`: at most `depth` levels, `branching` replies per node and
    `max_nodes` nodes, in at most `depth` round trips. A cursor's page does not know its
    parent's counters yet (root_counts_known=False): it always queries."""
    skel = Skeleton(root, section, sort, depth)
    root.after, root.consumed = after, consumed
    if depth < 1 or (root_counts_known and root.counts[section] == 0):
        root.more = root.counts[section] > 0
        return skel
    budget = max_nodes
    k = min(branching, budget)
    rows = await q.children_page(db, conversation_id, root.id, section, sort, k + 1, after)
    taken = _take(root, rows, k, sort)
    budget -= len(taken)
    skel.ids.extend(n.id for n in taken)
    frontier = [n for n in taken if n.counts[NORMAL] > 0]
    level = 2
    while frontier and level <= depth and budget > 0:
        limits: dict[int, int] = {}
        for node in frontier:
            k = min(branching, node.counts[NORMAL], budget)
            if k == 0:
                break
            limits[node.id] = k + 1  # one extra row tells whether more exist
            budget -= k
        fetched = await q.children_of_many(db, conversation_id, limits, sort, NORMAL)
        next_frontier: list[SkelNode] = []
        for node in frontier:
            if node.id not in limits:
                node.more = True
                continue
            k = limits[node.id] - 1
            taken = _take(node, fetched[node.id], k, sort)
            budget += k - len(taken)  # counters can run ahead of rows; give back the unused
            skel.ids.extend(n.id for n in taken)
            next_frontier.extend(n for n in taken if n.counts[NORMAL] > 0)
        frontier = next_frontier
        level += 1
    for node in frontier:  # cut by depth or budget: reachable through a cursor
        node.more = True
    skel.nodes = len(skel.ids)
    return skel
