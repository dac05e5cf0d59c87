"""Resident memory while rendering many distinct conversations stays within the cache bounds.

    python bench/memory_bound.py [--conversations 100000] [--cache-mb 32] [--margin-mb 96]

Seeds (or reuses) the `bench` preset; starts Arbor with render_cache_bytes = --cache-mb and
a long TTL (so everything rendered is kept up to the bound), then renders --conversations
distinct focal posts (replies of the 1M-reply conversation, each a different
/v1/conversations/{id}) with 8 concurrent clients, sampling the server's resident memory
(VmRSS) as it goes. Target: final RSS <= RSS after warm-up + cache bound + margin, and the
cache's own byte count never above its bound.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from harness import DATA_DIR, arbor_service, bench_database, wait_healthy  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _ids(dsn: str, root: int, n: int) -> list[int]:
    con = await asyncpg.connect(dsn)
    try:
        rows = await con.fetch("SELECT id FROM posts WHERE conversation_id = $1 AND id <> $1 "
                               "ORDER BY id LIMIT $2", root, n)
        return [r["id"] for r in rows]
    finally:
        await con.close()


async def _run(base: str, ids: list[int], proc: subprocess.Popen) -> list[tuple[int, float, int]]:
    samples = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as s:
        await wait_healthy(s, base, proc)
        queue = iter(ids)
        done = 0

        async def worker():
            nonlocal done
            for post_id in queue:
                async with s.get(f"{base}/v1/conversations/{post_id}?depth=2") as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                done += 1

        async def sampler():
            while done < len(ids):
                async with s.get(f"{base}/readyz") as resp:
                    cache = (await resp.json()).get("details", {}).get("render_cache", {})
                samples.append((done, rss_mb(proc.pid), cache.get("bytes", -1)))
                await asyncio.sleep(2)

        sampling = asyncio.ensure_future(sampler())
        await asyncio.gather(*(worker() for _ in range(8)))
        sampling.cancel()
        async with s.get(f"{base}/readyz") as resp:
            cache = (await resp.json()).get("details", {}).get("render_cache", {})
        samples.append((done, rss_mb(proc.pid), cache.get("bytes", -1)))
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--cache-mb", type=int, default=32)
    parser.add_argument("--margin-mb", type=int, default=96)
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args(argv)
    cache_bytes = args.cache_mb * 1024 * 1024

    with bench_database(args.data_dir) as (dsn, report):
        ids = asyncio.run(_ids(dsn, int(report["roots"]["replies_1m"]), args.conversations))
        with arbor_service(dsn, f"render_cache_bytes={cache_bytes}", "render_cache_ttl_s=3600",
                           "stale_ttl_s=3600", "admission_enabled=false") as (base, proc):
            warm = min(2000, len(ids) // 10)
            started = time.perf_counter()
            asyncio.run(_run(base, ids[:warm], proc))
            baseline = rss_mb(proc.pid)
            samples = asyncio.run(_run(base, ids[warm:], proc))
            seconds = time.perf_counter() - started
    print(f"{len(ids):,} distinct conversations rendered in {seconds:.0f} s; cache bound "
          f"{args.cache_mb} MB, margin {args.margin_mb} MB, RSS after warm-up {baseline:.0f} MB")
    step = max(1, len(samples) // 10)
    for done, rss, cached in samples[::step] + samples[-1:]:
        print(f"  after {warm + done:>7,}: RSS {rss:6.0f} MB, cache {cached / 2**20:6.1f} MB")
    final = samples[-1][1]
    peak_cache = max(c for _, _, c in samples)
    ok_rss = final <= baseline + args.cache_mb + args.margin_mb
    ok_cache = peak_cache <= cache_bytes
    print(f"{'PASS' if ok_rss else 'FAIL'}: final RSS {final:.0f} MB <= {baseline:.0f} + "
          f"{args.cache_mb} + {args.margin_mb} MB")
    print(f"{'PASS' if ok_cache else 'FAIL'}: cache bytes peak {peak_cache / 2**20:.1f} MB <= "
          f"{args.cache_mb} MB")
    return 0 if ok_rss and ok_cache else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
