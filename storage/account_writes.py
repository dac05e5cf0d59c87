"""Creating accounts and changing their state and flags.

A change of state or flags can move the account's replies between sections, so it calls
section_updates.on_account_changed inside its own transaction.
"""
from __future__ import annotations

import asyncpg

from . import section_updates
from .account_queries import ACCOUNT_COLUMNS, STATES, account_row
from .db import Database
from .ids import IdGenerator
from .rows import AccountRow

_ids = IdGenerator()


class HandleTaken(Exception):
    """Another account already has this handle."""


async def create_account(db: Database, handle: str, display_name: str = "", *,
                         protected: bool = False, has_avatar: bool = False,
                         verified: bool = False) -> AccountRow:
    try:
        row = await db.fetchrow(
            f"""INSERT INTO accounts (id, handle, display_name, protected, has_avatar, verified)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ACCOUNT_COLUMNS}""",
            _ids.next(), handle, display_name, protected, has_avatar, verified)
    except asyncpg.UniqueViolationError:
        raise HandleTaken(handle) from None
    return account_row(row)


# The old values come from the locked row in the CTE; the RETURNING list sees the new ones.
_UPDATE_SQL = f"""
    WITH old AS (SELECT * FROM accounts WHERE id = $1 FOR UPDATE)
    UPDATE accounts a SET display_name = coalesce($2, a.display_name),
                          state = coalesce($3, a.state),
                          protected = coalesce($4, a.protected),
                          has_avatar = coalesce($5, a.has_avatar),
                          verified = coalesce($6, a.verified)
    FROM old WHERE a.id = old.id
    RETURNING {', '.join('a.' + c.strip() for c in ACCOUNT_COLUMNS.split(','))},
              (old.state, old.protected, old.has_avatar, old.verified)
                IS DISTINCT FROM (a.state, a.protected, a.has_avatar, a.verified) AS changed
"""


async def update_account(db: Database, account_id: int, *, display_name: str | None = None,
                         state: str | None = None, protected: bool | None = None,
                         has_avatar: bool | None = None,
                         verified: bool | None = None) -> AccountRow | None:
    """Change what is given (None leaves a field as it is). None when there is no such account."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    async with db.transaction() as tx:
        row = await tx.fetchrow(_UPDATE_SQL, account_id, display_name, state, protected,
                                has_avatar, verified)
        if row is None:
            return None
        if row["changed"]:
            await section_updates.on_account_changed(tx, account_id)
    return account_row(row)
