"""Bearer tokens: created random, stored as their SHA-256 only, revoked by that hash.

A token's public id is the hex of its hash: safe to show and to log (it cannot be turned back
into the token), and enough to revoke it.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from .account_queries import AccountNotFound
from .db import Database

PREFIX = "arb_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str  # shown once; never stored
    token_hash: bytes
    account_id: int
    label: str
    created_at: datetime

    @property
    def token_id(self) -> str:
        return self.token_hash.hex()


async def create_token(db: Database, account_id: int, label: str = "") -> NewToken:
    """A new token for an existing account (of any state: only active accounts can use it)."""
    token = PREFIX + secrets.token_urlsafe(32)
    token_hash = hash_token(token)
    created_at = await db.fetchval(
        """INSERT INTO account_tokens (token_hash, account_id, label)
           SELECT $1, id, $3 FROM accounts WHERE id = $2 RETURNING created_at""",
        token_hash, account_id, label)
    if created_at is None:
        raise AccountNotFound(account_id)
    return NewToken(token, token_hash, account_id, label, created_at)


async def revoke_token(db: Database, token_hash: bytes) -> int | None:
    """Revoke a token (again is fine). Its account's id, or None when there is no such token."""
    return await db.fetchval(
        """UPDATE account_tokens SET revoked_at = coalesce(revoked_at, now())
           WHERE token_hash = $1 RETURNING account_id""", token_hash)
