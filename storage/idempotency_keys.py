"""Idempotency keys: one row per (account, key), claimed and answered inside the transaction
of the write it acknowledges (service/http/idempotency.py runs that transaction).

Claiming inserts the row first: a concurrent request with the same key blocks on the primary
key until the first one commits (then it finds the answer) or rolls back (then it claims the
key itself). A key older than the TTL is claimed again as if new. Each claim also sweeps a few
expired rows (oldest first, skipping rows other transactions hold), so the table stays bounded
without a periodic job.
"""
from __future__ import annotations

from dataclasses import dataclass

from .db import CountedConnection

SWEEP_PER_CLAIM = 8

_CLAIM = f"""
    WITH swept AS (
        DELETE FROM idempotency_keys WHERE (account_id, key) IN (
            SELECT account_id, key FROM idempotency_keys
            WHERE created_at < now() - make_interval(secs => $6)
              AND NOT (account_id = $1 AND key = $2)
            ORDER BY created_at LIMIT {SWEEP_PER_CLAIM}
            FOR UPDATE SKIP LOCKED))
    INSERT INTO idempotency_keys (account_id, key, method, path, request_hash)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (account_id, key) DO UPDATE
        SET method = EXCLUDED.method, path = EXCLUDED.path,
            request_hash = EXCLUDED.request_hash, status = NULL, response = NULL,
            created_at = now()
        WHERE idempotency_keys.created_at < now() - make_interval(secs => $6)
    RETURNING true"""


@dataclass(frozen=True)
class StoredRequest:
    request_hash: bytes
    status: int | None      # None only inside the claiming transaction
    response: bytes


async def claim(tx: CountedConnection, account_id: int, key: str, method: str, path: str,
                request_hash: bytes, ttl_s: float) -> bool:
    """Claim the key for this request: True when it is new (or had expired)."""
    return bool(await tx.fetchval(_CLAIM, account_id, key, method, path, request_hash,
                                  float(ttl_s)))


async def stored(tx: CountedConnection, account_id: int, key: str) -> StoredRequest | None:
    """The committed request and answer of a key that could not be claimed."""
    row = await tx.fetchrow(
        """SELECT request_hash, status, response FROM idempotency_keys
           WHERE account_id = $1 AND key = $2""", account_id, key)
    if row is None:
        return None
    return StoredRequest(bytes(row["request_hash"]), row["status"], bytes(row["response"] or b""))


async def answer(tx: CountedConnection, account_id: int, key: str, status: int, response: bytes) -> None:
    """Record the answer of the claimed key, in the write's transaction."""
    await tx.execute(
        """UPDATE idempotency_keys SET status = $3, response = $4
           WHERE account_id = $1 AND key = $2""", account_id, key, status, response)

