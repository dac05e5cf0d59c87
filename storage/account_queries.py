"""Reading accounts: by id, by a batch of ids (one round trip), or by "id or handle" (the
CLI's way of naming one)."""
from __future__ import annotations

from typing import Iterable

import asyncpg

from .db import Database
from .rows import AccountRow

STATES = ("active", "suspended", "deactivated", "locked")
FLAGS = ("protected", "has_avatar", "verified")


class AccountNotFound(LookupError):
    """No account has this id."""


ACCOUNT_COLUMNS = "id, handle, display_name, state, protected, has_avatar, verified, created_at"


def account_row(record: asyncpg.Record) -> AccountRow:
    return AccountRow(**{name: record[name] for name in AccountRow.__slots__})


async def account_by_id(db: Database, account_id: int) -> AccountRow | None:
    row = await db.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1", account_id)
    return account_row(row) if row else None


async def account_by_ref(db: Database, ref: str) -> AccountRow | None:
    """An account named by its id (all digits) or its handle; the id wins when both match."""
    account_id = int(ref) if ref.isascii() and ref.isdigit() and len(ref) <= 18 else None
    row = await db.fetchrow(
        f"""SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 OR handle = $2
            ORDER BY id = $1 DESC NULLS LAST LIMIT 1""", account_id, ref)
    return account_row(row) if row else None


async def accounts_by_id(db: Database, account_ids: Iterable[int]) -> dict[int, AccountRow]:
    """The accounts of these ids (any state), in one round trip; none asked: none read."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    rows = await db.fetch(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1::bigint[])",
                          ids)
    return {row["id"]: account_row(row) for row in rows}
