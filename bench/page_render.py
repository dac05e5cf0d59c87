"""The HTML page against the JSON it presents: a 1,000,000-reply conversation's first page.

    python bench/page_render.py [--requests 200] [--warmup 20] [--data-dir .arbor/bench-pgdata]
                                [--cached]

Seeds the `bench` preset (bench/harness.py), starts one service, and with one client, one
request at a time, interleaves GET /v1/conversations/{replies_1m} (JSON) and
GET /conversations/{replies_1m} (the page: the same render, then page_view and the
template), alternating which goes first. Uncached by default (render_cache_ttl_s=0: both
render from the database every time); --cached measures both served from the render cache
(the page then still parses and presents the cached body each time).

Target (issue 16): p50(page) / p50(JSON) <= 1.3, uncached. Exit status 1 when it fails.
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

from harness import DATA_DIR, arbor_service, bench_database, percentile, verdict  # noqa: E402
from harness import wait_healthy  # noqa: E402

RATIO_TARGET = 1.3
_TOTAL = re.compile(r"total;dur=([0-9.]+)")


async def _one(session: aiohttp.ClientSession, url: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        if resp.status != 200:
            raise SystemExit(f"GET {url}: {resp.status} {body[:300]!r}")
        total = _TOTAL.search(resp.headers.get("Server-Timing", ""))
    return elapsed, float(total.group(1)) if total else float("nan"), len(body)


async def _measure(base: str, proc: subprocess.Popen, root: str, requests: int,
                   warmup: int) -> dict[str, dict[str, list[float]]]:
    urls = {"json": f"{base}/v1/conversations/{root}", "page": f"{base}/conversations/{root}"}
    out = {name: {"client": [], "server": [], "bytes": []} for name in urls}
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, base, proc)
        for _ in range(warmup):
            for url in urls.values():
                await _one(session, url)
        order = list(urls.items())
        for i in range(requests):
            for name, url in (order if i % 2 == 0 else order[::-1]):
                client_ms, server_ms, size = await _one(session, url)
                out[name]["client"].append(client_ms)
                out[name]["server"].append(server_ms)
                out[name]["bytes"].append(size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--cached", action="store_true",
                        help="both served from the render cache instead of rendered")
    args = parser.parse_args(argv)
    settings = ["admission_enabled=false",
                "render_cache_ttl_s=600" if args.cached else "render_cache_ttl_s=0"]
    with bench_database(args.data_dir) as (dsn, report):
        with arbor_service(dsn, *settings) as (base, proc):
            results = asyncio.run(_measure(base, proc, report["roots"]["replies_1m"],
                                           args.requests, args.warmup))
    load = os.getloadavg()
    mode = "cached" if args.cached else "uncached"
    print(f"\n{args.requests} requests each, interleaved, one client, default limits, {mode}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'':<6} {'p50 ms':>8} {'p90 ms':>8} {'server p50':>11} {'bytes':>9}")
    p50 = {}
    for name, r in results.items():
        p50[name] = percentile(r["client"], 50)
        print(f"{name:<6} {p50[name]:>8.2f} {percentile(r['client'], 90):>8.2f} "
              f"{percentile(r['server'], 50):>11.2f} {int(percentile(r['bytes'], 50)):>9,}")
    ratio = p50["page"] / p50["json"]
    print(f"page/json p50 ratio: {ratio:.2f}")
    if args.cached:
        return verdict([(True, f"(cached, informational) page/json p50 {ratio:.2f}")])
    return verdict([(ratio <= RATIO_TARGET,
                     f"page/json p50 ratio {ratio:.2f} <= {RATIO_TARGET} (uncached, 1M replies)")])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
