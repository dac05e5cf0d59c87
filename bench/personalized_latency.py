"""Personalized vs anonymous render latency on the 1,000,000-reply conversation.

    python bench/personalized_latency.py [--requests 300] [--overlap 100]

Uses the `bench` preset (see render_latency.py; same data folder, so a rerun skips seeding),
adds one viewer with 1,000 blocks, 1,000 mutes and 1,000 follows (`--overlap` of each are
authors of the conversation's replies, the rest other accounts), then alternates anonymous
and personalized GET /v1/conversations/{replies_1m} at default limits, one client, nothing
cached but the viewer's own relations (viewer_cache_ttl_s; run with --no-viewer-cache to load
them on every request too).

Target: p50(personalized) / p50(anonymous) <= 1.5. Exit status 1 when it fails.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from harness import DATA_DIR, arbor_service, bench_database, percentile  # noqa: E402
from render_latency import _count_nodes, _one, _wait_healthy  # noqa: E402
from storage.account_tokens import create_token  # noqa: E402
from storage.db import Database  # noqa: E402

RATIO_TARGET = 1.5
RELATIONS = 1000
VIEWER_ID = 7_000_000_000_000  # far from the seeded ids
OTHERS_FROM = VIEWER_ID + 1


async def _make_viewer(dsn: str, conversation: int, overlap: int) -> str:
    """The heavy viewer for this overlap (idempotent) and a fresh token for it."""
    viewer_id = VIEWER_ID - 1 - overlap
    con = await asyncpg.connect(dsn)
    try:
        if not await con.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)", viewer_id):
            authors = [r["author_id"] for r in await con.fetch(
                "SELECT DISTINCT author_id FROM posts WHERE conversation_id = $1 "
                "AND author_id <> (SELECT author_id FROM posts WHERE id = $1) LIMIT 2000",
                conversation)]
            rng = random.Random(42)
            rng.shuffle(authors)
            assert len(authors) >= 3 * overlap, "not enough conversation authors"
            others = list(range(OTHERS_FROM, OTHERS_FROM + 3 * (RELATIONS - overlap)))
            await con.executemany(
                "INSERT INTO accounts (id, handle, has_avatar) VALUES ($1, $2, true) "
                "ON CONFLICT DO NOTHING",
                [(viewer_id, f"heavy_viewer_{overlap}")] + [(i, f"other_{i}") for i in others])
            n = RELATIONS - overlap
            targets = {kind: authors[k * overlap:(k + 1) * overlap] + others[k * n:(k + 1) * n]
                       for k, kind in enumerate(("blocks", "mutes", "follows"))}
            columns = {"blocks": ["blocker_id", "blocked_id"], "mutes": ["muter_id", "muted_id"],
                       "follows": ["follower_id", "followee_id"]}
            for kind, ids in targets.items():
                await con.copy_records_to_table(kind, records=[(viewer_id, t) for t in ids],
                                                columns=columns[kind])
            await con.execute("ANALYZE accounts, blocks, mutes, follows")
    finally:
        await con.close()
    db = await Database.connect(dsn, min_size=1, max_size=1)
    try:
        return (await create_token(db, viewer_id, "bench")).token
    finally:
        await db.close()


async def _measure(base, root, token, requests, warmup, proc):
    import orjson

    url = f"{base}/v1/conversations/{root}"
    results = {"anonymous": [], "personalized": []}
    db_ms = {"anonymous": [], "personalized": []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        await _wait_healthy(session, base, proc)
        personal = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                         headers={"Authorization": f"Bearer {token}"})
        async with personal:
            for name, s in (("anonymous", session), ("personalized", personal)):
                _, _, _, trips, body = await _one(s, url)
                view = orjson.loads(body)
                print(f"{name}: {_count_nodes(view['focal']['replies'])} reply nodes, "
                      f"{len(view['focal']['replies']['items'])} top replies, {trips} db round trips")
            for _ in range(warmup):
                await _one(session, url)
                await _one(personal, url)
            for _ in range(requests):
                for name, s in (("anonymous", session), ("personalized", personal)):
                    client_ms, _, db, _, _ = await _one(s, url)
                    results[name].append(client_ms)
                    db_ms[name].append(db)
    return results, db_ms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--overlap", type=int, default=0,
                        help="how many of each relation are authors in the conversation (0: the "
                             "same tree as anonymous, so the ratio is the rules' own cost; 100: "
                             "a fifth of the replies hidden, a tenth promoted)")
    parser.add_argument("--no-viewer-cache", action="store_true")
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args(argv)

    settings = ["render_cache_ttl_s=0", "admission_enabled=false"]  # uncached, unshed
    if args.no_viewer_cache:
        settings.append("viewer_cache_ttl_s=0")
    with bench_database(args.data_dir) as (dsn, report):
        root = int(report["roots"]["replies_1m"])
        token = asyncio.run(_make_viewer(dsn, root, args.overlap))
        with arbor_service(dsn, *settings) as (base, proc):
            results, db_ms = asyncio.run(_measure(base, root, token, args.requests,
                                                  args.warmup, proc))

    print(f"\n{args.requests} requests each, interleaved, one client, default limits; viewer: "
          f"{RELATIONS} blocks, {RELATIONS} mutes, {RELATIONS} follows ({args.overlap} of each "
          f"among the conversation's authors); viewer cache "
          f"{'off' if args.no_viewer_cache else 'on'}")
    p50 = {}
    for name, values in results.items():
        p50[name] = percentile(values, 50)
        print(f"{name:<13} p50 {p50[name]:6.2f} ms   p99 {percentile(values, 99):6.2f} ms   "
              f"db p50 {percentile(db_ms[name], 50):6.2f} ms")
    ratio = p50["personalized"] / p50["anonymous"]
    ok = ratio <= RATIO_TARGET
    print(f"{'PASS' if ok else 'FAIL'}: personalized/anonymous p50 ratio {ratio:.2f} <= {RATIO_TARGET}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
