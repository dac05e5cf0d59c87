"""Render latency: a conversation with 1,000 direct replies against one with 1,000,000.

    python bench/render_latency.py [--requests 300] [--warmup 30] [--data-dir .arbor/bench-pgdata]
                                   [--query 'depth=20&branching=100&max_nodes=1000']
                                   [--baseline /path/to/another/checkout]

Starts an embedded PostgreSQL (fsync off: throwaway data) under --data-dir, applies the
migrations, seeds the `bench` preset (idempotent: a rerun reuses the data), starts the service
as a subprocess on a free port, then with one client, one request at a time, alternates
GET /v1/conversations/{replies_1k} and GET /v1/conversations/{replies_1m} at default limits.
Both conversations have the same shape under their top-ranked replies, so the two renders do
the same work: the 1M one should cost what the 1K one costs.

Targets: p50(1M) / p50(1K) <= 1.5 and p50(1M) <= 10 ms. Exit status 1 when a target fails.

--query adds view parameters to every request (default limits otherwise). --baseline starts a
second service from another checkout (a worktree of main, say) on the same database and
interleaves the two request by request, alternating which goes first, so that both see the
same machine: it prints both, and the ratio of their p50s (the targets apply to this one).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def _measure(bases: dict[str, str], roots: dict[str, str], requests: int, warmup: int,
                   procs: list[subprocess.Popen], query: str
                   ) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per service label, per case: client, server, db times and round trips."""
    import orjson

    cases = {"1K": roots["replies_1k"], "1M": roots["replies_1m"]}
    results = {label: {name: {"client": [], "server": [], "db": [], "round_trips": []}
                       for name in cases} for label in bases}
    suffix = f"?{query}" if query else ""
    connector = aiohttp.TCPConnector(limit=len(bases))
    async with aiohttp.ClientSession(connector=connector) as session:
        for base, proc in zip(bases.values(), procs):
            await _wait_healthy(session, base, proc)
        for label, base in bases.items():
            for name, root in cases.items():
                _, _, _, trips, body = await _one(session, f"{base}/v1/conversations/{root}{suffix}")
                view = orjson.loads(body)
                print(f"{label} {name}: root {root}, {_count_nodes(view['focal']['replies'])} "
                      f"reply nodes, {view['focal']['counts']['replies']:,} direct replies, "
                      f"{trips} db round trips, partial={view['partial']}")
        for _ in range(warmup):
            for base in bases.values():
                for root in cases.values():
                    await _one(session, f"{base}/v1/conversations/{root}{suffix}")
        order = list(bases.items())
        for i in range(requests):  # interleaved: 1K, 1M, 1K, 1M, ... (and service by service)
            for name, root in cases.items():
                for label, base in (order if i % 2 == 0 else order[::-1]):
                    client_ms, server_ms, db_ms, trips, _ = await _one(
                        session, f"{base}/v1/conversations/{root}{suffix}")
                    r = results[label][name]
                    r["client"].append(client_ms)
                    r["server"].append(server_ms)
                    r["db"].append(db_ms)
                    r["round_trips"].append(trips)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests per case first")
    parser.add_argument("--data-dir", default=DATA_DIR,
                        help="embedded PostgreSQL data folder (kept: reruns skip the seeding)")
    parser.add_argument("--query", default="", help="view parameters, e.g. 'depth=20&branching=100'")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout to run side by side (e.g. a worktree of main)")
    args = parser.parse_args(argv)

    # uncached renders are what this measures (and no shedding of the single client)
    settings = ("render_cache_ttl_s=0", "admission_enabled=false")
    with contextlib.ExitStack() as stack:
        dsn, report = stack.enter_context(bench_database(args.data_dir))
        bases, procs = {}, []
        services = [("this", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
        for label, root in services:
            base, proc = stack.enter_context(arbor_service(dsn, *settings, root=root))
            bases[label] = base
            procs.append(proc)
        results = asyncio.run(_measure(bases, report["roots"], args.requests, args.warmup,
                                       procs, args.query))

    print(f"\n{args.requests} requests per case, interleaved, one client, "
          f"{args.query or 'default limits'}, uncached")
    print("(client: measured by this client; server: Server-Timing total; db: Server-Timing db, "
          "the time spent in database round trips)")
    print(f"{'case':<14} {'p50 ms':>8} {'p99 ms':>8} {'server p50':>11} {'server p99':>11} "
          f"{'db p50':>8} {'round trips':>12}")
    p50: dict[str, dict[str, float]] = {}
    for label, by_case in results.items():
        p50[label] = {}
        for name, r in by_case.items():
            p50[label][name] = _percentile(r["client"], 50)
            trips = sorted(set(r["round_trips"]))
            print(f"{label + ' ' + name:<14} {p50[label][name]:>8.2f} "
                  f"{_percentile(r['client'], 99):>8.2f} "
                  f"{_percentile(r['server'], 50):>11.2f} {_percentile(r['server'], 99):>11.2f} "
                  f"{_percentile(r['db'], 50):>8.2f} {'/'.join(map(str, trips)):>12}")
    if "baseline" in p50:
        for name in ("1K", "1M"):
            print(f"this/baseline p50 {name}: {p50['this'][name] / p50['baseline'][name]:.2f}")
    ratio = p50["this"]["1M"] / p50["this"]["1K"]
    print(f"\n1M/1K p50 ratio: {ratio:.2f}   1M p50: {p50['this']['1M']:.2f} ms")
    ok_ratio, ok_p50 = ratio <= RATIO_TARGET, p50["this"]["1M"] <= P50_TARGET_MS
    print(f"{'PASS' if ok_ratio else 'FAIL'}: 1M/1K p50 ratio {ratio:.2f} <= {RATIO_TARGET}")
    print(f"{'PASS' if ok_p50 else 'FAIL'}: 1M p50 {p50['this']['1M']:.2f} ms <= {P50_TARGET_MS:g} ms")
    return 0 if ok_ratio and ok_p50 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
