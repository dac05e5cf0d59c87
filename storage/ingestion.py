"""Posts from another system, with their own ids, authors and timestamps, in any order.

A post whose parent is in posts goes through the normal write path (counters, sections); then
the replies waiting for it, and theirs, are attached the same way, parents before children. A
reply whose parent is not in posts waits, whole, in pending_posts (shown nowhere). A post sent
again is a "duplicate" and changes nothing.

Guarantees, with any number of imports in flight at once, in any arrival order: once the
imports have returned, no reply waits whose parent is in posts (no lost wake-up; unless one
arrival had more than MAX_ATTACH replies waiting below it: `arbor repair` attaches the rest),
and every row (place, counters, quote counters, listed flags, sections) is what importing the
same posts one at a time in id order gives.

Locks (storage/write_locks.py: transaction-scoped advisory locks, keyed by post id exactly),
taken exclusively by imports:
  A(x)  the arrival of post x (key x): held by every transaction that puts x into posts or
        pending_posts or moves it from one to the other, that lets a reply of x wait because
        x is not in posts, or that writes a quote of x while x is not in posts;
  C(c)  the rows of conversation c (key -c): held by every transaction that writes a row of
        c: a post of c, its counters, listed flag or section, the quote counter of a post of
        c. The normal write path holds, shared, the C keys of the rows it writes
        (storage/post_writes.py).
An arriving post P takes A(P), and either A(parent) (the parent is not in posts: P will wait
and write nothing else) or C(P's conversation), plus, for a quote, C(the quoted post's
conversation) if that post is in posts, else A(quoted) (arrival_keys). A reply moved out of
pending_posts takes the same (its parent is then in posts). A post in posts stays there, so
no lock is needed to rely on that.

Order (why no deadlock). A transaction takes the keys it waits for in one statement, in
ascending order, before any row lock; any key it takes later is only tried
(pg_try_advisory_xact_lock, which never waits): when a try fails, what was not written is
rolled back and run again waiting for the keys, what was written is committed and the rest
goes on in a new transaction. So a transaction waiting for an advisory lock holds nothing but
advisory locks on smaller keys, and no cycle of waits goes through an advisory lock. Nor
through row locks between imports, or between an import and a normal write: every row an
import writes is in a conversation whose C key it holds exclusively (a pending_posts row:
under its post's A key), and a normal write holds the C keys of the rows it writes, so two of
them never want the same row at once. Writers outside this discipline (label, relation and
account changes, repair's counter fixes) take row locks without these keys; a cycle with one
of them is broken by PostgreSQL, and the import's transaction, rolled back whole, runs again
(at most DEADLOCK_RETRIES times). That retry is not what makes imports exact.

Visibility (why no lost wake-up under READ COMMITTED). Locks are released only after the
holder's commit is visible, and every statement reads a fresh snapshot: a statement run after
a key is granted sees everything that key's earlier holders committed. The read that chose
the keys is repeated once they are held, and a parent or quoted post that arrived in between
sends the transaction back for the keys it now needs. Then:
  * wake-up: a reply waits only if, holding A(parent), it saw the parent absent from posts; a
    post enters posts only in a transaction holding its A key, which afterwards, in a later
    statement, reads the replies waiting for it. Either the waiting reply committed before
    that transaction got the key, and the later statement sees it, or it got the key after
    that commit, saw the parent in posts and was imported. So once a post is in posts, the set
    of replies waiting for it is final, and the walk below it reads it whole.
  * quotes: a post entering posts counts the quoting posts already in posts, holding A(x); a
    quote entering posts (or deleted) while x is not in posts holds A(x) too, and one that
    finds x in posts moves its counter under C. Either way one of the two sees the other.
  * sections: what a reply's section reads and imports change (the conversation's
    participants, its live same-text replies) is in the conversation, so every change and
    every read of it are serialized by C(c); when an earlier same-text reply arrives or is
    deleted, the later ones are recomputed in the same transaction (storage/post_writes.py).

Cost: an arrival makes 2 statements before its writes (a read that tries the keys, a check);
when a key is busy, a rollback and 2 more (wait for the keys, check). The walk below goes on in
the arriving transaction while the keys are free, then in transactions that wait for them, at
most ATTACH_PER_TRANSACTION posts per transaction (so a conversation's key is never held for
long); it reads waiting replies per parent (index pending_posts_parent), never all pending rows.
Imports into one conversation run one at a time; imports into different conversations run
side by side.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import asyncpg

from . import post_writes, write_locks
from .db import CountedConnection, Database
from .write_locks import conversation_key

log = logging.getLogger("arbor.ingestion")

MAX_ATTACH = 10_000           # replies attached per arrival; repair attaches the rest
ATTACH_PER_TRANSACTION = 10   # posts moved into posts per transaction of the walk
DEADLOCK_RETRIES = 3          # against writers outside the lock discipline (docstring)
_MAX_ATTEMPTS = 8             # rekeys of one arrival: a busy key, then each target arriving once

T = TypeVar("T")


@dataclass(frozen=True)
class ImportedPost:
    id: int
    author_id: int
    text: str
    created_at: datetime
    in_reply_to_id: int | None = None
    quote_of_id: int | None = None
    deleted_at: datetime | None = None


class UnknownAuthor(LookupError):
    pass


class _Rekey(Exception):
    """Roll back and run again, waiting for these keys."""

    def __init__(self, keys: set[int]):
        super().__init__(sorted(keys))
        self.keys = keys


def arrival_keys(post: ImportedPost, parent_conversation: int | None,
                 quote_conversation: int | None) -> set[int]:
    """The keys an arriving post needs, given where its parent and quoted post are (their
    conversations; None: not in posts). Always A(P). A reply whose parent is not in posts will
    wait: A(parent), nothing else. Otherwise C(its conversation), and for a quote C(the quoted
    post's conversation) when that post is in posts (its counter is there), else A(quoted)
    (its arrival will count the quote). A post in posts stays there: no A key is needed for
    it."""
    keys = {post.id}
    if post.in_reply_to_id is not None and parent_conversation is None:
        return keys | {post.in_reply_to_id}
    keys.add(conversation_key(post.id if post.in_reply_to_id is None else parent_conversation))
    if post.quote_of_id is not None:
        keys.add(post.quote_of_id if quote_conversation is None
                 else conversation_key(quote_conversation))
    return keys


def _row_keys(r: asyncpg.Record) -> set[int]:
    """A waiting reply's keys (its parent is in posts), as arrival_keys."""
    keys = {r["id"], conversation_key(r["conversation_id"])}
    if r["quote_of_id"] is not None:
        keys.add(r["quote_of_id"] if r["quote_conversation"] is None
                 else conversation_key(r["quote_conversation"]))
    return keys


# -- statements ------------------------------------------------------------------------------

# Where the parent and the quoted post are, and the keys that implies, tried (arrival_keys).
_TRY_ARRIVAL = """
    SELECT c.parent_conversation, c.quote_conversation,
           (SELECT array_agg(k) FILTER (WHERE NOT pg_try_advisory_xact_lock(k))
            FROM unnest(CASE WHEN $2::bigint IS NOT NULL AND c.parent_conversation IS NULL
                             THEN ARRAY[$1::bigint, $2::bigint]
                             ELSE ARRAY[$1::bigint, -coalesce(c.parent_conversation, $1::bigint),
                                        coalesce(-c.quote_conversation, $3::bigint)] END) AS k
            WHERE k IS NOT NULL) AS busy
    FROM (SELECT (SELECT conversation_id FROM posts WHERE id = $2) AS parent_conversation,
                 (SELECT conversation_id FROM posts WHERE id = $3) AS quote_conversation) c"""

# Run once the keys are held: its snapshot is the one the decision rests on.
_CHECK_ARRIVAL = """
    SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $4) AS author_known,
           EXISTS (SELECT 1 FROM posts WHERE id = $1)
               OR EXISTS (SELECT 1 FROM pending_posts WHERE id = $1) AS duplicate,
           (SELECT conversation_id FROM posts WHERE id = $2) AS parent_conversation,
           (SELECT conversation_id FROM posts WHERE id = $3) AS quote_conversation,
           EXISTS (SELECT 1 FROM pending_posts WHERE in_reply_to_id = $1) AS awaited"""

_WAIT = """
    INSERT INTO pending_posts (id, author_id, in_reply_to_id, quote_of_id, text, created_at,
                               deleted_at, received_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()))"""

# Replies waiting below some posts (in posts), first ids first, with what their keys need.
# Per parent through pending_posts_parent (in_reply_to_id, id), at most $2 each: the cost is
# bounded by the parents and the limit, whatever the size of posts and pending_posts (a join
# over all of pending_posts, or merged with a scan of posts, is what the planner would pick).
_WAITING = """
    SELECT pp.id, p.conversation_id, pp.quote_of_id, q.conversation_id AS quote_conversation
    FROM unnest($1::bigint[]) AS parent (id)
    JOIN posts p ON p.id = parent.id
    CROSS JOIN LATERAL (SELECT w.id, w.quote_of_id FROM pending_posts w
                        WHERE w.in_reply_to_id = parent.id ORDER BY w.id LIMIT $2) pp
    LEFT JOIN posts q ON q.id = pp.quote_of_id
    ORDER BY pp.id LIMIT $2"""

# The same, each row's keys tried (a subquery with LIMIT: only the rows returned are tried).
_WAITING_TRY = """
    SELECT w.*, (SELECT bool_and(pg_try_advisory_xact_lock(k))
                 FROM unnest(ARRAY[w.id, -w.conversation_id,
                                   coalesce(-w.quote_conversation, w.quote_of_id)]) AS k
                 WHERE k IS NOT NULL) AS locked
    FROM (""" + _WAITING + """) w"""

# Out of pending_posts; where the quoted post is now (after the locks: a fresh snapshot).
_TAKE = """
    DELETE FROM pending_posts pp WHERE pp.id = ANY($1::bigint[])
    RETURNING pp.id, pp.author_id, pp.in_reply_to_id, pp.quote_of_id, pp.text, pp.created_at,
              pp.deleted_at, pp.received_at,
              (SELECT q.conversation_id FROM posts q WHERE q.id = pp.quote_of_id)
                  AS quote_conversation"""


# -- arrivals --------------------------------------------------------------------------------

async def ingest_many(db: Database, posts: list[ImportedPost]) -> dict[str, int]:
    """ingest_one for each post; counts per outcome."""
    report = {"imported": 0, "pending": 0, "duplicate": 0}
    for post in posts:
        report[await ingest_one(db, post)] += 1
    return report


async def ingest_one(db: Database, post: ImportedPost) -> str:
    """Store one post: "imported", "pending" (waiting for its parent) or "duplicate", and
    attach what waits below it. Raises UnknownAuthor when its author is not an account here."""
    keys: set[int] | None = None            # None: try them; else wait for these
    for _ in range(_MAX_ATTEMPTS):
        try:
            outcome, attached, rest = await _in_transaction(
                db, lambda tx: _arrive(tx, post, keys))
        except _Rekey as e:
            keys = e.keys
            continue
        if rest:
            await attach_pending(db, rest, limit=MAX_ATTACH - attached)
        return outcome
    raise RuntimeError(f"post {post.id}: its keys kept changing")  # each target arrives once


async def _arrive(tx: CountedConnection, post: ImportedPost,
                  keys: set[int] | None) -> tuple[str, int, list[int]]:
    if keys is None:
        tried = await tx.fetchrow(_TRY_ARRIVAL, post.id, post.in_reply_to_id, post.quote_of_id)
        held = arrival_keys(post, tried["parent_conversation"], tried["quote_conversation"])
        if tried["busy"]:
            raise _Rekey(held)
    else:
        await write_locks.acquire(tx, exclusive=keys)
        held = keys
    now = await tx.fetchrow(_CHECK_ARRIVAL, post.id, post.in_reply_to_id, post.quote_of_id,
                            post.author_id)
    if not now["author_known"]:
        raise UnknownAuthor(post.author_id)
    if now["duplicate"]:
        return "duplicate", 0, []
    needed = arrival_keys(post, now["parent_conversation"], now["quote_conversation"])
    if not needed <= held:                  # the parent or the quoted post arrived meanwhile
        raise _Rekey(needed)
    if post.in_reply_to_id is not None and now["parent_conversation"] is None:
        await tx.execute(_WAIT, post.id, post.author_id, post.in_reply_to_id, post.quote_of_id,
                         post.text, post.created_at, post.deleted_at, None)
        return "pending", 0, []
    await _store(tx, [post])
    if not now["awaited"]:                  # final: a reply waits for P only under A(P)
        return "imported", 0, []
    attached, rest = await _Walk(tx, held).below([post.id], ATTACH_PER_TRANSACTION - 1)
    return "imported", attached, rest


async def _store(tx: CountedConnection, posts: list[ImportedPost]) -> None:
    """Insert posts whose parents are in posts (parents first), then delete the deleted ones:
    a deleted one is unlisted now; if replies of its own are attached later, that lists it
    again, as a tombstone (post_writes' ripple rule)."""
    for post in posts:
        await post_writes.insert_post_tx(
            tx, post.author_id, post.text, in_reply_to_id=post.in_reply_to_id,
            quote_of_id=post.quote_of_id, post_id=post.id, created_at=post.created_at,
            lock=False)
    for post in posts:
        if post.deleted_at is not None:
            await post_writes.delete_post_tx(tx, post.id, post.deleted_at, lock=False)


# -- the walk below an arrival ---------------------------------------------------------------

class _Walk:
    """Attaching waiting replies inside one transaction, which holds the keys in `held`."""

    def __init__(self, tx: CountedConnection, held: Iterable[int]):
        self.tx = tx
        self.held = set(held)

    async def take(self, ids: list[int]) -> tuple[list[int], bool]:
        """Move these waiting replies (their keys held, their parents in posts) into posts, in
        id order. A reply whose quoted post arrived since its keys were chosen needs that
        post's conversation key too: tried; if busy, the reply is put back to wait for a
        transaction that waits for it. Returns the ids moved and whether one was put back."""
        taken = await self.tx.fetch(_TAKE, ids)
        late = {conversation_key(r["quote_conversation"]) for r in taken
                if r["quote_conversation"] is not None} - self.held
        busy = await write_locks.try_exclusive(self.tx, late)
        self.held |= late - busy
        posts = []
        for r in taken:
            if r["quote_conversation"] is not None and \
                    conversation_key(r["quote_conversation"]) in busy:
                await self.tx.execute(_WAIT, r["id"], r["author_id"], r["in_reply_to_id"],
                                      r["quote_of_id"], r["text"], r["created_at"],
                                      r["deleted_at"], r["received_at"])
            else:
                posts.append(ImportedPost(r["id"], r["author_id"], r["text"], r["created_at"],
                                          r["in_reply_to_id"], r["quote_of_id"], r["deleted_at"]))
        posts.sort(key=lambda p: p.id)
        await _store(self.tx, posts)
        return [p.id for p in posts], len(posts) < len(taken)

    async def below(self, level: list[int], budget: int) -> tuple[int, list[int]]:
        """Attach the replies waiting below `level` (posts in posts whose waiting replies are
        final: committed, or inserted by this transaction), level by level, while their keys
        are free and fewer than `budget` were attached. Returns how many were, and the posts
        whose waiting replies are left for transactions that wait for the keys."""
        attached, next_level = 0, []
        while level:
            room = budget - attached
            if room <= 0:
                return attached, level + next_level
            rows = await self.tx.fetch(_WAITING_TRY, level, room)
            if not rows:
                level, next_level = next_level, []
                continue
            for r in rows:
                if r["locked"]:
                    self.held |= _row_keys(r)
            if not all(r["locked"] for r in rows):
                return attached, level + next_level
            moved, put_back = await self.take([r["id"] for r in rows])
            attached += len(moved)
            next_level += moved
            if put_back:
                return attached, level + next_level
            if len(rows) < room:            # this level's waiting replies are all attached
                level, next_level = next_level, []
        return attached, []


async def attach_pending(db: Database, parents: Iterable[int], limit: int = MAX_ATTACH) -> int:
    """Attach the replies waiting below these posts (in posts, committed), and theirs, in
    transactions that wait for their keys, ATTACH_PER_TRANSACTION posts each (repair uses it
    too). Stops after about `limit`. Returns how many were attached."""
    todo = sorted(set(parents))
    attached = 0
    while todo and attached < limit:
        chunk, todo = todo[:ATTACH_PER_TRANSACTION], todo[ATTACH_PER_TRANSACTION:]
        room = min(ATTACH_PER_TRANSACTION, limit - attached)

        async def step(tx: CountedConnection, chunk=chunk, room=room) -> tuple[int, list[int], bool]:
            rows = await tx.fetch(_WAITING, chunk, room)
            if not rows:
                return 0, [], False
            keys = set().union(*map(_row_keys, rows))
            await write_locks.acquire(tx, exclusive=keys)
            walk = _Walk(tx, keys)
            moved, put_back = await walk.take([r["id"] for r in rows])
            more, rest = await walk.below(moved, room - len(moved))
            return len(moved) + more, rest, put_back or len(rows) == room

        done, rest, again = await _in_transaction(db, step)
        attached += done
        todo = sorted(set(todo) | set(rest) | (set(chunk) if again else set()))
    return attached


async def _in_transaction(db: Database, fn: Callable[[CountedConnection], Awaitable[T]]) -> T:
    """fn(tx) in a transaction, run again after a deadlock with a writer outside the lock
    discipline (module docstring), at most DEADLOCK_RETRIES times."""
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            async with db.transaction() as tx:
                return await fn(tx)
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == DEADLOCK_RETRIES:
                raise
            log.warning("ingestion: a deadlock with another writer; running the transaction "
                        "again (%d of %d)", attempt + 1, DEADLOCK_RETRIES)
    raise AssertionError("unreachable")
