"""Keep each reply's stored section current: recompute it, and move its parent's counter,
whenever an input of storage/section_rules.py changes. Runs inside the caller's write
transaction, so counters stay exact. Cost is per write, bounded by the posts the change can
affect (one post; an account's replies; one author's replies where one participant took part).
"""
from __future__ import annotations

from typing import Iterable

from .counter_writes import REPLY_COLUMNS, recount_quotes
from .db import CountedConnection
from .section_rules import ReplyFacts, Thresholds, section_of

_thresholds = Thresholds()
_CHUNK = 500


def configure(thresholds: Thresholds) -> None:
    """Set the thresholds from the settings (service start-up, CLI)."""
    global _thresholds
    _thresholds = thresholds


def thresholds() -> Thresholds:
    return _thresholds


_FACTS_SQL = """
    SELECT p.id, p.in_reply_to_id, p.section, p.listed,
           p.in_reply_to_id IS NOT NULL AS is_reply,
           p.author_id = root.author_id AS by_conversation_author,
           (SELECT l.score FROM labels l WHERE l.post_id = p.id AND l.label = 'spam') AS spam,
           (SELECT l.score FROM labels l WHERE l.post_id = p.id AND l.label = 'abusive') AS abusive,
           EXISTS (SELECT 1 FROM posts d
                   WHERE d.conversation_id = p.conversation_id AND d.text_hash = p.text_hash
                     AND d.id < p.id AND d.in_reply_to_id IS NOT NULL
                     AND d.deleted_at IS NULL) AS duplicate,
           a.has_avatar, a.verified, p.created_at - a.created_at AS account_age,
           (SELECT count(*) FROM (
                SELECT who FROM (SELECT b.blocker_id AS who FROM blocks b
                                 WHERE b.blocked_id = p.author_id
                                 UNION SELECT m.muter_id FROM mutes m
                                 WHERE m.muted_id = p.author_id) shunners
                WHERE EXISTS (SELECT 1 FROM posts x WHERE x.conversation_id = p.conversation_id
                                                      AND x.author_id = shunners.who)
                LIMIT $2) capped) AS shunned_by
    FROM posts p
    JOIN accounts a ON a.id = p.author_id
    LEFT JOIN posts root ON root.id = p.conversation_id
    WHERE p.id = ANY($1::bigint[])
    ORDER BY p.id
    FOR UPDATE OF p"""


def _facts(r) -> ReplyFacts:
    return ReplyFacts(r["is_reply"], bool(r["by_conversation_author"]), r["spam"], r["abusive"],
                      r["duplicate"], r["has_avatar"], r["verified"], r["account_age"],
                      r["shunned_by"])


async def recompute(tx: CountedConnection, post_ids: Iterable[int]) -> int:
    """Recompute the sections of these posts; move counters of the listed ones. Returns how
    many changed section."""
    ids = list(post_ids)
    changed = 0
    for start in range(0, len(ids), _CHUNK):
        rows = await tx.fetch(_FACTS_SQL, ids[start:start + _CHUNK], _thresholds.shunned_by)
        for r in rows:
            new = section_of(_facts(r), _thresholds)
            if new != r["section"]:
                await _move(tx, r["id"], r["in_reply_to_id"], r["listed"], r["section"], new)
                changed += 1
    return changed


async def _move(tx: CountedConnection, post_id: int, parent_id: int | None, listed: bool,
                old: int, new: int) -> None:
    await tx.execute("UPDATE posts SET section = $2 WHERE id = $1", post_id, new)
    if listed and parent_id is not None:
        await tx.execute(
            f"UPDATE post_counts SET {REPLY_COLUMNS[old]} = {REPLY_COLUMNS[old]} - 1, "
            f"{REPLY_COLUMNS[new]} = {REPLY_COLUMNS[new]} + 1 WHERE post_id = $1", parent_id)


async def on_label_changed(tx: CountedConnection, post_id: int) -> None:
    await recompute(tx, [post_id])


async def on_account_changed(tx: CountedConnection, account_id: int) -> None:
    """Avatar and verification flags feed the new-account rule of every reply by the author;
    state and protection decide whether the author's quotes count on the posts they quote."""
    rows = await tx.fetch("SELECT id FROM posts WHERE author_id = $1 AND in_reply_to_id IS NOT NULL",
                          account_id)
    await recompute(tx, [r["id"] for r in rows])
    quoted = await tx.fetch("SELECT DISTINCT quote_of_id FROM posts WHERE author_id = $1 "
                            "AND quote_of_id IS NOT NULL", account_id)
    if quoted:
        await recount_quotes(tx, [r["quote_of_id"] for r in quoted])


async def on_relation_changed(tx: CountedConnection, actor_id: int, target_id: int) -> None:
    """A block or mute by `actor` counts against `target` in conversations both took part in."""
    rows = await tx.fetch(
        """SELECT p.id FROM posts p
           WHERE p.author_id = $1 AND p.in_reply_to_id IS NOT NULL
             AND EXISTS (SELECT 1 FROM posts x WHERE x.conversation_id = p.conversation_id
                                                 AND x.author_id = $2)""", target_id, actor_id)
    await recompute(tx, [r["id"] for r in rows])


async def on_new_participant(tx: CountedConnection, conversation_id: int, author_id: int) -> None:
    """`author` just posted in this conversation for the first time: their blocks and mutes now
    count against the replies here of the accounts they block or mute."""
    rows = await tx.fetch(
        """SELECT p.id FROM posts p
           WHERE p.conversation_id = $1 AND p.in_reply_to_id IS NOT NULL
             AND p.author_id IN (SELECT blocked_id FROM blocks WHERE blocker_id = $2
                                 UNION SELECT muted_id FROM mutes WHERE muter_id = $2)""",
        conversation_id, author_id)
    await recompute(tx, [r["id"] for r in rows])
