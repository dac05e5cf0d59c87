"""`arbor import FILE`: posts from another system as JSON lines, in any order.

One post per line (the fields of service/inputs/import_items.py); `-` reads standard input. Bad
lines are reported with their line number and skipped; the rest are imported, a transaction
each, through the same path as the admin bulk endpoint. Prints a JSON report with the rate.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import IO, Any, Callable

import orjson

from storage import migrations
from storage.db import Database
from storage.ingestion import UnknownAuthor, ingest_one

from service.inputs.import_items import ItemError, parse_item

from .common import settings_of, with_database

MAX_REPORTED_ERRORS = 100


async def import_lines(db: Database, lines: IO[str], max_text: int) -> dict[str, Any]:
    report: dict[str, Any] = {"imported": 0, "pending": 0, "duplicate": 0, "errors": 0,
                              "first_errors": []}
    started = time.perf_counter()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            outcome = await ingest_one(db, parse_item(orjson.loads(line), max_text))
        except (ItemError, orjson.JSONDecodeError, UnknownAuthor) as e:
            report["errors"] += 1
            if len(report["first_errors"]) < MAX_REPORTED_ERRORS:
                message = f"author_id {e.args[0]} is not an account" \
                    if isinstance(e, UnknownAuthor) else str(e)
                report["first_errors"].append({"line": number, "message": message[:300]})
            continue
        report[outcome] += 1
    seconds = time.perf_counter() - started
    done = report["imported"] + report["pending"] + report["duplicate"]
    report["seconds"] = round(seconds, 3)
    report["posts_per_second"] = round(done / seconds) if seconds > 0 else None
    return report


async def _run(dsn: str, path: str, max_text: int) -> dict[str, Any]:
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.pool.acquire() as con:
            await migrations.apply(con)
        if path == "-":
            return await import_lines(db, sys.stdin, max_text)
        with open(path, encoding="utf-8") as lines:
            return await import_lines(db, lines, max_text)
    finally:
        await db.close()


def cmd_import(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    try:
        report = with_database(settings, lambda dsn: asyncio.run(
            _run(dsn, args.file, settings.max_post_length)))
    except OSError as e:
        print(f"arbor: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if report["errors"] == 0 else 1


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    imp = command("import", cmd_import, "import posts from a JSON-lines FILE (- for stdin)")
    imp.add_argument("file", metavar="FILE")
