"""Reading relations: a viewer's whole set in one round trip, and keyset pages for /v1/me."""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .db import Database
from .rows import Viewer

# kind -> (table, the actor's column, the target's column). Identifiers come only from here.
RELATIONS: dict[str, tuple[str, str, str]] = {
    "follows": ("follows", "follower_id", "followee_id"),
    "blocks": ("blocks", "blocker_id", "blocked_id"),
    "mutes": ("mutes", "muter_id", "muted_id"),
}

# Every relation of the account whose id is `{id}`, as array columns of one row.
_RELATION_ARRAYS = """
    array(SELECT followee_id FROM follows WHERE follower_id = {id}) AS follows,
    array(SELECT blocked_id FROM blocks WHERE blocker_id = {id}) AS blocks,
    array(SELECT blocker_id FROM blocks WHERE blocked_id = {id}) AS blocked_by,
    array(SELECT muted_id FROM mutes WHERE muter_id = {id}) AS mutes,
    array(SELECT word FROM muted_words WHERE account_id = {id} ORDER BY word) AS muted_words
"""
_VIEWER_SQL = f"SELECT {_RELATION_ARRAYS.format(id='$1')}"
_TOKEN_SQL = f"""
    SELECT t.account_id, a.state, {_RELATION_ARRAYS.format(id='t.account_id')}
    FROM account_tokens t JOIN accounts a ON a.id = t.account_id
    WHERE t.token_hash = $1 AND t.revoked_at IS NULL
"""


def _viewer(viewer_id: int, row: asyncpg.Record) -> Viewer:
    return Viewer(viewer_id, follows=frozenset(row["follows"]), blocks=frozenset(row["blocks"]),
                  blocked_by=frozenset(row["blocked_by"]), mutes=frozenset(row["mutes"]),
                  muted_words=tuple(row["muted_words"]))


async def viewer_relations(db: Database, viewer_id: int) -> Viewer:
    """The viewer with follows, blocks (both ways), mutes and muted words: one round trip."""
    return _viewer(viewer_id, await db.fetchrow(_VIEWER_SQL, viewer_id))


@dataclass(frozen=True, slots=True)
class TokenOwner:
    account_id: int
    state: str
    viewer: Viewer


async def token_owner(db: Database, token_hash: bytes) -> TokenOwner | None:
    """The account of a live (not revoked) token, its state, and its relations: one round trip.
    None for an unknown or revoked token."""
    row = await db.fetchrow(_TOKEN_SQL, token_hash)
    if row is None:
        return None
    return TokenOwner(row["account_id"], row["state"], _viewer(row["account_id"], row))


@dataclass(frozen=True, slots=True)
class RelatedAccount:
    id: int
    handle: str
    display_name: str


async def related_accounts(db: Database, kind: str, actor_id: int, after: int | None,
                           limit: int) -> list[RelatedAccount]:
    """The accounts `actor_id` follows / blocks / mutes, by id, after the id `after`."""
    table, actor, target = RELATIONS[kind]
    rows = await db.fetch(
        f"""SELECT a.id, a.handle, a.display_name FROM {table} r JOIN accounts a ON a.id = r.{target}
            WHERE r.{actor} = $1 AND r.{target} > $2 ORDER BY r.{target} LIMIT $3""",
        actor_id, after or 0, limit)
    return [RelatedAccount(r["id"], r["handle"], r["display_name"]) for r in rows]


async def muted_words_page(db: Database, account_id: int, after: str | None,
                           limit: int) -> list[str]:
    rows = await db.fetch(
        """SELECT word FROM muted_words WHERE account_id = $1 AND ($2::text IS NULL OR word > $2)
           ORDER BY word LIMIT $3""", account_id, after, limit)
    return [r["word"] for r in rows]
