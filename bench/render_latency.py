"""Render latency: a conversation with 1,000 direct replies against one with 1,000,000.

    python bench/render_latency.py [--requests 300] [--warmup 30] [--data-dir .arbor/bench-pgdata]

Starts an embedded PostgreSQL (fsync off: throwaway data) under --data-dir, applies the
migrations, seeds the `bench` preset (idempotent: a rerun reuses the data), starts the service
as a subprocess on a free port, then with one client, one request at a time, alternates
GET /v1/conversations/{replies_1k} and GET /v1/conversations/{replies_1m} at default limits.
Both conversations have the same shape under their top-ranked replies, so the two renders do
the same work: the 1M one should cost what the 1K one costs.

Targets: p50(1M) / p50(1K) <= 1.5 and p50(1M) <= 10 ms. Exit status 1 when a target fails.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from harness import DATA_DIR, arbor_service, bench_database  # noqa: E402
# Other benches import these from here.
from harness import free_port as _free_port  # noqa: E402,F401
from harness import percentile as _percentile  # noqa: E402
from harness import wait_healthy as _wait_healthy  # noqa: E402

RATIO_TARGET = 1.5
P50_TARGET_MS = 10.0
_TOTAL = re.compile(r"total;dur=([0-9.]+)")
_DB = re.compile(r"db;dur=([0-9.]+)")
_ROUND_TRIPS = re.compile(r"round_trips=(\d+)")


def _count_nodes(replies) -> int:
    if not replies:
        return 0
    return sum(1 + _count_nodes(item.get("replies")) for item in replies["items"])


async def _one(session: aiohttp.ClientSession, url: str) -> tuple[float, float, float, int, bytes]:
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status != 200:
            raise SystemExit(f"GET {url}: {resp.status} {body[:300]!r}")
        timing = resp.headers.get("Server-Timing", "")
    total, db, trips = _TOTAL.search(timing), _DB.search(timing), _ROUND_TRIPS.search(timing)
    return (elapsed, float(total.group(1)) if total else float("nan"),
            float(db.group(1)) if db else float("nan"), int(trips.group(1)) if trips else -1, body)


async def _measure(base: str, roots: dict[str, str], requests: int, warmup: int,
                   proc: subprocess.Popen) -> dict[str, dict[str, list[float]]]:
    import orjson

    cases = {"1K": roots["replies_1k"], "1M": roots["replies_1m"]}
    results = {name: {"client": [], "server": [], "db": [], "round_trips": []} for name in cases}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _wait_healthy(session, base, proc)
        for name, root in cases.items():
            _, _, _, trips, body = await _one(session, f"{base}/v1/conversations/{root}")
            view = orjson.loads(body)
            print(f"{name}: root {root}, {_count_nodes(view['focal']['replies'])} reply nodes, "
                  f"{view['focal']['counts']['replies']:,} direct replies, {trips} db round trips")
        for _ in range(warmup):
            for root in cases.values():
                await _one(session, f"{base}/v1/conversations/{root}")
        for _ in range(requests):  # interleaved: 1K, 1M, 1K, 1M, ...
            for name, root in cases.items():
                client_ms, server_ms, db_ms, trips, _ = await _one(
                    session, f"{base}/v1/conversations/{root}")
                results[name]["client"].append(client_ms)
                results[name]["server"].append(server_ms)
                results[name]["db"].append(db_ms)
                results[name]["round_trips"].append(trips)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests per case first")
    parser.add_argument("--data-dir", default=DATA_DIR,
                        help="embedded PostgreSQL data folder (kept: reruns skip the seeding)")
    args = parser.parse_args(argv)

    # uncached renders are what this measures (and no shedding of the single client)
    with bench_database(args.data_dir) as (dsn, report), \
            arbor_service(dsn, "render_cache_ttl_s=0", "admission_enabled=false") as (base, proc):
        results = asyncio.run(_measure(base, report["roots"], args.requests, args.warmup, proc))

    print(f"\n{args.requests} requests per case, interleaved, one client, default limits, uncached")
    print("(client: measured by this client; server: Server-Timing total; db: Server-Timing db, "
          "the time spent in database round trips)")
    print(f"{'case':<5} {'p50 ms':>8} {'p99 ms':>8} {'server p50':>11} {'server p99':>11} "
          f"{'db p50':>8} {'round trips':>12}")
    p50 = {}
    for name, r in results.items():
        p50[name] = _percentile(r["client"], 50)
        trips = sorted(set(r["round_trips"]))
        print(f"{name:<5} {p50[name]:>8.2f} {_percentile(r['client'], 99):>8.2f} "
              f"{_percentile(r['server'], 50):>11.2f} {_percentile(r['server'], 99):>11.2f} "
              f"{_percentile(r['db'], 50):>8.2f} {'/'.join(map(str, trips)):>12}")
    ratio = p50["1M"] / p50["1K"]
    print(f"\n1M/1K p50 ratio: {ratio:.2f}   1M p50: {p50['1M']:.2f} ms")
    ok_ratio, ok_p50 = ratio <= RATIO_TARGET, p50["1M"] <= P50_TARGET_MS
    print(f"{'PASS' if ok_ratio else 'FAIL'}: 1M/1K p50 ratio {ratio:.2f} <= {RATIO_TARGET}")
    print(f"{'PASS' if ok_p50 else 'FAIL'}: 1M p50 {p50['1M']:.2f} ms <= {P50_TARGET_MS:g} ms")
    return 0 if ok_ratio and ok_p50 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
