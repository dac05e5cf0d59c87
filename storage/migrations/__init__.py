"""The schema: numbered SQL migrations (the NNNN_name.sql files of this package), and
apply(), which runs the pending ones at start-up.

Each migration runs in its own transaction; an advisory lock keeps two processes that
start together from applying the same one twice. May import: asyncpg and the standard
library only (it runs before anything else exists).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg

log = logging.getLogger("arbor.migrations")
MIGRATIONS_DIR = Path(__file__).parent
_LOCK_KEY = 0x4172626F72  # "Arbor"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    versions = [v for v, _ in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError("two migrations share a number")
    return found


async def apply(con: asyncpg.Connection) -> list[int]:
    """Apply every migration not yet applied; return the versions applied now."""
    await con.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                                 version integer PRIMARY KEY,
                                 name text NOT NULL,
                                 applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, path in available():
            if version in done:
                continue
            async with con.transaction():
                await con.execute(path.read_text())
                await con.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                  version, path.name)
            log.info("applied migration %s", path.name)
            applied.append(version)
        return applied
    finally:
        await con.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
