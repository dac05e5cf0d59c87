"""Rate-limit overrides per account and the deny list (migration 0008), for the admin API and
for each process's periodic reload. Both tables are small (entries an SRE made by hand)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .db import Database

BUDGET_COLUMNS = ("read", "write", "not_found")  # fixed identifiers: no input reaches SQL text


@dataclass(frozen=True, slots=True)
class Override:
    account_id: int
    rates: dict[str, str | None]   # budget -> rate, None: the setting's
    note: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DenyEntry:
    id: int
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    account_id: int | None
    note: str
    created_at: datetime


class AccountMissing(LookupError):
    """No account has this id."""


class AlreadyDenied(Exception):
    """The deny list already has this network or account."""


def _override(r) -> Override:
    return Override(r["account_id"], {b: r[b] for b in BUDGET_COLUMNS}, r["note"],
                    r["updated_at"])


async def overrides(db: Database) -> list[Override]:
    return [_override(r) for r in await db.fetch(
        "SELECT * FROM rate_limit_overrides ORDER BY account_id")]


async def override(db: Database, account_id: int) -> Override | None:
    r = await db.fetchrow("SELECT * FROM rate_limit_overrides WHERE account_id = $1", account_id)
    return _override(r) if r else None


async def set_override(db: Database, account_id: int, rates: dict[str, str | None],
                       note: str) -> Override:
    try:
        r = await db.fetchrow(
            """INSERT INTO rate_limit_overrides (account_id, read, write, not_found, note)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (account_id) DO UPDATE SET read = $2, write = $3, not_found = $4,
                   note = $5, updated_at = now()
               RETURNING *""",
            account_id, rates.get("read"), rates.get("write"), rates.get("not_found"), note)
    except asyncpg.ForeignKeyViolationError:
        raise AccountMissing(account_id) from None
    return _override(r)


async def clear_override(db: Database, account_id: int) -> bool:
    return await db.execute("DELETE FROM rate_limit_overrides WHERE account_id = $1",
                            account_id) != "DELETE 0"


def _entry(r) -> DenyEntry:
    return DenyEntry(r["id"], r["network"], r["account_id"], r["note"], r["created_at"])


async def deny_entries(db: Database) -> list[DenyEntry]:
    return [_entry(r) for r in await db.fetch("SELECT * FROM deny_list ORDER BY id")]


async def add_deny(db: Database, *, network=None, account_id: int | None = None,
                   note: str = "") -> DenyEntry:
    try:
        r = await db.fetchrow(
            "INSERT INTO deny_list (network, account_id, note) VALUES ($1, $2, $3) RETURNING *",
            network, account_id, note)
    except asyncpg.UniqueViolationError:
        raise AlreadyDenied() from None
    return _entry(r)


async def remove_deny(db: Database, entry_id: int) -> bool:
    return await db.execute("DELETE FROM deny_list WHERE id = $1", entry_id) != "DELETE 0"
