"""The advisory locks that order concurrent writes (the discipline is stated in
storage/ingestion.py's docstring; this module only takes them).

Keys are post ids, in PostgreSQL's one-bigint advisory key space, exactly (no hashing, so two
posts never share a lock by accident): the key of a post id stands both for that post's
*arrival* (whether it is in posts, which its waiting replies and its quotes depend on) and, when
the post is a root, for its *conversation's rows* (the counters, flags and sections a write in
that conversation touches). Imports take every key exclusively; the normal write path
(POST/DELETE /v1/posts) takes the conversation keys shared, so normal writers do not wait for
each other, only for imports in the same conversation, and adds one exclusive lock per
(conversation, normalized text) in the two-int key space DUPLICATE_SPACE, so that two replies
with the same text are never classified blind to each other.

Every blocking acquisition is one statement, keys in ascending order (the one-bigint keys,
then the duplicate key), made before the transaction takes any row lock of posts, post_counts
or pending_posts. Later locks are only tried (`pg_try_advisory_xact_lock`, which never waits).
Locks are held until the transaction ends. Cost: one round trip per acquisition, whatever the
number of keys.
"""
from __future__ import annotations

from typing import Iterable

from .db import _Counted

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


async def acquire(tx: _Counted, *, exclusive: Iterable[int | None] = (),
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


async def try_exclusive(tx: _Counted, keys: Iterable[int]) -> set[int]:
    """Try these locks without waiting; returns the keys that another transaction holds (the
    others are now held, until the transaction ends)."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    return set(await tx.fetchval(_TRY, wanted) or ())
