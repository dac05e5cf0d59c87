"""Where an uncached render's CPU goes: cProfile over a stream of renders, in process.

    python bench/profile_render.py [--renders 300] [--root replies_1m] [--query 'depth=6']
                                   [--sort tottime] [--top 35] [--out /tmp/render.pstats]

Seeds (or reuses) the `bench` preset (bench/harness.py), builds the pipeline's dependencies as
the app does (service/app.py: the pool, the cursor codec, the settings) and renders the named
root `--renders` times the way the read path does (service/http/cached_render.py: the
pipeline, then the one orjson.dumps of the body), with no render cache in the way, under
cProfile (the standard library's: nothing to install; py-spy is not on this machine). Prints
the top functions and the mean wall time per render, with and without the profiler (the
profiler inflates Python-heavy code more than C: read the profile for where, the plain
timing for how much). aiohttp's own cost per request is not in this profile: bench/
render_cost.py measures the served render against its SQL.

Save the stats with --out and read them with `python -m pstats /tmp/render.pstats`.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402

from harness import DATA_DIR, bench_database  # noqa: E402

from storage.db import Database  # noqa: E402
from service.core.settings import load_settings  # noqa: E402
from service.inputs.query import parse_view_limits  # noqa: E402
from service.pipeline import conversation  # noqa: E402
from service.pipeline.cursors import CursorCodec  # noqa: E402
from service.pipeline.deps import Deps  # noqa: E402


async def _renders(dsn: str, root: int, query: dict[str, str], n: int, out: str | None,
                   sort: str, top: int) -> None:
    settings = load_settings(env={}, overrides={"database_url": dsn})
    db = await Database.connect(dsn, min_size=2, max_size=4)
    deps = Deps(db=db, cursors=CursorCodec(settings.cursor_secret, settings.cursor_ttl_s),
                settings=settings)
    limits = parse_view_limits(query, settings)

    async def one() -> int:
        result = await conversation.render_conversation(deps, root, limits)
        return len(orjson.dumps(result, option=orjson.OPT_UTC_Z))

    try:
        size = 0
        for _ in range(30):  # warm the statement caches and the interpreter
            size = await one()
        started = time.perf_counter()
        for _ in range(n):
            await one()
        plain_ms = (time.perf_counter() - started) * 1000 / n
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(n):
            await one()
        profiler.disable()
        profiled_ms = (time.perf_counter() - started) * 1000 / n
    finally:
        await db.close()
    print(f"\n{n} renders of {root} ({size:,} bytes): {plain_ms:.2f} ms each "
          f"({profiled_ms:.2f} ms under the profiler); load: {os.getloadavg()[0]:.2f}")
    stats = pstats.Stats(profiler)
    if out:
        stats.dump_stats(out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--root", default="replies_1m", help="a named root of the bench preset")
    parser.add_argument("--query", default="", help="view parameters, e.g. 'depth=20&branching=100'")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--out", default=None, help="write the pstats file here")
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args(argv)
    query = dict(pair.split("=", 1) for pair in args.query.split("&") if pair)
    with bench_database(args.data_dir) as (dsn, report):
        asyncio.run(_renders(dsn, int(report["roots"][args.root]), query, args.renders, args.out,
                             args.sort, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
