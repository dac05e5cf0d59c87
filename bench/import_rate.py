"""Import rate: posts/s through `arbor import`'s path, in order, shuffled, and shuffled into
concurrent streams; optionally side by side with another checkout (today's code).

    python bench/import_rate.py [--posts 20000] [--streams 4] [--rounds 3]
                                [--shape forest|one] [--baseline DIR]

One throw-away embedded PostgreSQL for the whole run; every measurement imports into a fresh
database of it (200 accounts), in a subprocess that runs the code of this checkout or of
--baseline DIR (for example `git archive main | tar -x -C DIR`), so both codes meet the same
server, data and machine. The posts: a random reply tree of --posts posts (a tenth quote another
post, a twentieth deleted); `forest`: a root every 50 posts, each reply answering one of the
200 posts before it (many conversations); `one`: a single conversation. Modes: `in order` (one
stream, id order), `shuffled` (one stream; most replies arrive before their parent and wait),
`concurrent` (the shuffled posts dealt into --streams streams imported at once). With
--baseline, each round runs every mode for both codes, alternating which goes first, and the
verdict compares the median rates; the concurrent rate must stay within 20% of the baseline's.
After each import it counts the replies left waiting although their parent arrived, the posts
whose counters differ from a recount, and this code's deadlock retries (all must be 0).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
MODES = ("in order", "shuffled", "concurrent")

# Replies waiting although their parent is in posts, and posts whose reply or quote counters
# differ from a recount (the rules of storage/post_writes.py).
_STUCK = """SELECT count(*) FROM pending_posts pp
            WHERE EXISTS (SELECT 1 FROM posts p WHERE p.id = pp.in_reply_to_id)"""
_MISCOUNTED = """
    SELECT count(*) FROM posts s JOIN post_counts pc ON pc.post_id = s.id
    WHERE (pc.replies_normal, pc.replies_low_quality, pc.replies_offensive) <> (
              SELECT count(*) FILTER (WHERE c.section = 0), count(*) FILTER (WHERE c.section = 1),
                     count(*) FILTER (WHERE c.section = 2)
              FROM posts c WHERE c.conversation_id = s.conversation_id
                               AND c.in_reply_to_id = s.id AND c.listed)
       OR pc.quotes <> (SELECT count(*) FROM posts q JOIN accounts a ON a.id = q.author_id
                        WHERE q.quote_of_id = s.id AND q.deleted_at IS NULL
                          AND a.state = 'active' AND NOT a.protected)"""


def tree(n: int, rng: random.Random, shape: str) -> list[dict]:
    posts = []
    for i in range(n):
        pid = 10_000_000 + i
        item = {"id": str(pid), "author_id": str(1 + rng.randrange(200)),
                "text": f"post {i}", "created_at": (T0 + timedelta(seconds=i)).isoformat()}
        if i > 1 and (shape == "one" or i % 50):  # forest: every 50th post is a root
            item["in_reply_to_id"] = str(10_000_000 + rng.randrange(max(1, i - 200), i))
        if i and rng.random() < 0.1:
            item["quote_of_id"] = str(10_000_000 + rng.randrange(i))
        if rng.random() < 0.05:
            item["deleted_at"] = (T0 + timedelta(days=1)).isoformat()
        posts.append(item)
    return posts


# -- the worker: one import, in a subprocess, with the code of one checkout -------------------

async def _work(dsn: str, streams: list[str]) -> dict:
    import io

    from service.cli.import_posts import import_lines
    from storage import migrations
    from storage.db import Database

    db = await Database.connect(dsn, min_size=1, max_size=len(streams) + 1)
    try:
        async with db.pool.acquire() as con:
            await migrations.apply(con)
        await db.pool.execute(
            "INSERT INTO accounts (id, handle, has_avatar) "
            "SELECT g, 'u' || g, true FROM generate_series(1, 200) g")
        started = time.perf_counter()
        reports = await asyncio.gather(*(import_lines(db, io.StringIO(Path(s).read_text()), 500)
                                         for s in streams))
        seconds = time.perf_counter() - started
        done = sum(r["imported"] + r["pending"] + r["duplicate"] for r in reports)
        statements = db.queries_executed
        async with db.connection() as con:    # the checks: not timed, not bounded
            await con.execute("SET statement_timeout = 0")
            stuck = await con.raw.fetchval(_STUCK, timeout=600)
            miscounted = await con.raw.fetchval(_MISCOUNTED, timeout=600)
            await con.execute("RESET statement_timeout")
        return {"posts": done, "seconds": seconds, "posts_per_second": done / seconds,
                "statements_per_post": statements / done,
                "errors": sum(r["errors"] for r in reports),
                "stuck": stuck, "miscounted": miscounted}
    finally:
        await db.close()


def worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(args.code).resolve()))
    import storage
    assert Path(storage.__file__).resolve().parent.parent == Path(args.code).resolve(), \
        f"{storage.__file__} is not from {args.code}"
    print(json.dumps(asyncio.run(_work(args.dsn, args.stream))))
    return 0


# -- the driver ------------------------------------------------------------------------------

def measure(code: Path, dsn_of, streams: list[Path]) -> dict:
    """One import into a fresh database, by a subprocess running `code`'s modules."""
    dsn = dsn_of()
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", "--code", str(code),
         "--dsn", dsn, *(a for s in streams for a in ("--stream", str(s)))],
        cwd=code, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(code)})
    if out.returncode:                      # reported, and the run goes on
        return {"failed": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["deadlock_retries"] = out.stderr.count("ingestion: a deadlock")  # this code's log
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", choices=("forest", "one"), default="forest")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--baseline", help="another checkout to run side by side")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="append", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    modes = [m.strip() for m in args.modes.split(",")]
    codes = {"this": ROOT}
    if args.baseline:
        codes = {"baseline": Path(args.baseline).resolve(), "this": ROOT}

    sys.path.insert(0, str(ROOT))
    import asyncpg

    from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres

    rng = random.Random(7)
    posts = tree(args.posts, rng, args.shape)
    ordered = [json.dumps(p) for p in posts]
    shuffled = ordered[:]
    rng.shuffle(shuffled)
    rates: dict[tuple[str, str], list[float]] = {}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, lines in (("in order", [ordered]), ("shuffled", [shuffled]),
                            ("concurrent", [shuffled[i::args.streams]
                                            for i in range(args.streams)])):
            files[name] = []
            for i, chunk in enumerate(lines):
                path = Path(tmp) / f"{name.replace(' ', '_')}_{i}.jsonl"
                path.write_text("\n".join(chunk) + "\n")
                files[name].append(path)
        server = EmbeddedPostgres(Path(tmp) / "pg", FAST_UNSAFE_OPTIONS)
        admin_dsn = server.start()
        databases = iter(range(1_000_000))

        def dsn_of() -> str:
            name = f"bench_{next(databases)}"

            async def create():
                con = await asyncpg.connect(admin_dsn)
                try:
                    await con.execute(f"CREATE DATABASE {name}")
                finally:
                    await con.close()
            asyncio.run(create())
            return server.dsn(name)

        try:
            print(f"{args.posts:,} posts ({args.shape}), {args.streams} concurrent streams, "
                  f"{args.rounds} rounds, codes: " + ", ".join(f"{k}={v}" for k, v in codes.items()))
            for round_no in range(args.rounds):
                for mode in modes:
                    order = list(codes.items())
                    if round_no % 2:
                        order.reverse()              # alternate which code goes first
                    for label, code in order:
                        r = measure(code, dsn_of, files[mode])
                        if "failed" in r:
                            ok = ok and label == "baseline"
                            print(f"round {round_no + 1} {label:<8} {mode:<10} FAILED: "
                                  f"{r['failed']}", flush=True)
                            continue
                        rates.setdefault((label, mode), []).append(r["posts_per_second"])
                        good = (r["errors"] == 0 and r["stuck"] == 0 and r["miscounted"] == 0
                                and r["deadlock_retries"] == 0)
                        ok = ok and (good or label == "baseline")
                        print(f"round {round_no + 1} {label:<8} {mode:<10} {r['posts']:>7,} posts "
                              f"in {r['seconds']:6.1f} s = {r['posts_per_second']:>6,.0f} posts/s "
                              f"({r['statements_per_post']:.1f} statements/post); "
                              f"errors {r['errors']}, waiting with parent {r['stuck']}, "
                              f"miscounted {r['miscounted']}, deadlock retries "
                              f"{r['deadlock_retries']}", flush=True)
        finally:
            server.stop("immediate")
    print()
    checks = [(ok, "this code: every post imported, attached and counted")]
    for mode in modes:
        if ("this", mode) not in rates:
            continue
        this = statistics.median(rates[("this", mode)])
        line = f"{mode:<10} this {this:>6,.0f} posts/s"
        if ("baseline", mode) in rates:
            base = statistics.median(rates[("baseline", mode)])
            line += f", baseline {base:>6,.0f} posts/s, ratio {this / base:.2f}"
            if mode == "concurrent":
                checks.append((this >= 0.8 * base,
                               f"concurrent rate within 20% of the baseline's ({this / base:.2f})"))
        print(line + " (medians)")
    for passed, text in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {text}")
    return 0 if all(passed for passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
