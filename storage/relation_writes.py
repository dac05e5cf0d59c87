"""Writing a viewer's relations: follows, blocks, mutes, muted words. All idempotent.

Blocks and mutes count toward the "blocked or muted by many participants" section rule, so
adding or removing one calls section_updates.on_relation_changed inside its transaction.
"""
from __future__ import annotations

from . import section_updates
from .account_queries import AccountNotFound
from .db import Database
from .relation_queries import RELATIONS

_SECTION_RELATIONS = ("blocks", "mutes")


class SelfRelation(ValueError):
    """An account cannot follow, block or mute itself."""


class TooManyMutedWords(Exception):
    def __init__(self, limit: int):
        super().__init__(f"at most {limit} muted words")
        self.limit = limit


def normalize_muted_word(word: str) -> str:
    """Lower-cased, with spaces trimmed at both ends and runs of spaces inside made one."""
    return " ".join(part for part in word.split(" ") if part).lower()


def _add_sql(table: str, actor: str, target: str) -> str:
    return f"""
        WITH target AS (SELECT id FROM accounts WHERE id = $2),
             added AS (INSERT INTO {table} ({actor}, {target}) SELECT $1, id FROM target
                       ON CONFLICT DO NOTHING RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM target) AS found, EXISTS (SELECT 1 FROM added) AS changed"""


def _remove_sql(table: str, actor: str, target: str) -> str:
    return f"""
        WITH target AS (SELECT id FROM accounts WHERE id = $2),
             removed AS (DELETE FROM {table} WHERE {actor} = $1 AND {target} IN (SELECT id FROM target)
                         RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM target) AS found, EXISTS (SELECT 1 FROM removed) AS changed"""


async def add_relation(db: Database, kind: str, actor_id: int, target_id: int) -> bool:
    """actor follows / blocks / mutes target. True when it was not so before."""
    return await _write(db, _add_sql(*RELATIONS[kind]), kind, actor_id, target_id)


async def remove_relation(db: Database, kind: str, actor_id: int, target_id: int) -> bool:
    """Undo add_relation. True when there was something to remove."""
    return await _write(db, _remove_sql(*RELATIONS[kind]), kind, actor_id, target_id)


async def _write(db: Database, sql: str, kind: str, actor_id: int, target_id: int) -> bool:
    if actor_id == target_id:
        raise SelfRelation(f"an account cannot {kind[:-1]} itself")
    async with db.transaction() as tx:
        row = await tx.fetchrow(sql, actor_id, target_id)
        if not row["found"]:
            raise AccountNotFound(target_id)
        if row["changed"] and kind in _SECTION_RELATIONS:
            await section_updates.on_relation_changed(tx, actor_id, target_id)
    return row["changed"]


async def add_muted_word(db: Database, account_id: int, word: str, max_words: int) -> bool:
    """Mute a word or phrase (normalized). True when it was not muted before. Raises
    TooManyMutedWords when the account already has max_words others."""
    word = normalize_muted_word(word)
    if not word:
        raise ValueError("a muted word cannot be empty")
    async with db.transaction() as tx:
        # The account row lock serializes concurrent adds, so the limit holds exactly.
        row = await tx.fetchrow(
            """SELECT count(w.word) AS n, coalesce(bool_or(w.word = $2), false) AS present
               FROM (SELECT id FROM accounts WHERE id = $1 FOR UPDATE) a
               LEFT JOIN muted_words w ON w.account_id = a.id""", account_id, word)
        if row["present"]:
            return False
        if row["n"] >= max_words:
            raise TooManyMutedWords(max_words)
        await tx.execute("INSERT INTO muted_words (account_id, word) VALUES ($1, $2)",
                         account_id, word)
    return True


async def remove_muted_word(db: Database, account_id: int, word: str) -> bool:
    return await db.fetchval(
        "DELETE FROM muted_words WHERE account_id = $1 AND word = $2 RETURNING true",
        account_id, normalize_muted_word(word)) is not None
