"""`arbor seed --preset NAME --export PATH`: seed (idempotent), then write what a load test
needs about the preset to PATH as JSON (storage/loadtest_export.py: post ids per
conversation, the huge conversation, accounts with new tokens, labelled replies so section
cursors exist). loadtest/ reads that file; nobody needs psql.

The file holds bearer tokens: it is written with mode 0600.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import orjson

from storage import loadtest_export, migrations, seeding
from storage.db import Database


def register_options(seed: argparse.ArgumentParser) -> None:
    seed.add_argument("--export", metavar="PATH",
                      help="after seeding, write the load-test data (ids, tokens) to PATH")
    seed.add_argument("--export-accounts", type=int, default=40, metavar="N",
                      help="accounts to mint a token for (default 40)")
    seed.add_argument("--export-labels", type=int, default=10, metavar="N",
                      help="label N low-ranked replies per conversation spam, and N abusive, "
                           "so section cursors exist (default 10; 0: label nothing)")


async def seed_and_export(dsn: str, preset: str, path: str, *, accounts: int,
                          labels: int) -> dict[str, Any]:
    """The seed report, with "export": {path, conversations, accounts, labelled}."""
    report = await seeding.seed_dsn(dsn, preset)
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.pool.acquire() as con:
            await migrations.apply(con)
        data = await loadtest_export.export(db, preset, accounts=accounts, labels=labels)
    finally:
        await db.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    report["export"] = {"path": path, "conversations": len(data["conversations"]),
                        "huge_conversation": data["huge_conversation"],
                        "accounts": len(data["accounts"]),
                        "labelled": sum(n for c in data["labelled"].values()
                                        for n in c.values())}
    return report
