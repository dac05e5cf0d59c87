"""What an uncached render costs beyond its own SQL, side by side on the same data.

    python bench/render_cost.py [--rounds 150] [--warmup 20] [--mastodon-rounds 3]
                                [--baseline /path/to/another/checkout] [--data-dir ...]

Seeds (or reuses) the `bench` preset and starts the service (render cache off, admission
off: uncached renders, one client) and, with --baseline, a second service from another
checkout on the same database. Then, interleaved round by round (the order alternating):

  * the served render of replies_1k and of replies_1m at default limits: the server's own
    time (Server-Timing `total`: from the first middleware that times to the handler's
    return) and the client's;
  * the same render's SQL statements alone: captured once per case by running the pipeline
    in this process with a query logger (statement text and arguments), then replayed one
    after the other on one connection of their own (the service's session settings,
    prepared statements warm), timed by this client: round trips, execution and row
    decoding, and nothing else;
  * (--mastodon-rounds times, the 1M case only) a Mastodon-style context of the same root,
    as Mastodon's Status#ancestors/#descendants build it: a recursive CTE up the ancestors
    (40) and one down the descendants ordered by path with LIMIT 4,096 (it must walk every
    descendant to order them), then the posts fetched by id with their authors and
    counters, and serialized with orjson as Arbor's post objects.

Prints p50s and the ratios the issue names: server time / SQL alone (target <= 1.5), the
1M/1K p50 (target <= 1.1), and Mastodon-style / Arbor on the 1M root, with the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import orjson  # noqa: E402

from harness import DATA_DIR, arbor_service, bench_database, percentile, verdict  # noqa: E402
from harness import wait_healthy  # noqa: E402

from storage.db import Database  # noqa: E402
from storage.post_queries import POST_COLUMNS, POST_JOINS, post_from_record  # noqa: E402
from service.core.settings import load_settings  # noqa: E402
from service.inputs.query import parse_view_limits  # noqa: E402
from service.pipeline import conversation, presenters  # noqa: E402
from service.pipeline.cursors import CursorCodec  # noqa: E402
from service.pipeline.deps import Deps  # noqa: E402

COST_TARGET = 1.5
RATIO_TARGET = 1.1
_TOTAL = re.compile(r"total;dur=([0-9.]+)")
SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan", "statement_timeout": "2000"}

# Mastodon's app/models/concerns/status/threading_concern.rb, on Arbor's schema (statuses are
# posts; the conversation filter lets the walk use Arbor's children index, as Mastodon's
# in_reply_to_id index serves it there).
_ANCESTORS_SQL = """
    WITH RECURSIVE search_tree(id, in_reply_to_id, path) AS (
        SELECT id, in_reply_to_id, ARRAY[id] FROM posts WHERE id = $1
      UNION ALL
        SELECT p.id, p.in_reply_to_id, st.path || p.id
        FROM search_tree st JOIN posts p ON p.id = st.in_reply_to_id
        WHERE NOT p.id = ANY(st.path)
    )
    SELECT id FROM search_tree WHERE id <> $1 ORDER BY path LIMIT $2"""
_DESCENDANTS_SQL = """
    WITH RECURSIVE search_tree(id, path) AS (
        SELECT id, ARRAY[id] FROM posts WHERE conversation_id = $2 AND in_reply_to_id = $1
      UNION ALL
        SELECT p.id, st.path || p.id
        FROM search_tree st JOIN posts p ON p.conversation_id = $2 AND p.in_reply_to_id = st.id
        WHERE NOT p.id = ANY(st.path)
    )
    SELECT id FROM search_tree ORDER BY path LIMIT $3"""
_POSTS_SQL = f"SELECT {POST_COLUMNS} FROM posts p {POST_JOINS} WHERE p.id = ANY($1::bigint[])"


async def _capture(dsn: str, root: int) -> list[tuple[str, tuple]]:
    """The statements (text, arguments) of one uncached render of `root` at default limits."""
    settings = load_settings(env={}, overrides={"database_url": dsn})
    db = await Database.connect(dsn, min_size=1, max_size=1)
    seen: list[tuple[str, tuple]] = []
    try:
        async with db.pool.acquire() as con:
            con.add_query_logger(lambda r: seen.append((r.query, tuple(r.args))))
        deps = Deps(db=db, cursors=CursorCodec("bench", 60), settings=settings)
        await conversation.render_conversation(deps, root, parse_view_limits({}, settings))
    finally:
        await db.close()
    return seen


async def _sql_alone(con: asyncpg.Connection, statements: list[tuple[str, tuple]]) -> float:
    started = time.perf_counter()
    for sql, args in statements:
        await con.fetch(sql, *args)
    return (time.perf_counter() - started) * 1000


async def _mastodon(con: asyncpg.Connection, root: int, conversation_id: int) -> tuple[float, int, int]:
    started = time.perf_counter()
    up = await con.fetch(_ANCESTORS_SQL, root, 40)
    down = await con.fetch(_DESCENDANTS_SQL, root, conversation_id, 4096)
    ids = [r[0] for r in up] + [root] + [r[0] for r in down]
    rows = {r[0]: post_from_record(r) for r in await con.fetch(_POSTS_SQL, ids)}
    body = orjson.dumps({
        "ancestors": [presenters.post_json(rows[i], None, None) for i in ids[:len(up)] if i in rows],
        "descendants": [presenters.post_json(rows[i], None, None) for i in ids[len(up) + 1:]
                        if i in rows]}, option=orjson.OPT_UTC_Z)
    return (time.perf_counter() - started) * 1000, len(ids), len(body)


async def _render(session: aiohttp.ClientSession, url: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        client_ms = (time.perf_counter() - started) * 1000
        if resp.status != 200:
            raise SystemExit(f"GET {url}: {resp.status} {body[:200]!r}")
        total = _TOTAL.search(resp.headers.get("Server-Timing", ""))
    return client_ms, float(total.group(1)) if total else float("nan"), len(body)


async def _measure(dsn: str, bases: dict[str, str], procs, roots: dict[str, int], rounds: int,
                   warmup: int, mastodon_rounds: int) -> dict:
    statements = {name: await _capture(dsn, root) for name, root in roots.items()}
    for name, st in statements.items():
        print(f"{name}: {len(st)} statements per render")
    con = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
    conv_1m = await con.fetchval("SELECT conversation_id FROM posts WHERE id = $1", roots["1M"])
    out = {"sql": {n: [] for n in roots}, "mastodon": [],
           **{label: {n: {"client": [], "server": []} for n in roots} for label in bases}}
    sizes: dict = {}
    try:
        async with aiohttp.ClientSession() as session:
            for base, proc in zip(bases.values(), procs):
                await wait_healthy(session, base, proc)
            for _ in range(warmup):
                for name, root in roots.items():
                    await _sql_alone(con, statements[name])
                    for base in bases.values():
                        await _render(session, f"{base}/v1/conversations/{root}")
            for i in range(rounds):
                for name, root in roots.items():
                    steps = [("sql", None)] + list(bases.items())
                    for label, base in (steps if i % 2 == 0 else steps[::-1]):
                        if label == "sql":
                            out["sql"][name].append(await _sql_alone(con, statements[name]))
                            continue
                        client_ms, server_ms, size = await _render(
                            session, f"{base}/v1/conversations/{root}")
                        out[label][name]["client"].append(client_ms)
                        out[label][name]["server"].append(server_ms)
                        sizes[label, name] = size
            slow = await asyncpg.connect(dsn, server_settings={**SERVER_SETTINGS,
                                                                "statement_timeout": "0"})
            for _ in range(mastodon_rounds):  # 1M only; seconds each
                ms, posts, size = await _mastodon(slow, roots["1M"], conv_1m)
                out["mastodon"].append(ms)
                sizes["mastodon"] = (posts, size)
            await slow.close()
    finally:
        await con.close()
    out["sizes"] = sizes
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--mastodon-rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout to run side by side (e.g. a worktree of main)")
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args(argv)
    settings = ("render_cache_ttl_s=0", "admission_enabled=false")
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        dsn, report = stack.enter_context(bench_database(args.data_dir))
        roots = {"1K": int(report["roots"]["replies_1k"]), "1M": int(report["roots"]["replies_1m"])}
        bases, procs = {}, []
        for label, root in [("this", ROOT)] + ([("baseline", args.baseline)] if args.baseline else []):
            base, proc = stack.enter_context(arbor_service(dsn, *settings, root=root))
            bases[label], procs = base, procs + [proc]
        started = time.monotonic()
        r = asyncio.run(_measure(dsn, bases, procs, roots, args.rounds, args.warmup,
                                 args.mastodon_rounds))
        elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    p50 = lambda xs: percentile(xs, 50)  # noqa: E731
    print(f"\n{args.rounds} interleaved rounds in {elapsed:.0f} s; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (2 CPUs, shared)")
    print("(ms; server - SQL: the render's own CPU and waits, the part this issue is about)")
    print(f"{'':<14} {'SQL alone':>10} {'server p50':>11} {'server/SQL':>11} {'server-SQL':>11} "
          f"{'client p50':>11} {'bytes':>9}")
    checks = []
    for label in bases:
        for name in roots:
            sql, server = p50(r["sql"][name]), p50(r[label][name]["server"])
            print(f"{label + ' ' + name:<14} {sql:>10.2f} {server:>11.2f} {server / sql:>11.2f} "
                  f"{server - sql:>11.2f} "
                  f"{p50(r[label][name]['client']):>11.2f} {r['sizes'][label, name]:>9,}")
        ratio = p50(r[label]["1M"]["client"]) / p50(r[label]["1K"]["client"])
        cost = p50(r[label]["1M"]["server"]) / p50(r["sql"]["1M"])
        print(f"{label}: 1M/1K client p50 ratio {ratio:.2f}; 1M server / SQL alone {cost:.2f}")
        if label == "this":
            checks += [(cost <= COST_TARGET, f"1M render server time / its SQL alone {cost:.2f} "
                                             f"<= {COST_TARGET}"),
                       (ratio <= RATIO_TARGET, f"1M/1K p50 ratio {ratio:.2f} <= {RATIO_TARGET}")]
    if r["mastodon"]:
        posts, size = r["sizes"]["mastodon"]
        m = p50(r["mastodon"])
        for label in bases:
            print(f"Mastodon-style context of the 1M root ({posts:,} posts, {size:,} bytes): "
                  f"{m:.0f} ms p50 of {len(r['mastodon'])}, "
                  f"{m / p50(r[label]['1M']['client']):.0f}x {label}'s render")
    return verdict(checks)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
