"""`arbor repair`: find and fix rows that disagree with the write path's rules, in small
transactions, safe while the service runs.

Three passes over the tables, each walking by keyset (`WHERE id > $last ORDER BY id LIMIT
$chunk`), so no statement reads more than one chunk of posts and no lock is held longer than
one chunk's fix:

1. **conversation**: a reply whose conversation_id or depth is not its parent's (a root's is
   its own id and 0), or whose post_counts.conversation_id is not its post's. Parents are fixed
   before their children within a chunk, and ids grow from parent to child, so one walk fixes a
   whole broken subtree; when a child's id is smaller than its parent's (posts imported from
   another system) the walk is repeated while it still fixes something. A moved reply's section is
   recomputed (section_updates.recompute, which moves its parent's counter exactly): the
   section rules read the conversation. Replies whose parent is not in posts at all
   (`orphans`) are reported, not fixed.
2. **pending**: replies waiting in pending_posts although their parent has arrived (an
   arrival with more than ingestion.MAX_ATTACH replies below it, or data written around the
   ingestion path); attached with ingestion.attach_pending, which takes the same locks as an
   import (storage/ingestion.py) in transactions of its own.
3. **listed** and **counters**: a post's `listed` flag against its rule (not deleted, or has
   listed replies), and its post_counts row (listed direct replies per section; quotes by
   posts an anonymous viewer can see, counter_writes.QUOTES_OF) against a recount. Found with
   one lock-free statement per chunk: stored counters and the recount are read in the same
   snapshot, and every write keeps its child row and its parent's counter in one transaction,
   so a committed snapshot only disagrees where there is real drift. The drifted posts are then
   fixed in one transaction: their post_counts rows are locked first (FOR UPDATE, descending
   id, the bottom-up order of the write path), and only then recounted, in a later statement
   whose fresh snapshot sees every write that committed before the lock was granted, while a
   writer that has inserted a child but not yet updated the counter waits on the lock and
   increments after the fix; every write path changes a post's `listed` flag only while it
   holds that post's counter row, so the flag is protected by the same lock. A `listed` flag
   that changes also changes its parent's counter (and maybe the parent's flag): the parent is
   settled the same way (in the same transaction when it is in the same chunk, else once
   after the walk, with every other such parent, a chunk per transaction), up the chain.

A chunk's fix that hits a deadlock, a serialization failure, the lock timeout or the statement
timeout is retried once; a chunk that fails twice is counted in `failed_chunks` and the walk
goes on (a second run picks it up). One repair runs at a time (a session advisory lock). Idempotent: on a
consistent database every `found` is 0, and a second run after a repair finds nothing
(unless writes raced it: those are caught by the next run).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import asyncpg

from . import ingestion, section_updates
from .counter_writes import QUOTES_OF
from .db import CountedConnection, Database
from .ids import MAX_ID

log = logging.getLogger("arbor.repair")

DEFAULT_CHUNK = 500
MAX_PASSES = 20           # walks of pass 1 (and of pass 2) before giving up on a fixpoint
LOCK_TIMEOUT = "5s"       # a fix waits this long for a row lock, then the chunk is retried
EXAMPLES = 20             # ids per kind kept in the report
KINDS = ("conversation", "orphans", "pending", "listed", "counters")

_REPAIR_LOCK = (0x41525250, 1)   # session advisory lock ("ARRP"): one repair at a time
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError,
              asyncpg.exceptions.SerializationError,
              asyncpg.exceptions.LockNotAvailableError,
              asyncpg.exceptions.QueryCanceledError)    # statement_timeout


class RepairRunning(RuntimeError):
    """Another repair holds the repair lock."""


# -- pass 1: conversation and depth ---------------------------------------------------------

_PLACES = """
    SELECT c.id, c.in_reply_to_id, c.conversation_id, c.depth,
           p.id IS NOT NULL AS parent_exists, p.conversation_id AS parent_conversation,
           p.depth AS parent_depth, pc.conversation_id AS counts_conversation
    FROM (SELECT id, in_reply_to_id, conversation_id, depth FROM posts
          WHERE id > $1 AND id <= $3 ORDER BY id LIMIT $2) c
    LEFT JOIN posts p ON p.id = c.in_reply_to_id
    LEFT JOIN post_counts pc ON pc.post_id = c.id
    ORDER BY c.id"""

_FIX_PLACES = """
    UPDATE posts p SET conversation_id = f.conversation_id, depth = f.depth
    FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS f (id, conversation_id, depth)
    WHERE p.id = f.id AND (p.conversation_id, p.depth) <> (f.conversation_id, f.depth)
    RETURNING p.id, p.in_reply_to_id IS NOT NULL AS is_reply"""

_FIX_COUNTS_CONVERSATION = """
    UPDATE post_counts pc SET conversation_id = p.conversation_id
    FROM posts p
    WHERE pc.post_id = ANY($1::bigint[]) AND p.id = pc.post_id
      AND pc.conversation_id <> p.conversation_id
    RETURNING pc.post_id"""

# -- pass 2: pending replies whose parent arrived -------------------------------------------

_PENDING = """
    SELECT pp.id, pp.in_reply_to_id,
           EXISTS (SELECT 1 FROM posts p WHERE p.id = pp.in_reply_to_id) AS parent_arrived
    FROM pending_posts pp WHERE pp.id > $1 AND pp.id <= $3 ORDER BY pp.id LIMIT $2"""

# -- pass 3: listed flags and counters -------------------------------------------------------

# The recount of one post `c` (a row with id, conversation_id, deleted_at): listed direct replies
# per section through the children index (conversation_id, in_reply_to_id, section, id) WHERE
# listed, and visible quotes through posts_quotes.
_RECOUNT = """
    (SELECT count(*) FILTER (WHERE ch.section = 0) AS normal,
            count(*) FILTER (WHERE ch.section = 1) AS low_quality,
            count(*) FILTER (WHERE ch.section = 2) AS offensive
     FROM posts ch
     WHERE ch.conversation_id = c.conversation_id AND ch.in_reply_to_id = c.id AND ch.listed
       AND ch.in_reply_to_id IS NOT NULL) r
    CROSS JOIN LATERAL (""" + QUOTES_OF.replace("$1", "c.id") + """) qc (quotes)"""

# One chunk, checked in one snapshot without locks: every post whose flag or counters differ,
# and the chunk's last post (for the keyset and the number scanned).
_CHECK = """
    SELECT * FROM (
        SELECT c.id, c.depth, c.listed,
               (c.deleted_at IS NULL OR r.normal + r.low_quality + r.offensive > 0) AS should_list,
               pc.post_id IS NULL AS counts_missing,
               (pc.replies_normal, pc.replies_low_quality, pc.replies_offensive, pc.quotes)
                   IS DISTINCT FROM (r.normal::int, r.low_quality::int, r.offensive::int,
                                     qc.quotes::int) AS miscounted,
               max(c.id) OVER () AS last_id, count(*) OVER () AS scanned
        FROM (SELECT id, conversation_id, deleted_at, listed, depth FROM posts
              WHERE id > $1 AND id <= $3 ORDER BY id LIMIT $2) c
        CROSS JOIN LATERAL """ + _RECOUNT + """
        LEFT JOIN post_counts pc ON pc.post_id = c.id) s
    WHERE listed <> should_list OR miscounted OR id = last_id"""

_LOCK_COUNTS = """
    SELECT post_id FROM post_counts WHERE post_id = ANY($1::bigint[])
    ORDER BY post_id DESC FOR UPDATE"""

_INSERT_MISSING_COUNTS = """
    INSERT INTO post_counts (post_id, conversation_id)
    SELECT id, conversation_id FROM posts WHERE id = ANY($1::bigint[])
    ON CONFLICT (post_id) DO NOTHING
    RETURNING post_id"""

_FIX_LISTED = """
    UPDATE posts p SET listed = NOT p.listed
    WHERE p.id = ANY($1::bigint[])
      AND p.listed <> (p.deleted_at IS NULL OR EXISTS (
              SELECT 1 FROM posts ch
              WHERE ch.conversation_id = p.conversation_id AND ch.in_reply_to_id = p.id
                AND ch.listed AND ch.in_reply_to_id IS NOT NULL))
    RETURNING p.id, p.in_reply_to_id"""

_FIX_COUNTS = """
    UPDATE post_counts pc
    SET replies_normal = f.normal, replies_low_quality = f.low_quality,
        replies_offensive = f.offensive, quotes = f.quotes
    FROM (SELECT c.id, r.normal::int, r.low_quality::int, r.offensive::int, qc.quotes::int
          FROM posts c CROSS JOIN LATERAL """ + _RECOUNT + """
          WHERE c.id = ANY($1::bigint[])) f
    WHERE pc.post_id = f.id
      AND (pc.replies_normal, pc.replies_low_quality, pc.replies_offensive, pc.quotes)
          <> (f.normal, f.low_quality, f.offensive, f.quotes)
    RETURNING pc.post_id"""


class _Report:
    def __init__(self, chunk: int, dry_run: bool, examples: int, id_range: tuple[int, int]):
        self.chunk, self.dry_run, self.max_examples = chunk, dry_run, examples
        self.after, self.up_to = id_range[0] - 1, id_range[1]
        self.found = dict.fromkeys(KINDS, 0)
        self.fixed = dict.fromkeys(KINDS, 0)
        self.examples: dict[str, list[int]] = {k: [] for k in KINDS}
        self.posts_scanned = 0
        self.pending_scanned = 0
        self.passes = {"conversation": 0, "pending": 0, "counters": 0}
        self.retries = 0
        self.failed_chunks = 0
        self.seconds: dict[str, float] = {}

    def find(self, kind: str, ids: list[int]) -> None:
        self.found[kind] += len(ids)
        room = self.max_examples - len(self.examples[kind])
        if room > 0:
            self.examples[kind].extend(i for i in ids[:room] if i not in self.examples[kind])

    def as_dict(self, seconds: float) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "chunk": self.chunk,
            "posts_scanned": self.posts_scanned,
            "pending_scanned": self.pending_scanned,
            "seconds": round(seconds, 3),
            "posts_per_second": round(self.posts_scanned / seconds) if seconds > 0 else None,
            **{kind: {"found": self.found[kind], "fixed": self.fixed[kind],
                      "examples": [str(i) for i in self.examples[kind]]} for kind in KINDS},
            "passes": self.passes,
            "pass_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "retries": self.retries,
            "failed_chunks": self.failed_chunks,
        }


async def repair(db: Database, *, chunk: int = DEFAULT_CHUNK, dry_run: bool = False,
                 id_range: tuple[int, int] = (0, MAX_ID), examples: int = EXAMPLES,
                 wait_for_lock: bool = False) -> dict[str, Any]:
    """Run the three passes over the whole database, or over the posts (and pending replies)
    whose ids are in id_range (inclusive; their parents and children are read wherever they
    are); returns the report (see _Report.as_dict), with up to `examples` ids per kind.
    Raises RepairRunning when another repair is running (unless wait_for_lock)."""
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    report = _Report(chunk, dry_run, examples, id_range)
    started = time.perf_counter()
    async with db.connection() as holder:
        if wait_for_lock:
            await holder.execute("SELECT pg_advisory_lock($1, $2)", *_REPAIR_LOCK)
        elif not await holder.fetchval("SELECT pg_try_advisory_lock($1, $2)", *_REPAIR_LOCK):
            raise RepairRunning("another repair is running")
        try:
            for name, run in (("conversation", _pass_conversation), ("pending", _pass_pending),
                              ("counters", _pass_counters)):
                t0 = time.perf_counter()
                await run(db, report)
                report.seconds[name] = time.perf_counter() - t0
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1, $2)", *_REPAIR_LOCK)
    result = report.as_dict(time.perf_counter() - started)
    log.info("repair: %s", {k: result[k] for k in KINDS})
    return result


async def _in_transaction(db: Database, report: _Report,
                          fix: Callable[[CountedConnection], Awaitable[Any]]) -> Any:
    """fix(tx) in a short transaction, retried once on a deadlock, a serialization failure, the
    lock timeout or the statement timeout. Returns None (and counts a failed chunk) when the retry fails too."""
    for attempt in (1, 2):
        try:
            async with db.transaction() as tx:
                await tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                return await fix(tx)
        except _RETRYABLE as e:
            if attempt == 1:
                report.retries += 1
                log.info("repair: retrying a chunk after %s", type(e).__name__)
                continue
            report.failed_chunks += 1
            log.warning("repair: a chunk failed twice (%s); the next run will pick it up", e)
            return None


# -- pass 1 ----------------------------------------------------------------------------------

def _corrections(rows: list[asyncpg.Record]) -> tuple[dict[int, tuple[int, int]], list[int],
                                                      list[int], bool]:
    """Where each post of the chunk belongs: {id: (conversation_id, depth)} for the posts whose
    stored place is wrong; the orphans; the posts whose counter row names another
    conversation; and whether some child's id is smaller than its parent's. A parent in the
    same chunk is placed before its children, whatever their ids."""
    by_id = {r["id"]: r for r in rows}
    place: dict[int, tuple[int, int]] = {}          # the right place of each row of the chunk
    orphans: list[int] = []
    backward = False
    for r in rows:
        path, on_path = [], set()                   # r, then its ancestors in the chunk not placed yet
        while r["id"] not in place:
            path.append(r)
            on_path.add(r["id"])
            parent = by_id.get(r["in_reply_to_id"])
            if parent is None or parent["id"] in place or parent["id"] in on_path:
                break
            r = parent
        for r in reversed(path):
            parent_id = r["in_reply_to_id"]
            if parent_id is None:
                place[r["id"]] = (r["id"], 0)
                continue
            if parent_id in place:
                conversation, depth = place[parent_id]
                place[r["id"]] = (conversation, depth + 1)
            elif r["parent_exists"] and parent_id not in by_id:
                place[r["id"]] = (r["parent_conversation"], r["parent_depth"] + 1)
                # the parent's chunk comes later in the walk: if it is fixed there, this
                # reply is fixed by the next walk
                backward = backward or parent_id > r["id"]
            else:                                   # no parent, or a cycle: leave it
                if not r["parent_exists"]:
                    orphans.append(r["id"])
                place[r["id"]] = (r["conversation_id"], r["depth"])
    wrong = {r["id"]: place[r["id"]] for r in rows
             if place[r["id"]] != (r["conversation_id"], r["depth"])}
    counts_wrong = [r["id"] for r in rows if r["counts_conversation"] is not None
                    and r["counts_conversation"] != place[r["id"]][0]]
    return wrong, sorted(orphans), counts_wrong, backward


async def _pass_conversation(db: Database, report: _Report) -> None:
    for _ in range(MAX_PASSES):
        report.passes["conversation"] += 1
        fixed_this_walk, backward_seen, last = 0, False, report.after
        while True:
            rows = await db.fetch(_PLACES, last, report.chunk, report.up_to)
            if not rows:
                break
            last = rows[-1]["id"]
            wrong, orphans, counts_wrong, backward = _corrections(rows)
            backward_seen = backward_seen or backward
            if report.passes["conversation"] == 1:
                report.find("orphans", orphans)
            bad = sorted(set(wrong) | set(counts_wrong))
            report.find("conversation", bad)
            if not bad or report.dry_run:
                continue

            async def fix(tx: CountedConnection, wrong=wrong, bad=bad) -> int:
                ids = list(wrong)
                moved = await tx.fetch(_FIX_PLACES, ids, [wrong[i][0] for i in ids],
                                       [wrong[i][1] for i in ids])
                counted = await tx.fetch(_FIX_COUNTS_CONVERSATION, bad)
                # The section rules read the conversation (its author, duplicates, who
                # took part): recompute the moved replies' sections, moving counters exactly.
                await section_updates.recompute(tx, [r["id"] for r in moved if r["is_reply"]])
                return len({r["id"] for r in moved} | {r["post_id"] for r in counted})

            done = await _in_transaction(db, report, fix)
            if done:
                report.fixed["conversation"] += done
                fixed_this_walk += done
        # A walk fixes a subtree top-down in id order; children with smaller ids than their
        # parent need another walk once the parent is fixed.
        if report.dry_run or not fixed_this_walk or not backward_seen:
            return
    log.warning("repair: conversation pass did not settle in %d walks", MAX_PASSES)


# -- pass 2 ----------------------------------------------------------------------------------

async def _pass_pending(db: Database, report: _Report) -> None:
    for _ in range(MAX_PASSES):
        report.passes["pending"] += 1
        truncated, last = False, report.after
        while True:
            rows = await db.fetch(_PENDING, last, report.chunk, report.up_to)
            if not rows:
                break
            last = rows[-1]["id"]
            if report.passes["pending"] == 1:
                report.pending_scanned += len(rows)
            arrived = [r for r in rows if r["parent_arrived"]]
            report.find("pending", [r["id"] for r in arrived])
            if report.dry_run:
                continue
            parents = sorted({r["in_reply_to_id"] for r in arrived})
            if not parents:
                continue
            try:
                attached = await ingestion.attach_pending(db, parents, limit=report.chunk)
            except _RETRYABLE as e:
                report.failed_chunks += 1
                log.warning("repair: attaching below %d posts failed (%s); the next run will "
                            "pick them up", len(parents), e)
                continue
            report.fixed["pending"] += attached
            # attach_pending stops at the limit, perhaps between levels: the rest waits
            # under parents that now exist, for the next walk.
            truncated = truncated or attached >= report.chunk
        if not truncated:
            return
    log.warning("repair: pending pass did not settle in %d walks", MAX_PASSES)


# -- pass 3 ----------------------------------------------------------------------------------

async def _pass_counters(db: Database, report: _Report) -> None:
    report.passes["counters"] += 1
    last = report.after
    later: dict[int, int] = {}       # parents to settle once the walk is over: {id: depth}
    while True:
        rows = await db.fetch(_CHECK, last, report.chunk, report.up_to)
        if not rows:
            break
        last = rows[-1]["last_id"]
        report.posts_scanned += rows[-1]["scanned"]
        unlisted = [r for r in rows if r["listed"] != r["should_list"]]
        miscounted = [r for r in rows if r["miscounted"]]
        report.find("listed", [r["id"] for r in unlisted])
        report.find("counters", [r["id"] for r in miscounted])
        if report.dry_run or not (unlisted or miscounted):
            continue
        posts = [(r["id"], r["depth"]) for r in rows
                 if r["listed"] != r["should_list"] or r["miscounted"]]
        missing = [r["id"] for r in miscounted if r["counts_missing"]]
        await _settle_chunk(db, report, posts, missing, later)
    # A flag fixed above changed its parent's count (and maybe the parent's flag): settle each
    # such parent once, by recount, deepest first and up the chain, a chunk per transaction.
    # Once, not per chunk: the replies of a post with a million replies span 2,000 chunks.
    while later:
        due = sorted(later.items(), key=lambda item: (-item[1], item[0]))
        later = {}
        for start in range(0, len(due), report.chunk):
            await _settle_chunk(db, report, due[start:start + report.chunk], [], later)


async def _settle_chunk(db: Database, report: _Report, posts: list[tuple[int, int]],
                        missing: list[int], later: dict[int, int]) -> None:
    async def fix(tx: CountedConnection) -> Settled:
        return await settle(tx, posts, missing)

    done = await _in_transaction(db, report, fix)
    if done:
        report.fixed["listed"] += len(done.flags)
        report.fixed["counters"] += len(done.counters)
        later.update(done.parents)


@dataclass
class Settled:
    flags: set[int] = field(default_factory=set)        # posts whose listed flag was fixed
    counters: set[int] = field(default_factory=set)     # posts whose counter row was fixed
    parents: dict[int, int] = field(default_factory=dict)  # {id: depth} left to settle


async def settle(tx: CountedConnection, posts: list[tuple[int, int]],
                 missing: list[int] = ()) -> Settled:
    """Make these posts' (id, depth) listed flags and counters equal a recount, in the caller's
    transaction, deepest first, locking each level's counter rows before counting it (see the
    module docstring). A fixed flag changes its parent's count: a parent among these posts is
    recounted after it; the others are returned in `parents`, for the caller to settle."""
    done = Settled()
    if missing:
        done.counters.update(r["post_id"] for r in await tx.fetch(_INSERT_MISSING_COUNTS,
                                                                   list(missing)))
    levels: dict[int, set[int]] = {}
    for post_id, depth in posts:
        levels.setdefault(depth, set()).add(post_id)
    here = {post_id for post_id, _ in posts}
    while levels:
        depth = max(levels)
        ids = sorted(levels.pop(depth), reverse=True)
        await tx.fetch(_LOCK_COUNTS, ids)
        changed = await tx.fetch(_FIX_LISTED, ids)
        counted = await tx.fetch(_FIX_COUNTS, ids)
        done.flags.update(r["id"] for r in changed)
        done.counters.update(r["post_id"] for r in counted)
        for r in changed:
            parent = r["in_reply_to_id"]
            if parent is None:
                continue
            if parent in here:
                levels.setdefault(depth - 1, set()).add(parent)   # already due, maybe again
            else:
                done.parents[parent] = depth - 1
    return done
