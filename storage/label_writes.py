"""Classifier labels on posts (spam, abusive) with a score in [0, 1].

A label decides a reply's section, so every change calls section_updates.on_label_changed
inside its own transaction.
"""
from __future__ import annotations

from . import section_updates
from .db import Database

LABELS = ("spam", "abusive")


class PostNotFound(LookupError):
    pass


def _check(label: str, score: float | None = None) -> None:
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}")
    if score is not None and not 0.0 <= score <= 1.0:
        raise ValueError("score must be between 0 and 1")


async def upsert_label(db: Database, post_id: int, label: str, score: float) -> None:
    """Set the post's label score (a new one, or a new score for the same label)."""
    _check(label, score)
    async with db.transaction() as tx:
        found = await tx.fetchval(
            """INSERT INTO labels (post_id, label, score) SELECT id, $2, $3 FROM posts WHERE id = $1
               ON CONFLICT (post_id, label) DO UPDATE SET score = EXCLUDED.score
               RETURNING true""", post_id, label, score)
        if not found:
            raise PostNotFound(post_id)
        await section_updates.on_label_changed(tx, post_id)


async def delete_label(db: Database, post_id: int, label: str) -> bool:
    """Remove the label. True when there was one; PostNotFound when there is no such post."""
    _check(label)
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            """WITH post AS (SELECT id FROM posts WHERE id = $1),
                    removed AS (DELETE FROM labels WHERE post_id IN (SELECT id FROM post)
                                AND label = $2 RETURNING 1)
               SELECT EXISTS (SELECT 1 FROM post) AS found,
                      EXISTS (SELECT 1 FROM removed) AS changed""", post_id, label)
        if not row["found"]:
            raise PostNotFound(post_id)
        if row["changed"]:
            await section_updates.on_label_changed(tx, post_id)
    return row["changed"]
