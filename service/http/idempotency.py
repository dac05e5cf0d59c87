"""`Idempotency-Key` for writes: a retried request writes nothing twice, and only a committed
write is acknowledged.

One transaction holds the key's record and the write: the key is claimed first, the write runs,
its answer is stored, and all of it commits together (or none of it does, so a failed write
leaves no record and can be retried with the same key). A retry with the same key and the same
request (method, path and canonical body) gets the stored status and body again, with
`Idempotent-Replayed: true`; the same key with another request is a 422. A retry that arrives
while the first request runs waits for it to commit (the claim blocks on the key's row), so
there is no "in progress" answer. Keys are per account and expire after `idempotency_ttl_s`.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import asyncpg
import orjson
from aiohttp import web

from storage import idempotency_keys
from storage.db import CountedConnection, Database

from service.core.errors import ApiError
from service.inputs.idempotency import HEADER, REPLAYED_HEADER, parse_key

log = logging.getLogger("arbor.idempotency")

# A transaction that PostgreSQL aborted for a conflict with another one wrote nothing: run it
# again (with its key claim) a few times before answering 503.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
ATTEMPTS = 3


@dataclass(frozen=True)
class Outcome:
    """What a write answers: a status and a JSON body (empty for 204)."""
    status: int
    body: bytes = b""


@dataclass(frozen=True)
class KeyedRequest:
    account_id: int
    key: str | None
    method: str
    path: str
    request_hash: bytes


Write = Callable[[CountedConnection], Awaitable[Outcome]]


class _KeyExpired(Exception):
    """The key's record went between the claim and the read: claim it again."""


def key_of(request: web.Request) -> str | None:
    """The request's Idempotency-Key, None without one; 400 when malformed or repeated."""
    return parse_key(request.headers.getall(HEADER, []))


def keyed_request(request: web.Request, account_id: int, key: str | None,
                  body: dict[str, Any] | None) -> KeyedRequest:
    """The request as the key remembers it: method, path and the body with sorted keys."""
    canonical = b"" if body is None else orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(b"\n".join((request.method.encode(), request.path.encode(),
                                        canonical))).digest()
    return KeyedRequest(account_id, key, request.method, request.path, digest)


def _response(status: int, body: bytes, replayed: bool = False) -> web.Response:
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    if not body:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)


async def _replay(tx: CountedConnection, req: KeyedRequest) -> web.Response:
    assert req.key is not None
    prior = await idempotency_keys.stored(tx, req.account_id, req.key)
    if prior is None or prior.status is None:
        # The claim waited for the key's first request to commit; its row can only have gone
        # since if it expired in between (and another write swept it): the key is new again.
        raise _KeyExpired()
    if prior.request_hash != req.request_hash:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request; use a new key")
    return _response(prior.status, prior.response, replayed=True)


async def _attempt(db: Database, req: KeyedRequest, ttl_s: float, write: Write) -> web.Response:
    async with db.transaction() as tx:
        if req.key is not None and not await idempotency_keys.claim(
                tx, req.account_id, req.key, req.method, req.path, req.request_hash, ttl_s):
            return await _replay(tx, req)
        outcome = await write(tx)
        if req.key is not None:
            await idempotency_keys.answer(tx, req.account_id, req.key, outcome.status,
                                          outcome.body)
    return _response(outcome.status, outcome.body)


async def run_write(db: Database, req: KeyedRequest, ttl_s: float, write: Write) -> web.Response:
    """Run `write` once per key: in one transaction with the key's record, or replayed."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await _attempt(db, req, ttl_s, write)
        except _RETRYABLE as e:
            log.warning("write aborted by a conflict (%s), attempt %d of %d: %s",
                        type(e).__name__, attempt, ATTEMPTS, req.path)
        except _KeyExpired:
            log.info("idempotency key expired while claimed, attempt %d of %d: %s",
                     attempt, ATTEMPTS, req.path)
    raise ApiError(503, "write_conflict", "the write conflicted with others; retry",
                   retry_after=1)
