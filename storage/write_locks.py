"""The advisory locks that order concurrent writes; storage/ingestion.py's docstring states
the discipline (which keys, in which order, why no deadlock and no lost wake-up).

Keys live in PostgreSQL's one-bigint advisory key space and are exact (no hashing, so two posts
never share a lock by accident): a post id x is the key of x's *arrival* (whether x is in
posts, which its waiting replies and its quotes depend on); the negated id of a root, -c, is
the key of conversation c's *rows* (counters, flags, sections). Post ids are positive, so the
two kinds never meet. Imports take their keys exclusively; the normal write path (POST and
DELETE /v1/posts) takes the conversation keys shared (normal writers do not wait for each
other, only for imports into the same conversation) plus one exclusive key per
(conversation, normalized text) in the two-int space DUPLICATE_SPACE (hashed: a collision only
serializes two writers), so that two replies with the same text are never classified blind to
each other. Other one-bigint users (migrations.py, seeding.py) use fixed positive keys: a post
with such an id would only wait for them.

Every waiting acquisition is one statement, keys in ascending order (one-bigint keys, then the
duplicate key), made before the transaction takes any row lock on posts, post_counts or
pending_posts; any later lock is only tried (try_exclusive, never waits). Locks are held until
the transaction ends. Cost: one round trip per acquisition, whatever the number of keys.
"""
from __future__ import annotations

from typing import Iterable

from .db import CountedConnection

DUPLICATE_SPACE = 0x41524244   # "ARBD": (conversation, normalized text) of the normal write path

# The normalized text of the duplicate rule (the posts.text_hash generated column of
# migrations/0003_sections.sql hashes this same expression).
NORMALIZED_TEXT = "btrim(regexp_replace(lower({}), '[^[:alnum:]]+', ' ', 'g'))"

# Rows in array order (a function scan), so the locks are taken in the order Python sorted
# them; the duplicate key, if any, comes last (UNION ALL runs its branches in order).
_ACQUIRE = """
    SELECT CASE WHEN x THEN pg_advisory_xact_lock(k) ELSE pg_advisory_xact_lock_shared(k) END
    FROM unnest($1::bigint[], $2::bool[]) AS t (k, x)
    UNION ALL
    SELECT pg_advisory_xact_lock($3::int, hashtext($4::bigint::text || ':' || """ + \
    NORMALIZED_TEXT.format("$5::text") + """))
    WHERE $4::bigint IS NOT NULL"""

def conversation_key(conversation_id: int) -> int:
    """The key of a conversation's rows: its root's id, negated (post ids are positive, so
    conversation keys never meet arrival keys)."""
    return -conversation_id


_TRY = "SELECT array_agg(k) FILTER (WHERE NOT pg_try_advisory_xact_lock(k)) FROM unnest($1::bigint[]) k"


def _modes(exclusive: Iterable[int | None], shared: Iterable[int | None]) -> dict[int, bool]:
    modes: dict[int, bool] = {}
    for key in shared:
        if key is not None:
            modes.setdefault(key, False)
    for key in exclusive:
        if key is not None:
            modes[key] = True
    return modes


async def acquire(tx: CountedConnection, *, exclusive: Iterable[int | None] = (),
                  shared: Iterable[int | None] = (),
                  duplicate: tuple[int, str] | None = None) -> None:
    """Wait for these locks (None keys are skipped; a key in both sets is taken exclusively),
    in ascending key order, in one statement. Call before any row lock of the transaction."""
    modes = _modes(exclusive, shared)
    keys = sorted(modes)
    conversation, text = duplicate if duplicate is not None else (None, None)
    if not keys and duplicate is None:
        return
    await tx.execute(_ACQUIRE, keys, [modes[k] for k in keys], DUPLICATE_SPACE, conversation, text)


async def try_exclusive(tx: CountedConnection, keys: Iterable[int]) -> set[int]:
    """Try these locks without waiting; returns the keys that another transaction holds (the
    others are now held, until the transaction ends)."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    return set(await tx.fetchval(_TRY, wanted) or ())
