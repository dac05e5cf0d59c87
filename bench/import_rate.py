"""Import rate: posts/s through `arbor import`'s path, in order and shuffled.

    python bench/import_rate.py [--posts 20000]

A throw-away embedded PostgreSQL; 200 accounts; a random reply tree of --posts posts (a tenth
quote another post, a twentieth deleted), written as JSON lines once in id order and once
shuffled (most replies then arrive before their parent and wait), each imported into a fresh
database. Prints posts/s for both and checks that nothing is left waiting.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import random
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from service.import_cli import import_lines  # noqa: E402
from storage import migrations  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def tree(n: int, rng: random.Random) -> list[dict]:
    posts = []
    for i in range(n):
        pid = 10_000_000 + i
        item = {"id": str(pid), "author_id": str(1 + rng.randrange(200)),
                "text": f"post {i}", "created_at": (T0 + timedelta(seconds=i)).isoformat()}
        if i % 50 and i > 1:  # every 50th post is a root
            item["in_reply_to_id"] = str(10_000_000 + rng.randrange(max(1, i - 200), i))
        if i and rng.random() < 0.1:
            item["quote_of_id"] = str(10_000_000 + rng.randrange(i))
        if rng.random() < 0.05:
            item["deleted_at"] = (T0 + timedelta(days=1)).isoformat()
        posts.append(item)
    return posts


async def run(lines: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", FAST_UNSAFE_OPTIONS)
        dsn = server.start()
        try:
            db = await Database.connect(dsn, min_size=1, max_size=2)
            async with db.pool.acquire() as con:
                await migrations.apply(con)
            await db.pool.execute(
                "INSERT INTO accounts (id, handle, has_avatar) "
                "SELECT g, 'u' || g, true FROM generate_series(1, 200) g")
            report = await import_lines(db, io.StringIO("\n".join(lines)), 500)
            report["left_pending"] = await db.fetchval("SELECT count(*) FROM pending_posts")
            await db.close()
            return report
        finally:
            server.stop("immediate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(7)
    posts = tree(args.posts, rng)
    ordered = [orjson.dumps(p).decode() for p in posts]
    shuffled = ordered[:]
    rng.shuffle(shuffled)
    ok = True
    for name, lines in (("in order", ordered), ("shuffled", shuffled)):
        r = asyncio.run(run(lines))
        print(f"{name:<9} {r['imported'] + r['pending']:>7,} posts in {r['seconds']:6.1f} s = "
              f"{r['posts_per_second']:>6,} posts/s; errors {r['errors']}, "
              f"left waiting {r['left_pending']}")
        ok = ok and r["errors"] == 0 and r["left_pending"] == 0
    print("PASS" if ok else "FAIL", ": every post imported and attached")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
