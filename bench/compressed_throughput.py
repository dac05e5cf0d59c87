"""Compressed against uncompressed cached throughput of one hot conversation, side by side.

    python bench/compressed_throughput.py [--seconds 5] [--concurrency 16] [--rounds 3]

Seeds (or reuses) the `demo` preset in .arbor/http-bench-pgdata, starts Arbor (render cache
TTL an hour, load shedding off, access log off), renders the 500-post `welcome` conversation
once, then drives it with the same closed-loop asyncio load generator (one process,
`--concurrency` connections) asking for identity, gzip and br in turn, the order rotating
each round, `--rounds` times. The client does not decompress (auto_decompress off): what is
measured is the server. Prints requests/s, bytes per answer and the server's CPU time per
request (from /proc, less sensitive than throughput to other load), and checks that
compressed cached throughput is >= 0.8x the uncompressed one (compression is done once per
cached body: a hit sends the kept compressed bytes) and that each coding's body is one byte
string across all requests.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from harness import ROOT as _ROOT, arbor_service, verdict  # noqa: E402
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

TARGET = 0.8
DATA_DIR = str(_ROOT / ".arbor" / "http-bench-pgdata")
CODINGS = ("identity", "gzip", "br")


async def _drive(url: str, coding: str, seconds: float, concurrency: int):
    ok = bad = 0
    sizes, bodies = [], set()
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        async def worker():
            nonlocal ok, bad
            while time.perf_counter() < stop:
                async with session.get(url, headers={"Accept-Encoding": coding}) as resp:
                    body = await resp.read()
                    if resp.status == 200 and resp.headers.get(
                            "Content-Encoding", "identity") == coding:
                        ok += 1
                        if len(bodies) < 3:
                            bodies.add(body)
                        sizes.append(len(body))
                    else:
                        bad += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return ok / elapsed, ok, bad, (sizes[0] if sizes else 0), len(bodies)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def demo_database(data_dir: str = DATA_DIR, *, durable: bool = False):
    """(server, dsn, seed report); durable: fsync and synchronous commit on (the defaults of a
    real server), else the fast unsafe options the other benches use."""
    server = EmbeddedPostgres(data_dir, None if durable else FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    report = asyncio.run(seeding.seed_dsn(dsn, "demo"))
    return server, dsn, report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"load before: {os.getloadavg()}")
    server, dsn, report = demo_database()
    results = {c: [] for c in CODINGS}
    cpu = {c: [] for c in CODINGS}
    size, distinct = {}, {c: 0 for c in CODINGS}
    try:
        with arbor_service(dsn, "render_cache_ttl_s=3600", "admission_enabled=false") as (
                base, proc):
            url = f"{base}/v1/conversations/{report['roots']['welcome']}"
            for coding in CODINGS:  # rendered and compressed once; every request after hits
                asyncio.run(_drive(url, coding, 0.3, 1))
            for i in range(args.rounds):
                order = CODINGS[i % 3:] + CODINGS[:i % 3]
                for coding in order:
                    before = _cpu_s(proc.pid)
                    rps, ok, bad, n, bodies = asyncio.run(
                        _drive(url, coding, args.seconds, args.concurrency))
                    per = (_cpu_s(proc.pid) - before) / max(1, ok + bad) * 1e6
                    results[coding].append(rps)
                    cpu[coding].append(per)
                    size[coding] = n
                    distinct[coding] = max(distinct[coding], bodies)
                    print(f"  {coding:<8} {rps:8.0f} req/s  {n:7,} bytes/answer  "
                          f"server CPU {per:6.1f} us/request  ({ok} ok, {bad} other)")
    finally:
        if server.started_here:
            server.stop()
    print(f"load after: {os.getloadavg()}")
    best = {c: max(v) for c, v in results.items()}
    cpu_med = {c: median(v) for c, v in cpu.items()}
    print(f"\nbest of {args.rounds}: " + ", ".join(f"{c} {best[c]:.0f} req/s" for c in CODINGS)
          + f"; server CPU per request (median): "
          + ", ".join(f"{c} {cpu_med[c]:.1f} us" for c in CODINGS))
    checks = []
    for coding in ("gzip", "br"):
        ratio = best[coding] / best["identity"]
        checks.append((ratio >= TARGET, f"{coding} cached throughput {ratio:.2f}x identity "
                                        f"(>= {TARGET}); {size[coding]:,} bytes vs "
                                        f"{size['identity']:,}"))
        checks.append((distinct[coding] == 1, f"{coding}: one compressed body served "
                                              f"throughout (compressed once per cached entry)"))
    return verdict(checks)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
