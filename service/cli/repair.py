"""`arbor repair [--chunk N] [--dry-run]`: find and fix rows that disagree with the write
path's rules (storage/repair.py), in short transactions, safe while the service runs.
Prints a JSON report: per kind, how many were found and fixed (and a few example ids), posts
scanned, seconds. Exit 0; 1 when a chunk failed twice or another repair is running."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Callable

import orjson

from storage import migrations, repair, section_updates
from storage.db import Database

from service.core.settings import section_thresholds

from .common import settings_of, with_database

# A recount under a post with a million replies reads a million index entries: allow it more
# than the service's per-statement timeout.
STATEMENT_TIMEOUT_MS = 120_000


async def _run(dsn: str, chunk: int, dry_run: bool) -> dict[str, Any]:
    db = await Database.connect(dsn, min_size=1, max_size=2,
                                statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        async with db.pool.acquire() as con:
            await migrations.apply(con)
        return await repair.repair(db, chunk=chunk, dry_run=dry_run)
    finally:
        await db.close()


def cmd_repair(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    # a moved reply's section is recomputed with the service's thresholds
    section_updates.configure(section_thresholds(settings))
    try:
        report = with_database(settings, lambda dsn: asyncio.run(
            _run(dsn, args.chunk, args.dry_run)))
    except repair.RepairRunning as e:
        print(f"arbor: {e}", file=sys.stderr)
        return 1
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if report["failed_chunks"] == 0 else 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    rep = command("repair", cmd_repair,
                  "find and fix drifted conversations, pending replies, listed flags and counters")
    rep.add_argument("--chunk", type=_positive, default=repair.DEFAULT_CHUNK, metavar="N",
                     help=f"posts per transaction (default {repair.DEFAULT_CHUNK})")
    rep.add_argument("--dry-run", action="store_true", help="report what is wrong; change nothing")
