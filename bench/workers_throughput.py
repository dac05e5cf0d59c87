"""Throughput with `--workers 2` against one worker, uncached and cached, side by side.

    python bench/workers_throughput.py [--seconds 6] [--rounds 3] [--concurrency 16]
                                       [--client auto|wrk|python]

Seeds (or reuses) the `bench` preset, starts `arbor serve --workers 1` and `--workers 2` on
the same database (access log off, admission off: this measures capacity, not shedding), and
drives the 1M-reply conversation at default limits with a closed-loop load generator (one
process, --concurrency connections: wrk when installed, bench/wrk_client.py, else an asyncio
client; both ask for br, as browsers do, and decode nothing), in interleaved rounds:
uncached (render_cache_ttl_s=0, set live: with two workers the change reaches both through
the change feed; 200 distinct keys, so that the coalescer cannot share renders) then cached
(render_cache_ttl_s=3600), one service after the other, the order alternating. Prints req/s
per round, the best of each and its ratio, each round's ratio (its two runs adjacent in time)
and their median, which the verdict uses (targets: uncached >= 1.6x, cached >= 1.8x), the
workers' CPU time per request (from /proc), and where the machine's CPUs went in each run:
the workers, PostgreSQL, the load generator, other processes.

On a 2-CPU machine shared with the load generator and PostgreSQL, two workers cannot have two
CPUs to themselves: the ratio is bounded by the CPU the others leave them. The bench prints
that bound as a ceiling: the CPUs divided by what a request cost every process in the
two-worker run, against the one-worker run of the same round.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from harness import DATA_DIR, bench_database, free_port, stop_process, verdict  # noqa: E402
from harness import wait_healthy  # noqa: E402
import loadgen as lg  # noqa: E402
import wrk_client  # noqa: E402

ADMIN = "bench-admin-token"
HEADERS = {"Accept-Encoding": "gzip, deflate, br"}   # what aiohttp's client (and browsers) ask
TARGETS = {"uncached": 1.6, "cached": 1.8}


def start(dsn: str, workers: int) -> tuple[str, subprocess.Popen]:
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--workers", str(workers)]
    for pair in (f"database_url={dsn}", f"port={port}", "log_level=WARNING",
                 f"admin_token={ADMIN}", "admission_enabled=false",
                 "cursor_secret=workers-bench"):
        cmd += ["--setting", pair]
    return f"http://127.0.0.1:{port}", subprocess.Popen(cmd, cwd=ROOT)


async def _ready(base: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as s:
        await wait_healthy(s, base, proc)


async def _set_ttl(base: str, ttl: float, pids: list[int]) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.patch(f"{base}/v1/admin/settings", json={"render_cache_ttl_s": ttl},
                           headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 200, await r.text()
    await asyncio.sleep(0.3)  # the other workers apply it from their change feed


def worker_pids(proc: subprocess.Popen) -> list[int]:
    """The supervisor's children (the workers), or the process itself with one worker."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == proc.pid:
                kids.append(int(entry))
    return kids or [proc.pid]


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def _client_cpu() -> float:
    """CPU seconds of this process and its finished children (wrk runs as one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0:3].__str__()


async def _drive(urls: list[str], seconds: float, concurrency: int) -> tuple[float, int, int]:
    """Closed loop over `urls` in turn: each connection sends its next request when the last
    one is answered."""
    ok = bad = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     auto_decompress=False) as session:
        async def worker(w: int):
            nonlocal ok, bad
            n = w
            while time.perf_counter() < stop:
                async with session.get(urls[n % len(urls)]) as resp:
                    await resp.read()
                    ok, bad = (ok + 1, bad) if resp.status == 200 else (ok, bad + 1)
                n += concurrency
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    return ok / elapsed, ok, bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="the load generator: wrk when installed (auto), else asyncio")
    args = parser.parse_args(argv)
    client = args.client if args.client != "auto" else (
        "wrk" if wrk_client.available() else "python")

    def drive(base: str, paths: list[str], seconds: float) -> tuple[float, int, int]:
        if client == "wrk":
            return wrk_client.drive(base, paths, seconds, args.concurrency, HEADERS)
        return asyncio.run(_drive([base + p for p in paths], seconds, args.concurrency))
    print(f"load average before: {uptime()}; client: {client}")
    rates: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    # per run: (the workers' cores, everything else's cores)
    split: dict[tuple[str, int], list[tuple[float, float]]] = {}
    # per run: CPU seconds per request of the workers and of PostgreSQL + the load generator
    per_req: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with bench_database(args.data_dir) as (dsn, report):
        postmaster = lg.postmaster_pid(args.data_dir)

        def pg_cpu() -> float:
            return lg._children_cpu(postmaster) if postmaster else 0.0
        services = {n: start(dsn, n) for n in (1, 2)}
        try:
            for base, proc in services.values():
                asyncio.run(_ready(base, proc))
            pids = {n: worker_pids(proc) for n, (_, proc) in services.items()}
            assert len(pids[2]) == 2, pids
            path = f"/v1/conversations/{report['roots']['replies_1m']}"
            for mode, ttl in (("uncached", 0), ("cached", 3600)):
                # Uncached: 200 different keys (the root has no ancestors, so `ancestors`
                # changes the key, not the work), else concurrent misses for one key would
                # share one render (the coalescer) and this would not measure renders.
                paths = ([f"{path}?ancestors={a}" for a in range(1, 201)]
                         if mode == "uncached" else [path])
                for n, (base, _) in services.items():
                    asyncio.run(_set_ttl(base, ttl, pids[n]))
                    drive(base, paths, 1.0)
                for r in range(args.rounds):
                    order = (1, 2) if r % 2 == 0 else (2, 1)
                    for n in order:
                        base = services[n][0]
                        before, t0 = cpu_s(pids[n]), time.monotonic()
                        pg0, client0, busy0 = pg_cpu(), _client_cpu(), lg._machine_busy()
                        rps, ok, bad = drive(base, paths, args.seconds)
                        used = cpu_s(pids[n]) - before
                        wall = time.monotonic() - t0
                        pg, gen = (pg_cpu() - pg0) / wall, (_client_cpu() - client0) / wall
                        ours = used / wall + pg + gen
                        other = max(0.0, (lg._machine_busy() - busy0) / wall - ours)
                        split.setdefault((mode, n), []).append((used / wall, pg + gen + other))
                        per_req.setdefault((mode, n), []).append(
                            ((used / wall) / max(rps, 1e-9), (pg + gen) / max(rps, 1e-9), rps))
                        rates.setdefault((mode, n), []).append(rps)
                        cpu.setdefault((mode, n), []).append(used / max(ok, 1) * 1000)
                        print(f"  {mode:<8} workers={n} {rps:8.1f} req/s ({ok} ok, {bad} not "
                              f"200) {used / max(ok, 1) * 1000:6.2f} ms CPU/request; cores: workers "
                              f"{used / wall:.2f}, PostgreSQL {pg:.2f}, load generator "
                              f"{gen:.2f}, other processes {other:.2f}")
        finally:
            for _, proc in services.values():
                stop_process(proc)
    print(f"load average after: {uptime()} (2 CPUs; load generator, PostgreSQL and the "
          f"services on them, with whatever else runs)")
    checks = []
    for mode, target in TARGETS.items():
        one, two = max(rates[(mode, 1)]), max(rates[(mode, 2)])
        # each round's two runs were adjacent in time: their ratio is the least noisy figure
        paired = sorted(b / a for a, b in zip(rates[(mode, 1)], rates[(mode, 2)]))
        median = paired[len(paired) // 2]
        c1 = min(cpu[(mode, 1)])
        c2 = min(cpu[(mode, 2)])
        print(f"{mode}: 1 worker {one:.1f} req/s, 2 workers {two:.1f} req/s (best of "
              f"{args.rounds}: ratio {two / one:.2f}); per-round ratios "
              f"{', '.join(f'{r:.2f}' for r in paired)} (median {median:.2f}); CPU per "
              f"request {c1:.2f} ms vs {c2:.2f} ms")
        # Where the CPUs went with two workers: what PostgreSQL and the load generator took
        # is what the workers could not have
        w2 = statistics.median(c for c, _ in split[(mode, 2)])
        w1 = statistics.median(c for c, _ in split[(mode, 1)])
        rest = statistics.median(r for _, r in split[(mode, 2)])
        print(f"  {mode}: the workers had {w1:.2f} cores with one worker, {w2:.2f} with two "
              f"({w2 / w1:.2f}x); PostgreSQL, the load generator and other processes took "
              f"{rest:.2f} of the {os.cpu_count()} CPUs beside the two")
        # The most two workers could do on this box: every CPU busy at what a request cost
        # in the two-worker run (the workers, PostgreSQL and the load generator, all here),
        # against the one-worker run of the same round.
        n_cpu = os.cpu_count() or 1
        ceilings = sorted(min(2 / w, n_cpu / (w + rest)) / one_rps
                          for (w, rest, _), (_, _, one_rps)
                          in zip(per_req[(mode, 2)], per_req[(mode, 1)]))
        w, rest, _ = sorted(per_req[(mode, 2)])[len(per_req[(mode, 2)]) // 2]
        print(f"  {mode}: ceiling on this box {ceilings[len(ceilings) // 2]:.2f}x (median of the "
              f"rounds): with two workers a request cost them {w * 1000:.3f} ms of CPU and "
              f"PostgreSQL with the load generator {rest * 1000:.3f} ms, so {n_cpu} CPUs hold "
              f"at most {n_cpu / (w + rest):.0f} req/s")
        checks.append((median >= target,
                       f"{mode} throughput, 2 workers / 1 (median of the rounds' ratios): "
                       f"{median:.2f} >= {target}"))
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main())
