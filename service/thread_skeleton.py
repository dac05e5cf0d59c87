"""The skeleton stage: which replies a view shows, level by level, for one viewer.

Breadth-first: every level is one round trip that fetches, for all of that level's parents at
once, a keyset page of their replies as whole posts (and on first pages the "head": replies by
the focal author, the viewer and the accounts the viewer follows, which rank first and are
never demoted). The viewer's visibility rules run here, before limiting, so that a page holds
`branching` visible replies when that many exist; when the rules hide rows, the short parents
are refilled from where they stopped, a bounded number of times. The node budget (max_nodes)
is handed out in display order. Whatever is cut gets a keyset position for a cursor.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

from storage import thread_queries as q
from storage.db import Database
from storage.post_queries import PostRow

from . import visibility_rules as rules
from .breakers import BreakerOpen, CircuitBreaker
from .resilience import DATABASE_ERRORS
from .viewer import Viewer

NORMAL = 0


@dataclass(frozen=True)
class ExpandSpec:
    conversation_id: int
    sort: str
    depth: int          # levels below the root
    branching: int
    max_nodes: int
    viewer: Viewer
    focal_author: int
    head_limit: int     # head replies per parent
    refill_rounds: int  # extra fetches per level when the rules hid rows
    overfetch: int      # extra rows per fetch for viewers whose rules may hide some
    head_window: int    # followed accounts' replies are looked for in this many top rows
    deadline: float | None = None  # time.monotonic() past which no new level is started
    ranking: CircuitBreaker | None = None  # guards the score-ordered lookups (sort=ranked)
    ranking_fault: BaseException | None = None  # injected by tests (service/faults.py)


class RankingUnavailable(Exception):
    """Score-ordered lookups failed or their breaker is open: render chronologically."""


@dataclass(slots=True, eq=False)
class SkelNode:
    id: int
    post: PostRow | None
    level: int                     # 0 for the view's root, 1 for its replies, ...
    verdict: str | None = None     # None: shown; else the tombstone reason
    section: int = NORMAL          # the list this node's children come from
    children: list["SkelNode"] | None = None  # None: not expanded
    more: bool = False             # the list goes on past `children`
    after: tuple[int, int] | None = None  # keyset of the last listed row examined
    consumed: int = 0              # rows of the list passed so far (shown, hidden or head)
    head: tuple[int, ...] = ()     # head ids, in head order; skipped in every listed section
    head_shown: int = 0
    head_from: tuple[int, int, int] = (0, 0, 0)  # head ids per stored section

    @property
    def counts(self) -> tuple[int, int, int]:
        return self.post.replies if self.post is not None else (0, 0, 0)

    def total(self) -> int:
        """Replies in this node's list for this viewer: the stored count of the section, plus
        the head replies promoted from other sections (normal list), or minus the ones promoted
        out of it (a demoted section's list)."""
        if self.section == NORMAL:
            return self.counts[NORMAL] + self.head_from[1] + self.head_from[2]
        return self.counts[self.section] - self.head_from[self.section]


@dataclass(slots=True)
class Skeleton:
    root: SkelNode
    nodes: int = 0
    partial: bool = False
    posts: list[PostRow] = field(default_factory=list)


def _keep(post: PostRow, viewer: Viewer) -> str | None | bool:
    """The verdict for a row, or False when it is hidden and has nothing below to keep."""
    verdict = rules.post_verdict(post, viewer)
    if verdict is not None and sum(post.replies) == 0:
        return False
    return verdict


class _Level:
    """Fills one level's parents from fetched rows, asking for refills where rules hid rows."""

    def __init__(self, spec: ExpandSpec, skel: Skeleton):
        self.spec, self.skel = spec, skel
        self.want: dict[int, int] = {}      # parent id -> items still wanted
        self.nodes: dict[int, SkelNode] = {}

    def limit(self, k: int) -> int:
        return k + 1 + self.spec.overfetch

    def set_head(self, node: SkelNode, head: list[PostRow]) -> None:
        shown = [p for p in head if rules.post_verdict(p, self.spec.viewer) is None]
        node.head = tuple(p.id for p in shown)
        from_ = [0, 0, 0]
        for p in shown:
            from_[p.section] += 1
        node.head_from = (from_[0], from_[1], from_[2])
        self.add_head(node, shown)

    def add_head(self, node: SkelNode, posts: list[PostRow]) -> None:
        for p in posts[:self.want[node.id]]:
            self._child(node, p, None)
            node.head_shown += 1
            node.consumed += 1
            self.want[node.id] -= 1
        node.more = node.head_shown < len(node.head)

    def add_listed(self, node: SkelNode, rows: list[PostRow], limit: int) -> bool:
        """Take rows in order; True when the parent needs a refill."""
        skip = set(node.head)
        for p in rows:
            if p.id in skip:  # shown in the head already: passed over, never counted twice
                node.after = q.keyset(p, self.spec.sort)
                continue
            if self.want[node.id] == 0:
                node.more = True
                return False
            node.after = q.keyset(p, self.spec.sort)
            node.consumed += 1
            verdict = _keep(p, self.spec.viewer)
            if verdict is not False:
                self._child(node, p, verdict)
                self.want[node.id] -= 1
        full = len(rows) >= limit
        if self.want[node.id] == 0:
            node.more = node.more or full
            return False
        node.more = node.more or full
        return full

    def _child(self, node: SkelNode, post: PostRow, verdict: str | None) -> None:
        child = SkelNode(post.id, post, node.level + 1, verdict)
        node.children.append(child)
        self.skel.posts.append(post)


async def expand(db: Database, spec: ExpandSpec, root: SkelNode, *,
                 head_posts: list[PostRow] | None = None) -> Skeleton:
    """Build the skeleton under `root` (whose list, section and keyset position are set) in
    about one round trip per level. `head_posts`: the head replies still to show on a
    continuation page (the view's first page finds them itself)."""
    skel = Skeleton(root)
    budget = spec.max_nodes
    frontier = [root]
    for level in range(1, spec.depth + 1):
        if not frontier or budget <= 0:
            break
        lvl = _Level(spec, skel)
        first, keyed = [], []
        for node in frontier:
            k = min(spec.branching, budget)
            if k <= 0:
                break
            budget -= k
            lvl.want[node.id], lvl.nodes[node.id] = k, node
            node.children = []
            if node is root and head_posts is not None:
                lvl.add_head(node, head_posts)
            (keyed if node.after is not None else first).append(node)
        # The head is looked up on first pages of normal lists: every deeper level, and the
        # root's unless this is a continuation page (its cursor carries the head) or a section.
        with_head = level > 1 or (head_posts is None and root.section == NORMAL)
        if level == 1:
            await _fill(db, spec, lvl, first, keyed, with_head=with_head)
        elif not await _fill_in_time(db, spec, lvl, frontier, first, keyed, with_head):
            skel.partial = True
            break
        for node in frontier:
            if node.id not in lvl.want:
                node.more = node.more or node.total() > node.consumed
            else:
                budget += lvl.want[node.id]  # give back what the rows could not fill
        frontier = [c for n in frontier for c in (n.children or ()) if sum(c.counts) > 0]
    for node in frontier:  # cut by depth, budget or time: reachable through a cursor
        if node.children is None:
            node.more = True
    skel.nodes = len(skel.posts)
    return skel


_SAVED = ("children", "more", "after", "consumed", "head", "head_shown", "head_from")


async def _fill_in_time(db: Database, spec: ExpandSpec, lvl: _Level, frontier: list[SkelNode],
                        first: list[SkelNode], keyed: list[SkelNode], with_head: bool) -> bool:
    """Fill a level below the first within the time budget. False when the budget ran out:
    the level's parents are then left unexpanded, with cursors for their replies."""
    remaining = None if spec.deadline is None else spec.deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        _unexpand(frontier, {})
        return False
    saved = {id(n): tuple(getattr(n, a) for a in _SAVED) for n in frontier}
    try:
        await asyncio.wait_for(_fill(db, spec, lvl, first, keyed, with_head=with_head),
                               remaining)
    except asyncio.TimeoutError:
        _unexpand(frontier, saved)
        return False
    return True


def _unexpand(frontier: list[SkelNode], saved: dict) -> None:
    for node in frontier:
        for name, value in zip(_SAVED, saved.get(id(node), ())):
            setattr(node, name, value)
        node.children, node.more = None, True


async def _level(db: Database, spec: ExpandSpec, fetches, section: int, head) -> dict:
    """One level query; score-ordered ones go through the ranking breaker."""
    if spec.sort != "ranked" or spec.ranking is None:
        return await q.level(db, spec.conversation_id, fetches, spec.sort, section, head)
    try:
        spec.ranking.before()
    except BreakerOpen as e:
        raise RankingUnavailable(str(e)) from e
    try:
        if spec.ranking_fault is not None:
            raise spec.ranking_fault
        rows = await q.level(db, spec.conversation_id, fetches, spec.sort, section, head)
    except DATABASE_ERRORS as e:
        spec.ranking.failure()
        raise RankingUnavailable(f"{type(e).__name__}: {e}") from e
    except BaseException:
        # cancelled, or a bug: says nothing of the dependency, but a probe must not stay
        # marked as running, or a half-open breaker would never let another through
        spec.ranking.release()
        raise
    spec.ranking.success()
    return rows


def chronological(spec: ExpandSpec) -> ExpandSpec:
    """The same view ordered oldest first: what is shown when ranking is unavailable."""
    return replace(spec, sort="oldest")


async def _fill(db: Database, spec: ExpandSpec, lvl: _Level, first: list[SkelNode],
                keyed: list[SkelNode], *, with_head: bool) -> None:
    """Fetch and take this level's rows: first pages (with the head) and keyed pages in one
    round trip each, then refill short parents from where they stopped."""
    head = q.Head(tuple(sorted(spec.viewer.follows)), spec.focal_author, spec.viewer.id,
                  all_sections=spec.sort == "ranked", limit=spec.head_limit,
                  window=spec.head_window) if with_head else None
    rounds = 0
    while first or keyed:
        refill: list[SkelNode] = []
        for group, use_head in ((first, head), (keyed, None)):
            by_section: dict[int, list[SkelNode]] = {}
            for node in group:
                by_section.setdefault(node.section, []).append(node)
            for section, nodes in by_section.items():
                fetches = [q.Fetch(n.id, lvl.limit(lvl.want[n.id]), n.after) for n in nodes]
                rows = await _level(db, spec, fetches, section,
                                    use_head if section == NORMAL else None)
                for node, fetch in zip(nodes, fetches):
                    got = rows[node.id]
                    if use_head is not None and section == NORMAL:
                        lvl.set_head(node, got.head)
                    if lvl.add_listed(node, got.listed, fetch.limit):
                        refill.append(node)
        rounds += 1
        if rounds > spec.refill_rounds:
            for node in refill:
                node.more = True
            return
        first, keyed = [], [n for n in refill if n.after is not None]
