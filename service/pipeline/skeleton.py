"""The skeleton stage: which replies a view shows, level by level, for one viewer.

Breadth-first in display order: the node budget (max_nodes) goes to a level's parents in the
order they are shown, each up to `branching` replies, and the levels below get what is left.
Every level is one round trip that fetches, for all of that level's parents at once, a keyset
page of their replies as whole posts (and on first pages the "head": replies by the focal
author, the viewer and the accounts the viewer follows, which rank first and are never
demoted). Each parent's page is sized from its stored counters (no more rows than its list
holds, no more than the budget left), so rows per level stay within max_nodes plus a few per
parent (1 + `overfetch` + the head). The viewer's visibility rules run here, before limiting,
so that a page holds `branching` visible replies when that many exist; when the rules hide
rows, the short parents are refilled from where they stopped and the budget they left goes
to the parents not reached yet, a bounded number of rounds (at most two queries each).
Whatever is cut gets a keyset position for a cursor, and what the render read past a cut
tells the count on it (exact when the rest was read to its end).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import KW_ONLY, dataclass, field, replace
from operator import attrgetter

from storage import thread_queries as q
from storage.db import Database
from storage.rows import PostRow, Viewer

from service.resilience.breakers import BreakerOpen, CircuitBreaker
from service.resilience.failures import DATABASE_ERRORS

from . import visibility_rules as rules

NORMAL = 0


@dataclass(frozen=True, kw_only=True)
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
    ranking_fault: BaseException | None = None  # injected by tests (service/resilience/faults.py)


class RankingUnavailable(Exception):
    """Score-ordered lookups failed or their breaker is open: render chronologically."""


@dataclass(slots=True, eq=False)
class SkelNode:
    id: int
    post: PostRow | None
    level: int                     # 0 for the view's root, 1 for its replies, ...
    _: KW_ONLY                     # the rest by name (three call sites)
    verdict: str | None = None     # None: shown; else the tombstone reason
    section: int = NORMAL          # the list this node's children come from
    children: list["SkelNode"] | None = None  # None: not expanded
    more: bool = False             # the list goes on past `children`
    after: tuple[int, int] | None = None  # keyset of the last listed row examined
    consumed: int = 0              # rows of the list passed so far (shown, hidden or head)
    head: tuple[int, ...] = ()     # head ids, in head order; skipped in every listed section
    head_shown: int = 0
    head_from: tuple[int, int, int] = (0, 0, 0)  # head ids per stored section
    rest_known: int | None = None  # items the rest of the list holds, when it was read to its end
    rest_dropped: int = 0          # rows read past the cut that the rules hide with nothing below

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

    def rest(self) -> tuple[int, bool]:
        """What the `more` cursor reaches: (count, exact). Exact when this render read the rest
        of the list to its end; otherwise an upper bound from the counters (the replies the
        viewer's rules hide in the unread rest are still in it: knowing them would mean
        reading the whole list)."""
        if self.rest_known is not None:
            return self.rest_known, True
        return max(1, self.total() - self.consumed - self.rest_dropped), False

    def cut(self) -> None:
        """Left unexpanded (depth, budget or time): the list goes on if its counters say so."""
        self.children, self.rest_known, self.rest_dropped = None, None, 0
        self.more = self.total() > self.consumed


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
    """Fills one level's parents from fetched rows, in display order, from one node budget."""

    def __init__(self, spec: ExpandSpec, skel: Skeleton, budget: int):
        self.spec, self.skel = spec, skel
        self.budget = budget                # nodes the level may still take
        self.want: dict[int, int] = {}      # parent id -> items its branching still allows

    def open(self, node: SkelNode) -> None:
        """The node's list is read at this level."""
        if node.children is None:
            node.children = []
            self.want[node.id] = self.spec.branching

    def room(self, node: SkelNode) -> bool:
        return self.want[node.id] > 0 and self.budget > 0

    def reserve(self, node: SkelNode, budget: int) -> int:
        """Replies to fetch for the node: what its branching and the budget allow, and no more
        than its counters say its list still holds (head replies from demoted sections come
        on top, from the head lookup)."""
        return max(0, min(self.want[node.id], budget, node.total() - node.consumed))

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
        for p in posts:
            if not self.room(node):
                break
            self._child(node, p, None)
            node.head_shown += 1
            node.consumed += 1
        node.more = node.head_shown < len(node.head)

    def add_listed(self, node: SkelNode, rows: list[PostRow], limit: int) -> bool:
        """Take rows in order while the node has room; True when it needs a refill. Rows read
        past the cut are only classified, for the count on the cursor."""
        skip = set(node.head)
        taking = True
        visible = dropped = unsure = 0
        viewer, want = self.spec.viewer, self.want
        last = None  # the last row examined while taking: the keyset position after it
        for p in rows:
            if p.id in skip:  # shown in the head already: passed over, never counted twice
                if taking:
                    last = p
                continue
            verdict = _keep(p, viewer)
            if taking and (want[node.id] <= 0 or self.budget <= 0):  # no room (room())
                taking = False
            if not taking:
                if verdict is None:
                    visible += 1
                elif verdict is False:
                    dropped += 1
                else:  # a tombstone shows or not depending on what is below it
                    unsure += 1
                continue
            last = p
            node.consumed += 1
            if verdict is not False:
                self._child(node, p, verdict)
        if last is not None:
            node.after = q.keyset(last, self.spec.sort)
        head_left = len(node.head) - node.head_shown
        node.rest_dropped = dropped
        if len(rows) < limit:  # the list ended within these rows: its rest is known
            node.rest_known = head_left + visible if not unsure else None
            node.more = head_left + visible + unsure > 0
            return False
        node.rest_known = None
        if taking and self.room(node):
            # Short: read on, unless the counters say only head replies (skipped) are left.
            if node.total() - node.consumed > 0:
                return True
            node.more = False
            return False
        # Rows may go on past these; when none of these was left over and the counters say
        # the list is spent, the ones past them are head replies already shown.
        node.more = bool(head_left or visible or unsure) or \
            node.total() - node.consumed - dropped > 0
        return False

    def _child(self, node: SkelNode, post: PostRow, verdict: str | None) -> None:
        child = SkelNode(post.id, post, node.level + 1, verdict=verdict)
        node.children.append(child)
        self.want[node.id] -= 1
        self.budget -= 1
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
        lvl = _Level(spec, skel, budget)
        if level == 1 and head_posts is not None:  # a continuation page: the head left to show comes first
            lvl.open(root)
            lvl.add_head(root, head_posts)
        # The head is looked up on first pages of normal lists: every deeper level, and the
        # root's unless this is a continuation page (its cursor carries the head) or a section.
        with_head = level > 1 or (head_posts is None and root.section == NORMAL)
        if level == 1:
            await _fill(db, spec, lvl, frontier, with_head=with_head)
        elif not await _fill_in_time(db, spec, lvl, frontier, with_head):
            skel.partial = True
            break
        budget = lvl.budget
        for node in frontier:
            if node.children is None:  # the budget ran out before its turn
                node.cut()
        frontier = [c for n in frontier for c in (n.children or ()) if sum(c.counts) > 0]
    for node in frontier:  # cut by depth, budget or time: reachable through a cursor
        if node.children is None:
            node.cut()
    skel.nodes = len(skel.posts)
    return skel


