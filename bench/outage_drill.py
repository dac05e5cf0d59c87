"""Outage drill: the service under steady load while its PostgreSQL is killed and restarted.

    python bench/outage_drill.py [--rate 50] [--outage 10] [--before 5] [--data-dir ...]
                                 [--setting NAME=VALUE ...]

Starts the embedded PostgreSQL with the `bench` preset (as bench/render_latency.py does: data
kept under --data-dir, seeded once), the service as a subprocess (its log goes to a file), and
one asyncio client that sends --rate requests per second, open loop (a slow answer does not
slow the sender), alternating two sets of conversations:

  hot:  the two bench roots and the 1M conversation's ten top replies, all rendered before
        the outage (cached, once the service caches renders);
  cold: replies and replies-of-replies under the 1M conversation's 11th-50th top replies, each
        requested once only, never rendered before: only the database can answer them.

After --before seconds it stops PostgreSQL with `pg_ctl stop -m immediate`, waits --outage
seconds, starts it again and keeps the load on until every answer has been a fresh 200 (not
`degraded: ["stale"]`) for --settle seconds (at most --max-recovery seconds). Prints, for the
outage: the share of hot requests answered 200 (and how many stale), the p50/p99 latency of
the cold requests' 503s; for the recovery, measured from PostgreSQL being ready again: the first
fresh 200, the first `/readyz` 200 (polled every 0.1 s throughout), and the last answer that was
not a fresh 200 (after which all were).

Targets: hot 200 share 100 % during the outage (needs stale serving), cold 503 p99 <= 50 ms,
first fresh success <= 10 s and full recovery <= 10 s after PostgreSQL is back. Exit status 1
when a target fails. A request that is neither a 200 nor a 503 (a 500, a timeout) fails too.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import orjson  # noqa: E402

from bench.harness import stop_process, verdict  # noqa: E402
from bench.render_latency import _free_port, _percentile, _wait_healthy  # noqa: E402
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

HOT_200_TARGET = 1.0
COLD_503_P99_TARGET_MS = 50.0
RECOVERY_TARGET_S = 10.0
CLIENT_TIMEOUT_S = 15.0


@dataclass
class Result:
    kind: str            # "hot" or "cold"
    post_id: str
    sent: float          # monotonic seconds
    done: float
    status: int          # 0: no HTTP answer (timeout, connection error)
    stale: bool
    error: str = ""

    @property
    def ms(self) -> float:
        return (self.done - self.sent) * 1000

    @property
    def fresh_ok(self) -> bool:
        return self.status == 200 and not self.stale


async def _pick_sets(dsn: str, roots: dict[str, str]) -> tuple[list[str], list[str]]:
    """(hot, cold) post ids from the bench preset: see the module docstring."""
    root = int(roots["replies_1m"])
    con = await asyncpg.connect(dsn)
    try:
        top = [r["id"] for r in await con.fetch(
            """SELECT id FROM posts WHERE conversation_id = $1 AND in_reply_to_id = $1
               AND section = 0 ORDER BY rank_key DESC, id DESC LIMIT 50""", root)]
        kids = [r["id"] for r in await con.fetch(
            "SELECT id FROM posts WHERE conversation_id = $1 AND in_reply_to_id = ANY($2::bigint[])",
            root, top[10:])]
        grandkids = [r["id"] for r in await con.fetch(
            "SELECT id FROM posts WHERE conversation_id = $1 AND in_reply_to_id = ANY($2::bigint[])",
            root, kids)]
    finally:
        await con.close()
    hot = [roots["replies_1m"], roots["replies_1k"], *map(str, top[:10])]
    cold = [str(i) for i in kids + grandkids]
    random.Random(5).shuffle(cold)
    return hot, cold


def _start_service(dsn: str, port: int, settings: list[str], log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "service.cli", "serve",
           "--setting", f"database_url={dsn}", "--setting", f"port={port}",
           "--setting", "log_level=WARNING"]
    for pair in settings:
        cmd += ["--setting", pair]
    log = open(log_path, "wb")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ARBOR_WORKERS": "1"})


async def _request(session: aiohttp.ClientSession, base: str, kind: str, post_id: str,
                   results: list[Result]) -> None:
    sent = time.monotonic()
    status, stale, error = 0, False, ""
    try:
        async with session.get(f"{base}/v1/conversations/{post_id}") as resp:
            body = await resp.read()
            status = resp.status
            if status == 200:
                stale = ("stale" in resp.headers.get("Arbor-Degraded", "")
                         or "stale" in (orjson.loads(body).get("degraded") or []))
            elif status != 503:
                error = body[:200].decode(errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        error = f"{type(e).__name__}: {e}"
    results.append(Result(kind, post_id, sent, time.monotonic(), status, stale, error))


class Drill:
    def __init__(self, args: argparse.Namespace, server: EmbeddedPostgres, base: str,
                 hot: list[str], cold: list[str], proc: subprocess.Popen):
        self.args, self.server, self.base, self.proc = args, server, base, proc
        self.hot, self.cold = hot, cold
        self.results: list[Result] = []
        self.marks: dict[str, float] = {}
        self.readyz: list[tuple[float, int]] = []  # (answered at, status), polled every 0.1 s

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=500)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await _wait_healthy(session, self.base, self.proc)
            for post_id in self.hot:  # rendered before the outage
                async with session.get(f"{self.base}/v1/conversations/{post_id}") as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"warming {post_id}: {resp.status}")
            load = asyncio.ensure_future(self._load(session))
            ready = asyncio.ensure_future(self._poll_readyz(session))
            try:
                await self._outage()
            finally:
                self.marks["load_end"] = time.monotonic()
                await load
                await ready

    async def _poll_readyz(self, session: aiohttp.ClientSession) -> None:
        while "load_end" not in self.marks:
            try:
                async with session.get(f"{self.base}/readyz") as resp:
                    await resp.read()
                    self.readyz.append((time.monotonic(), resp.status))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self.readyz.append((time.monotonic(), 0))
            await asyncio.sleep(0.1)

    async def _load(self, session: aiohttp.ClientSession) -> None:
        interval = 1.0 / self.args.rate
        tasks: set[asyncio.Task] = set()
        cold = iter(self.cold)
        n = 0
        start = time.monotonic()
        while "load_end" not in self.marks:
            if n % 2 == 0:
                kind, post_id = "hot", self.hot[(n // 2) % len(self.hot)]
            else:
                post_id = next(cold, None)
                if post_id is None:
                    raise SystemExit("ran out of cold posts: lower --rate or the durations")
                kind = "cold"
            task = asyncio.ensure_future(_request(session, self.base, kind, post_id,
                                                  self.results))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)

    async def _outage(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.args.before)
        self.marks["stop"] = time.monotonic()
        await loop.run_in_executor(None, self.server.stop, "immediate")
        self.marks["stopped"] = time.monotonic()
        await asyncio.sleep(max(0.0, self.args.outage - (self.marks["stopped"] - self.marks["stop"])))
        self.marks["start"] = time.monotonic()
        await loop.run_in_executor(None, self.server.start)
        self.marks["ready"] = time.monotonic()
        # keep the load on until everything answered since --settle seconds was a fresh 200
        deadline = self.marks["ready"] + self.args.max_recovery
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            recent = [r for r in self.results if r.done >= now - self.args.settle]
            bad = [r for r in self.results if r.done >= self.marks["ready"] and not r.fresh_ok]
            last_bad = max((r.done for r in bad), default=self.marks["ready"])
            if recent and now - last_bad >= self.args.settle and all(r.fresh_ok for r in recent):
                return


def _report(drill: Drill) -> int:
    m, results = drill.marks, sorted(drill.results, key=lambda r: r.sent)
    before = [r for r in results if r.sent < m["stop"]]
    outage = [r for r in results if m["stopped"] <= r.sent < m["start"]]
    after_ready = [r for r in results if r.done >= m["ready"]]
    statuses = Counter(r.status for r in results)
    print(f"\n{len(results)} requests at {drill.args.rate:g}/s, half hot, half cold; "
          f"PostgreSQL stopped (immediate) for {m['start'] - m['stop']:.1f} s "
          f"(stop took {m['stopped'] - m['stop']:.2f} s, start took {m['ready'] - m['start']:.2f} s)")
    print(f"statuses overall: {dict(sorted(statuses.items()))} (0 = no HTTP answer)")

    def line(name: str, rs: list[Result]) -> None:
        if not rs:
            print(f"  {name:<26} (none)")
            return
        ok = [r for r in rs if r.status == 200]
        stale = [r for r in ok if r.stale]
        lat = [r.ms for r in rs]
        print(f"  {name:<26} n={len(rs):<5} 200={len(ok) / len(rs):6.1%} (stale {len(stale)}) "
              f"statuses={dict(sorted(Counter(r.status for r in rs).items()))} "
              f"p50={_percentile(lat, 50):7.1f} ms p99={_percentile(lat, 99):7.1f} ms")

    print("before the outage:")
    line("hot", [r for r in before if r.kind == "hot"])
    line("cold", [r for r in before if r.kind == "cold"])
    print("during the outage (sent between stopped and start):")
    hot_out = [r for r in outage if r.kind == "hot"]
    cold_out = [r for r in outage if r.kind == "cold"]
    line("hot", hot_out)
    line("cold", cold_out)
    cold_503 = [r.ms for r in cold_out if r.status == 503]
    print("after PostgreSQL is ready again:")
    line("hot", [r for r in after_ready if r.kind == "hot"])
    line("cold", [r for r in after_ready if r.kind == "cold"])

    first_fresh = min((r.done for r in after_ready if r.fresh_ok), default=None)
    first_cold = min((r.done for r in after_ready if r.kind == "cold" and r.status == 200),
                     default=None)
    not_fresh = [r for r in results if r.sent >= m["stop"] and not r.fresh_ok]
    last_bad = max((r.done for r in not_fresh), default=m["ready"])
    recovered = all(r.fresh_ok for r in results if r.done > last_bad) and \
        any(r.done > last_bad for r in results)
    full = max(0.0, last_bad - m["ready"])

    def since(t: float | None) -> str:
        if t is None:
            return "never"
        return f"{t - m['ready']:.2f} s after ready ({t - m['start']:.2f} s after start issued)"

    print("\nrecovery (PostgreSQL ready = pg_ctl start returned):")
    print(f"  first fresh 200:         {since(first_fresh)}")
    print(f"  first cold 200:          {since(first_cold)}")
    ready_again = min((t for t, status in drill.readyz if t >= m["ready"] and status == 200),
                      default=None)
    print(f"  /readyz 200 again:       {since(ready_again)}")
    print(f"  last answer not a fresh 200: {since(last_bad) if not_fresh else 'none'}"
          f"{'' if recovered else '  (NOT recovered by the end of the drill)'}")
    errors = [r for r in results if r.status not in (200, 503)]
    for r in errors[:5]:
        print(f"  unexpected: {r.kind} {r.post_id} status={r.status} {r.error}")

    hot_share = (sum(r.status == 200 for r in hot_out) / len(hot_out)) if hot_out else 0.0
    p99 = _percentile(cold_503, 99) if cold_503 else float("inf")
    print(f"\noutage: hot 200 share {hot_share:.1%}; cold 503s: n={len(cold_503)} "
          f"p50={_percentile(cold_503, 50) if cold_503 else float('nan'):.1f} ms "
          f"p99={p99:.1f} ms")
    checks = [
        (hot_share >= HOT_200_TARGET, f"hot 200 share during the outage {hot_share:.1%} >= "
                                      f"{HOT_200_TARGET:.0%}"),
        (p99 <= COLD_503_P99_TARGET_MS, f"cold 503 p99 {p99:.1f} ms <= {COLD_503_P99_TARGET_MS:g} ms"),
        (first_fresh is not None and first_fresh - m["ready"] <= RECOVERY_TARGET_S,
         f"first fresh 200 within {RECOVERY_TARGET_S:g} s of PostgreSQL ready"),
        (recovered and full <= RECOVERY_TARGET_S,
         f"full recovery (every answer a fresh 200) within {RECOVERY_TARGET_S:g} s: "
         f"{full:.2f} s" if recovered else "full recovery: not reached"),
        (not errors, f"no answer other than 200 or 503 ({len(errors)} others)"),
    ]
    return verdict(checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50, help="requests per second")
    parser.add_argument("--before", type=float, default=5, help="seconds of load before the stop")
    parser.add_argument("--outage", type=float, default=10, help="seconds PostgreSQL is down")
    parser.add_argument("--settle", type=float, default=3,
                        help="seconds of fresh 200s that count as recovered")
    parser.add_argument("--max-recovery", type=float, default=30,
                        help="give up waiting for recovery after this many seconds")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a service setting (repeatable)")
    parser.add_argument("--data-dir", default=str(ROOT / ".arbor" / "bench-pgdata"),
                        help="embedded PostgreSQL data folder (kept: reruns skip the seeding)")
    args = parser.parse_args(argv)

    server = EmbeddedPostgres(args.data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    proc = None
    log_path = ROOT / ".arbor" / "outage-drill-service.log"
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        print(f"seed bench: {'already loaded' if report['skipped'] else 'loaded'} "
              f"({report['posts']:,} posts) in {args.data_dir}")
        hot, cold = asyncio.run(_pick_sets(dsn, report["roots"]))
        needed = args.rate / 2 * (args.before + args.outage + args.max_recovery + 5)
        print(f"hot set: {len(hot)} conversations; cold set: {len(cold)} never-rendered posts "
              f"(at most {needed:.0f} used)")
        port = _free_port()
        proc = _start_service(dsn, port, args.setting, log_path)
        print(f"service on :{port}, log in {log_path}")
        drill = Drill(args, server, f"http://127.0.0.1:{port}", hot, cold, proc)
        asyncio.run(drill.run())
    finally:
        stop_process(proc)
        if server.is_running():
            server.stop()
    return _report(drill)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
