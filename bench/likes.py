"""Like throughput on one hot post: N concurrent likers, likes/s, and the exact final count.

    python bench/likes.py [--likers 2000] [--concurrency 64] [--rounds 2] [--baseline CHECKOUT]

Reuses the database of bench/compressed_throughput.py (.arbor/http-bench-pgdata, `demo`
preset), started durable (fsync and synchronous commit on: a row lock is held until the
commit is flushed, as in production), creates `--likers` accounts with tokens, and per round a new hot post. Two arms,
interleaved, the order alternating by round:

  http      PUT /v1/posts/{id}/like through one Arbor process (`--concurrency` connections,
            each liker once), the reaction folder running every 500 ms meanwhile;
  storage   storage/reactions.like straight from a 32-connection asyncpg pool (what the
            database itself sustains, without the Python server in the way),

each with the counter spread over 16 delta rows (the default) and over 1 (a single counter
row: every like of the post queues on its lock, the design this avoids); with --baseline,
also PUT .../like through another checkout's Arbor (16 shards), started beside this one on the
same database, so that each is the other's peer on the change feed (every write's fence then
waits for the other process's answer, as with two workers; a checkout from before
migration 0011 loses its reactions trigger on this database too, so compare across that
one after the other instead). After each run the
deltas are folded and post_counts.likes must equal the likes rows recounted and the number of
likers exactly. Prints likes/s per arm and `uptime` load; the machine is shared, so compare
arms within a run, not across runs.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from compressed_throughput import _cpu_s, demo_database  # noqa: E402
from harness import arbor_service, verdict  # noqa: E402
from storage import account_tokens, counter_writes, post_writes, reactions  # noqa: E402
from storage.db import Database  # noqa: E402

ADMIN = "bench-admin-token"
_BASE_ID = 7_000_000_000


async def _accounts(dsn: str, n: int) -> list[tuple[int, str]]:
    """n likers with tokens (created once; reused by later runs)."""
    db = await Database.connect(dsn, min_size=1, max_size=4)
    try:
        have = await db.fetch("SELECT id FROM accounts WHERE id >= $1 AND id < $2 ORDER BY id",
                              _BASE_ID, _BASE_ID + n)
        existing = {r["id"] for r in have}
        out = []
        for i in range(n):
            account = _BASE_ID + i
            if account not in existing:
                await post_writes.insert_account(db, account, f"liker{i}", f"Liker {i}")
            out.append((account, (await account_tokens.create_token(db, account, "bench")).token))
        return out
    finally:
        await db.close()


async def _hot_post(dsn: str) -> int:
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        return (await post_writes.insert_post(db, _BASE_ID, "a viral post")).id
    finally:
        await db.close()


async def _http(base: str, post: int, likers, concurrency: int) -> tuple[float, int]:
    queue = list(likers)
    bad = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal bad
            while queue:
                _, token = queue.pop()
                async with session.put(f"{base}/v1/posts/{post}/like",
                                       headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    bad += r.status != 200
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(likers) / (time.perf_counter() - started), bad


async def _storage(dsn: str, post: int, likers, shards: int) -> tuple[float, int]:
    db = await Database.connect(dsn, min_size=32, max_size=32)
    queue = list(likers)
    try:
        async def worker():
            while queue:
                account, _ = queue.pop()
                await reactions.like(db, post, account, shards=shards)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(64)))
        return len(likers) / (time.perf_counter() - started), 0
    finally:
        await db.close()


async def _check(dsn: str, post: int) -> tuple[int, int]:
    """(folded counter, recount) after folding everything pending."""
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        while await reactions.fold(db):
            pass
        counter = await db.fetchval("SELECT likes FROM post_counts WHERE post_id = $1", post)
        return counter, (await counter_writes.recount_reactions(db, post))[0]
    finally:
        await db.close()


async def _set(base: str, **changes) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.patch(f"{base}/v1/admin/settings", json=changes,
                           headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 200, await r.text()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--likers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout: its Arbor as one more http arm (16 shards), "
                             "on the same database (the two processes are then each "
                             "other's peers on the change feed, as two workers are)")
    args = parser.parse_args(argv)
    print(f"load before: {os.getloadavg()}")
    server, dsn, _ = demo_database(durable=True)
    results: dict[str, list[float]] = {}
    exact, cpu = [], []
    try:
        likers = asyncio.run(_accounts(dsn, args.likers))
        with contextlib.ExitStack() as stack:
            base, proc = stack.enter_context(arbor_service(
                dsn, f"admin_token={ADMIN}", "admission_enabled=false", "db_pool_max=32"))
            services = {"http": (base, proc)}
            arms = [(kind, shards) for kind in ("http", "storage") for shards in (16, 1)]
            if args.baseline:
                services["baseline http"] = stack.enter_context(arbor_service(
                    dsn, f"admin_token={ADMIN}", "admission_enabled=false", "db_pool_max=32",
                    root=args.baseline))
                arms.insert(1, ("baseline http", 16))
            for i in range(args.rounds):
                for kind, shards in (arms if i % 2 == 0 else arms[::-1]):
                    post = asyncio.run(_hot_post(dsn))
                    if kind in services:
                        base, proc = services[kind]
                        asyncio.run(_set(base, reactions_counter_shards=shards))
                        before = _cpu_s(proc.pid)
                        rate, bad = asyncio.run(_http(base, post, likers, args.concurrency))
                        per = (_cpu_s(proc.pid) - before) / len(likers) * 1e6
                        if kind == "http":
                            cpu.append(per)
                        print(f"    server CPU {per:.0f} us/like: {1e6 / per:.0f} likes/s per "
                              "core of the Python process")
                    else:
                        rate, bad = asyncio.run(_storage(dsn, post, likers, shards))
                    counter, recount = asyncio.run(_check(dsn, post))
                    name = f"{kind} shards={shards}"
                    results.setdefault(name, []).append(rate)
                    exact.append(counter == recount == len(likers) and bad == 0)
                    print(f"  {name:<18} {rate:7.0f} likes/s  final count {counter} "
                          f"(recount {recount}, likers {len(likers)}, {bad} not 200)")
    finally:
        if server.started_here:
            server.stop()
    print(f"load after: {os.getloadavg()}")
    best = {name: max(v) for name, v in results.items()}
    print("\nbest of {}: ".format(args.rounds)
          + ", ".join(f"{n} {v:.0f} likes/s" for n, v in best.items()))
    per_core = 1e6 / min(cpu)
    return verdict([
        (all(exact), f"every run's folded count == recount == likers ({sum(exact)}/{len(exact)})"),
        (best["storage shards=16"] >= 1000,
         f"the database takes {best['storage shards=16']:.0f} likes/s on one post (>= 1000)"),
        (per_core >= 1000, f"one server process costs {min(cpu):.0f} us of CPU per like "
                           f"(first like of each account, token not cached): {per_core:.0f} "
                           f"likes/s per core (>= 1000)"),
    ])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
