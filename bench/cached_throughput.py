"""Cached hot-conversation throughput against a bare aiohttp handler returning the same bytes.

    python bench/cached_throughput.py [--seconds 8] [--concurrency 16] [--rounds 2]

Seeds (or reuses) the `bench` preset, starts Arbor (defaults, access log off) and a bare
aiohttp server (bench/bare_server.py) serving the very bytes Arbor rendered, one process
each, and drives each in turn with the same closed-loop asyncio load generator (one process,
`--concurrency` connections) for `--seconds`, alternating, `--rounds` times. Prints requests/s
of each and the ratio (target >= 0.5).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from harness import DATA_DIR, arbor_service, bench_database, free_port  # noqa: E402
from harness import wait_healthy  # noqa: E402

TARGET = 0.5


async def _drive(url: str, seconds: float, concurrency: int) -> tuple[float, int, int]:
    """Closed loop: each worker sends its next request when the last one is answered."""
    ok = bad = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal ok, bad
            while time.perf_counter() < stop:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        bad += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return ok / elapsed, ok, bad


async def _fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as resp:
            assert resp.status == 200, resp.status
            return await resp.read()


async def _healthy(base: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as s:
        await wait_healthy(s, base, proc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args(argv)

    results: dict[str, list[float]] = {"arbor": [], "bare": []}
    with bench_database(args.data_dir) as (dsn, report), \
            arbor_service(dsn, "render_cache_ttl_s=3600") as (arbor_base, _):
        path = f"/v1/conversations/{report['roots']['replies_1m']}"
        body = asyncio.run(_fetch(f"{arbor_base}{path}"))
        with tempfile.NamedTemporaryFile(delete=False, suffix=".json") as f:
            f.write(body)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_server.py"),
                                 str(bare_port), f.name], cwd=ROOT)
        try:
            bare_base = f"http://127.0.0.1:{bare_port}"
            asyncio.run(_healthy(bare_base, bare))
            assert asyncio.run(_fetch(f"{bare_base}{path}")) == body
            print(f"body: {len(body):,} bytes (the 1M-reply conversation at default limits)")
            for _ in range(args.rounds):
                for name, base in (("arbor", arbor_base), ("bare", bare_base)):
                    rps, ok, bad = asyncio.run(_drive(f"{base}{path}", args.seconds,
                                                      args.concurrency))
                    results[name].append(rps)
                    print(f"  {name:<5} {rps:8.0f} req/s  ({ok} ok, {bad} not 200)")
        finally:
            bare.terminate()
            bare.wait(15)
    best = {name: max(v) for name, v in results.items()}
    ratio = best["arbor"] / best["bare"]
    print(f"\narbor cached {best['arbor']:.0f} req/s, bare {best['bare']:.0f} req/s "
          f"(best of {args.rounds}, {args.concurrency} connections, one client process)")
    ok = ratio >= TARGET
    print(f"{'PASS' if ok else 'FAIL'}: cached/bare throughput ratio {ratio:.2f} >= {TARGET}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
