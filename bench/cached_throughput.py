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

from render_latency import _free_port, _wait_healthy  # noqa: E402
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

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
        await _wait_healthy(s, base, proc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default=str(ROOT / ".arbor" / "bench-pgdata"))
    args = parser.parse_args(argv)

    server = EmbeddedPostgres(args.data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    procs: list[subprocess.Popen] = []
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        root = report["roots"]["replies_1m"]
        arbor_port, bare_port = _free_port(), _free_port()
        arbor = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--setting", f"database_url={dsn}",
             "--setting", f"port={arbor_port}", "--setting", "log_level=WARNING",
             "--setting", "render_cache_ttl_s=3600"], cwd=ROOT)
        procs.append(arbor)
        path = f"/v1/conversations/{root}"
        asyncio.run(_healthy(f"http://127.0.0.1:{arbor_port}", arbor))
        body = asyncio.run(_fetch(f"http://127.0.0.1:{arbor_port}{path}"))
        with tempfile.NamedTemporaryFile(delete=False, suffix=".json") as f:
            f.write(body)
        bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_server.py"),
                                 str(bare_port), f.name], cwd=ROOT)
        procs.append(bare)
        asyncio.run(_healthy(f"http://127.0.0.1:{bare_port}", bare))
        assert asyncio.run(_fetch(f"http://127.0.0.1:{bare_port}{path}")) == body
        print(f"body: {len(body):,} bytes (the 1M-reply conversation at default limits)")
        results: dict[str, list[float]] = {"arbor": [], "bare": []}
        for _ in range(args.rounds):
            for name, port in (("arbor", arbor_port), ("bare", bare_port)):
                rps, ok, bad = asyncio.run(_drive(f"http://127.0.0.1:{port}{path}",
                                                  args.seconds, args.concurrency))
                results[name].append(rps)
                print(f"  {name:<5} {rps:8.0f} req/s  ({ok} ok, {bad} not 200)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(15)
        if server.started_here:
            server.stop()
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