_SAVED = ("children", "more", "after", "consumed", "head", "head_shown", "head_from",
          "rest_known", "rest_dropped")
_save = attrgetter(*_SAVED)  # one C call per frontier node (a genexpr of getattr cost 5x)


async def _fill_in_time(db: Database, spec: ExpandSpec, lvl: _Level, frontier: list[SkelNode],
                        with_head: bool) -> bool:
    """Fill a level below the first within the time budget. False when the budget ran out:
    the level's parents are then left unexpanded, with cursors for their replies."""
    remaining = None if spec.deadline is None else spec.deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        _unexpand(frontier, {})
        return False
    saved = {id(n): _save(n) for n in frontier}
    posts = len(lvl.skel.posts)
    try:
        # asyncio.timeout, not wait_for: no task created per level
        async with asyncio.timeout(remaining):
            await _fill(db, spec, lvl, frontier, with_head=with_head)
    except TimeoutError:
        del lvl.skel.posts[posts:]  # what the cut level took is not shown
        _unexpand(frontier, saved)
        return False
    return True


def _unexpand(frontier: list[SkelNode], saved: dict) -> None:
    for node in frontier:
        for name, value in zip(_SAVED, saved.get(id(node), ())):
            setattr(node, name, value)
        node.cut()


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


async def _fill(db: Database, spec: ExpandSpec, lvl: _Level, parents: list[SkelNode], *,
                with_head: bool) -> None:
    """Fetch and take this level's rows for `parents` (in display order) until the budget is
    spent: each round reserves the budget in display order and fetches first pages (with the
    head) and keyed pages in one round trip each; later rounds refill the parents the rules
    left short and reach the parents the budget had not reached. A parent never reached
    stays unexpanded (children None)."""
    head = q.Head(tuple(sorted(spec.viewer.follows)), spec.focal_author, spec.viewer.id,
                  all_sections=spec.sort == "ranked", limit=spec.head_limit,
                  window=spec.head_window) if with_head else None
    waiting = list(parents)
    for _ in range(1 + spec.refill_rounds):
        budget, batch = lvl.budget, []
        for node in waiting:
            if budget <= 0:
                break
            lvl.open(node)
            k = lvl.reserve(node, budget)
            budget -= k
            batch.append((node, q.Fetch(node.id, lvl.limit(k), node.after)))
        if not batch:
            return
        got: dict[int, tuple[q.LevelRows, bool]] = {}
        for keyed in (False, True):
            by_section: dict[int, list[q.Fetch]] = {}
            for node, fetch in batch:
                if (fetch.after is not None) == keyed:
                    by_section.setdefault(node.section, []).append(fetch)
            for section, fetches in by_section.items():
                use_head = head if section == NORMAL and not keyed else None
                rows = await _level(db, spec, fetches, section, use_head)
                for fetch in fetches:
                    got[fetch.parent] = (rows[fetch.parent], use_head is not None)
        refill = set()
        for node, fetch in batch:  # taken in display order, from one budget
            rows, headed = got[node.id]
            if headed:
                lvl.set_head(node, rows.head)
            if lvl.add_listed(node, rows.listed, fetch.limit):
                refill.add(node.id)
        reached = {node.id for node, _ in batch}
        waiting = [n for n in waiting if n.id in refill or n.id not in reached]
        if not waiting or lvl.budget <= 0:
            break
    for node in waiting:
        if node.id in refill:
            node.more = True  # refills ran out: the cursor continues from the last row read
