"""The background task that folds pending like/repost deltas into the counters and the
engagement score (storage/reactions.fold) every `reactions_fold_interval_ms`, and makes this
process's cached renders of the conversations it folded stale (their counts and order
changed). Every process runs one; folds take disjoint rows (SKIP LOCKED), so N processes are
as correct as one. A failing database is logged once per interval of failures, retried at the
next tick; nothing is lost (the deltas stay until folded).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

from aiohttp import web

from storage import reactions
from storage.db import Database

from service.resilience.failures import DATABASE_ERRORS

from .keys import DB, FOLDS, READS, SETTINGS

log = logging.getLogger("arbor.reactions")


async def fold_once(app: web.Application) -> int:
    """One round: fold batches until none is full; return the posts folded."""
    db: Database = app[DB]
    batch = app[SETTINGS].reactions_fold_batch
    total = 0
    while True:
        folded = await reactions.fold(db, batch)
        total += len(folded)
        reads = app.get(READS)
        if folded and reads is not None:
            reads.cache.versions.bump(*{conversation for _post, conversation in folded})
        if len(folded) < batch:
            return total


async def _loop(app: web.Application) -> None:
    last_warning = -1e9
    stats = app.get(FOLDS)
    while True:
        await asyncio.sleep(app[SETTINGS].reactions_fold_interval_ms / 1000)
        try:
            folded = await fold_once(app)
            if stats is not None:
                stats.folded(folded)
        except DATABASE_ERRORS as e:
            if stats is not None:
                stats.failures += 1
            if time.monotonic() - last_warning > 30:
                log.warning("folding reaction counters failed (%s: %s); retrying",
                            type(e).__name__, e)
                last_warning = time.monotonic()
        except Exception:
            if stats is not None:
                stats.failures += 1
            log.exception("folding reaction counters failed")


async def run(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the folding task for the app's lifetime (after the database is up)."""
    task = asyncio.create_task(_loop(app), name="arbor-reaction-folder")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
