"""Overload: goodput and latency when offered three times what the service can serve.

    python bench/overload.py [--duration 40] [--rounds 8] [--multiplier 3] [--step-seconds 4]
                             [--server-setting NAME=VALUE ...] [--data-dir .arbor/bench-pgdata]

Starts an embedded PostgreSQL (fsync off) under --data-dir, seeds the `bench` preset (a rerun
reuses it), starts the service as a subprocess with its render caches off (every setting named
`*cache*_bytes` / `*cache*_size` that may be 0, except the viewer cache), then:

  (a) unloaded: one request at a time over many distinct conversations -> p50, p99;
  (b) peak: open-loop load stepped up from half the one-client rate, x1.3 per step, until
      goodput (200s per second) has not grown by 3% for three steps -> the peak goodput;
  (c) --rounds rounds, side by side (this machine's speed drifts by 20% over minutes, so
      each figure is compared with one measured in the same rounds): a few unloaded requests,
      then the peak's offered rate, then --multiplier x the peak goodput, open loop, each for
      --duration / --rounds seconds. Goodput under overload is a share of the goodput at the
      peak's rate in the same rounds; the admitted p99 is compared with the unloaded p99 of
      the same rounds.

The workload: first pages of the 100 top-ranked replies of the 1K and 1M conversations (~120
reply nodes each; --small-pages adds their 2,000 children, ~6 nodes each), and 20%
continuation pages (`/replies` cursors of those top replies). Every request carries a random
`max_nodes` above the pages' size (same work, distinct key), so neither a cache nor the
coalescing of identical concurrent renders can make a render cheaper than a real one. Open loop: requests start on a fixed schedule
whatever the answers (that is offered load). Latency counts from writing the request to
the kernel's receive time of the answer's last byte (SO_TIMESTAMPNS on Linux; elsewhere, to
when this process read it): the generator is one asyncio process on the same busy 2-CPU
machine, and the moment its event loop gets round to a readable socket is its own delay, not
the service's. That read delay is printed beside the figures (p99), as is the generator's
lateness against its schedule ("lag"). The client is minimal: HTTP/1.1 keep-alive, a
connection per request in flight, reused, much cheaper than aiohttp's; its CPU use is printed
next to the server's and PostgreSQL's.

Targets (exit status 1 when one fails): under overload, goodput >= 90% of the peak; p99 of
shed (503) responses <= 5 ms; p99 of admitted (200) requests <= 2x the unloaded p99; no
status other than 200 and 503.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncpg  # noqa: E402
import orjson  # noqa: E402

from harness import stop_process, verdict  # noqa: E402
from render_latency import _free_port, _percentile  # noqa: E402
from service.core.settings import SETTINGS
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres, set_scheduling  # noqa: E402

GOODPUT_TARGET = 0.90
SHED_P99_TARGET_MS = 5.0
ADMITTED_P99_RATIO_TARGET = 2.0
CONTINUATION_SHARE = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- a lean HTTP/1.1 client ------------------------------------------------------------------

# The kernel's receive time of each segment (SO_TIMESTAMPNS, Linux): a response's latency is
# measured to the moment its last byte reached this machine's socket, not to the moment this
# process's event loop got round to reading it, which on a busy 2-CPU machine can be
# milliseconds later and would be charged to the service.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else 0)
_ANC_SPACE = socket.CMSG_SPACE(16)


class _Conn:
    """One keep-alive connection, one request at a time, read with recvmsg so each read
    carries the kernel's receive timestamp."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop):
        self.sock, self.loop = sock, loop
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.need = -1           # total bytes of the current response, once the head is read
        self.status = 0
        self.cache_hit = False
        self.closed = False
        self.rx_ns = 0           # kernel receive time of the latest segment read (0: unknown)
        loop.add_reader(sock.fileno(), self._readable)

    def send(self, data: bytes) -> None:
        self.sock.send(data)     # a request is far below the socket buffer: written at once

    def _readable(self) -> None:
        try:
            data, anc, _, _ = self.sock.recvmsg(262144, _ANC_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if not data:
            self._lost(ConnectionResetError("server closed the connection"))
            return
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("qq", cdata[:16])
                self.rx_ns = sec * 1_000_000_000 + nsec
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            m = re.search(rb"\r\ncontent-length: *(\d+)", head)
            if m is None:
                self._lost(RuntimeError("response without Content-Length"))
                return
            self.cache_hit = b"\r\narbor-cache: hit" in head
            self.need = end + 4 + int(m.group(1))
        if len(self.buf) >= self.need:
            del self.buf[:self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self.status, self.cache_hit, self.rx_ns, self.loop.time()))

    def _lost(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


@dataclass
class Answer:
    status: int
    cache_hit: bool
    sent: float              # loop clock (time.monotonic), just before the request was written
    read: float              # loop clock, when this process had read the whole answer
    latency: float           # seconds from writing the request to the answer's last byte arriving


class Pool:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[_Conn] = []
        self.opened = 0
        self.kernel_timestamps = 0   # answers timed by the kernel's receive timestamp
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if SO_TIMESTAMPNS:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                pass
        try:
            await loop.sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.opened += 1
        return _Conn(sock, loop)

    async def get(self, path: str) -> Answer:
        loop = asyncio.get_running_loop()
        conn = None
        while self.idle:
            c = self.idle.pop()
            if not c.closed:
                conn = c
                break
        if conn is None:
            conn = await self._connect(loop)
        conn.waiter = loop.create_future()
        conn.rx_ns = 0
        sent, sent_ns = loop.time(), time.time_ns()
        try:
            conn.send(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._host_header + b"\r\n")
            status, hit, rx_ns, read = await conn.waiter
        except BaseException:
            conn.close()  # a half-read answer must not be taken for the next request's
            raise
        self.idle.append(conn)
        if rx_ns >= sent_ns:
            self.kernel_timestamps += 1
            latency = (rx_ns - sent_ns) / 1e9
        else:  # no timestamp from this kernel: as this process read it
            latency = read - sent
        return Answer(status, hit, sent, read, latency)

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


# -- workload ----------------------------------------------------------------------------------

@dataclass
class Workload:
    first_pages: list[str]
    continuations: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def pick(self) -> tuple[str, str]:
        # A distinct max_nodes per request (all above the ~120 nodes these pages have, so the
        # work is the same) makes concurrent requests distinct keys: the render coalescer (and
        # any cache) cannot share one render between them.
        max_nodes = self.rng.randint(130, 1000)
        if self.continuations and self.rng.random() < CONTINUATION_SHARE:
            return "continuation", f"{self.rng.choice(self.continuations)}&max_nodes={max_nodes}"
        return "first_page", f"{self.rng.choice(self.first_pages)}?max_nodes={max_nodes}"


async def _focal_ids(dsn: str, roots: dict[str, str]) -> tuple[list[int], list[int]]:
    con = await asyncpg.connect(dsn)
    try:
        top = [r["id"] for r in await con.fetch(
            "SELECT p.id FROM posts p JOIN post_counts c ON c.post_id = p.id "
            "WHERE p.in_reply_to_id = ANY($1::bigint[]) AND c.likes >= 5000000 ORDER BY p.id",
            [int(v) for v in roots.values()])]
        kids = [r["id"] for r in await con.fetch(
            "SELECT id FROM posts WHERE in_reply_to_id = ANY($1::bigint[]) ORDER BY id", top)]
    finally:
        await con.close()
    return top, kids


async def _continuations(port: int, top: list[int]) -> list[str]:
    """The `/replies` cursor of each top reply's first page (its 20 children, 10 shown)."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:
        for post_id in top:
            async with session.get(f"http://127.0.0.1:{port}/v1/conversations/{post_id}?depth=1") as r:
                body = orjson.loads(await r.read())
            more = (body["focal"].get("replies") or {}).get("more") or {}
            if more.get("cursor"):
                out.append(f"/v1/conversations/{post_id}/replies?cursor={more['cursor']}")
    return out


# -- measuring ----------------------------------------------------------------------------------

@dataclass
class Result:
    kind: str
    scheduled: float
    status: int            # 0: a transport error or no answer within 10 s
    latency: float         # from writing the request to its answer's last byte arriving, s
    lag: float             # how late after its scheduled time the request was written, s
    read_delay: float = 0.0  # how long after arriving the answer was read by this process, s
    cache_hit: bool = False


async def _one(pool: Pool, kind: str, path: str, scheduled: float, out: list[Result]) -> None:
    try:
        a = await asyncio.wait_for(pool.get(path), 10)
    except (OSError, asyncio.TimeoutError, RuntimeError):
        out.append(Result(kind, scheduled, 0, time.monotonic() - scheduled, 0.0))
        return
    out.append(Result(kind, scheduled, a.status, a.latency, a.sent - scheduled,
                      max(0.0, a.read - a.sent - a.latency), a.cache_hit))


async def open_loop(pool: Pool, work: Workload, rate: float, duration: float) -> list[Result]:
    loop = asyncio.get_running_loop()
    out: list[Result] = []
    tasks = []
    start = loop.time() + 0.02
    for i in range(int(rate * duration)):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        kind, path = work.pick()
        tasks.append(loop.create_task(_one(pool, kind, path, due, out)))
    await asyncio.gather(*tasks)
    return out


async def watch_admission(port: int, every: float, out: list[dict]) -> None:
    """The service's admission figures (GET /readyz, never shed) every `every` seconds."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    snap = orjson.loads(await r.read()).get("details", {}).get("admission")
                if snap:
                    out.append(snap)
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(every)


async def sequential(pool: Pool, work: Workload, n: int) -> list[Result]:
    loop = asyncio.get_running_loop()
    out: list[Result] = []
    for _ in range(n):
        kind, path = work.pick()
        await _one(pool, kind, path, loop.time(), out)
    return out


def _proc_cpu(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu(parent: int) -> float:
    # The parent's own CPU, its exited children's (cutime + cstime: backends come and go as
    # the pool replaces connections), and its live children's.
    try:
        fields = open(f"/proc/{parent}/stat").read().rsplit(")", 1)[1].split()
        total = sum(int(f) for f in fields[11:15]) / CLK_TCK
    except OSError:
        total = 0.0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _machine_busy() -> float:
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLK_TCK


class CpuMeter:
    """CPU seconds used by the server, PostgreSQL, this generator and the whole machine."""

    def __init__(self, server_pid: int, postmaster_pid: int | None):
        self.server_pid, self.postmaster_pid = server_pid, postmaster_pid

    def read(self) -> dict[str, float]:
        t = os.times()
        return {"server": _proc_cpu(self.server_pid),
                "postgres": _children_cpu(self.postmaster_pid) if self.postmaster_pid else 0.0,
                "generator": t.user + t.system, "machine": _machine_busy(),
                "wall": time.monotonic()}

    @staticmethod
    def rates(a: dict, b: dict) -> dict[str, float]:
        wall = b["wall"] - a["wall"]
        r = {k: (b[k] - a[k]) / wall for k in a if k != "wall"}
        r["other"] = max(0.0, r["machine"] - r["server"] - r["postgres"] - r["generator"])
        return r


def _ms(values: list[float], q: float) -> float:
    return _percentile(values, q) * 1000 if values else float("nan")


def _summary(results: list[Result], duration: float) -> dict:
    ok = [r.latency for r in results if r.status == 200]
    shed = [r.latency for r in results if r.status == 503]
    other = [r for r in results if r.status not in (200, 503)]
    return {"offered": len(results) / duration, "goodput": len(ok) / duration,
            "ok": len(ok), "shed": len(shed), "other": len(other),
            "other_statuses": sorted({r.status for r in other}),
            "ok_p50": _ms(ok, 50), "ok_p99": _ms(ok, 99), "shed_p50": _ms(shed, 50),
            "shed_p99": _ms(shed, 99), "lag_p99": _ms([r.lag for r in results], 99),
            "read_delay_p99": _ms([r.read_delay for r in results], 99),
            "shed_read_p99": _ms([r.latency + r.read_delay for r in results
                                  if r.status == 503], 99),
            "cache_hits": sum(r.cache_hit for r in results)}


# -- the service ---------------------------------------------------------------------------------

def _cache_off_settings() -> list[str]:
    out = []
    for s in SETTINGS:
        if ("cache" in s.name and s.name.endswith(("_bytes", "_size"))
                and not s.name.startswith("viewer_") and (s.min is None or s.min <= 0)):
            out.append(f"{s.name}=0")
    return out


def _start_service(dsn: str, port: int, settings: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "service.cli", "serve"]
    for pair in [f"database_url={dsn}", f"port={port}", "log_level=ERROR",
                 "cursor_secret=overload-bench", *settings]:
        cmd += ["--setting", pair]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "ARBOR_WORKERS": "1"})


async def _wait_healthy(pool: Pool, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with status {proc.returncode}")
        try:
            if (await pool.get("/healthz")).status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the service did not become healthy within 60 s")


def _postmaster_pid(data_dir: str) -> int | None:
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def run(args, port: int, proc: subprocess.Popen, work_ids, postmaster: int | None) -> int:
    top, kids = work_ids
    pool = Pool("127.0.0.1", port)
    await _wait_healthy(pool, proc)
    pages = [f"/v1/conversations/{i}" for i in (top + kids if args.small_pages else top)]
    work = Workload(pages, await _continuations(port, top))
    meter = CpuMeter(proc.pid, postmaster)
    print(f"workload: {len(pages):,} distinct first pages ({len(top)} with ~120 reply nodes"
          f"{f', {len(kids):,} with ~6' if args.small_pages else ''}), "
          f"{len(work.continuations)} continuation pages ({CONTINUATION_SHARE:.0%} of requests)")

    # (a) unloaded
    await sequential(pool, work, args.warmup)
    c0 = meter.read()
    unloaded = await sequential(pool, work, args.requests)
    cpu_a = CpuMeter.rates(c0, meter.read())
    bad = [r.status for r in unloaded if r.status != 200]
    if bad:
        raise SystemExit(f"unloaded requests failed: {sorted(set(bad))}")
    lat = [r.latency for r in unloaded]
    unloaded_p50, unloaded_p99 = _ms(lat, 50), _ms(lat, 99)
    one_client_rate = len(lat) / sum(lat)
    print(f"\n(a) unloaded, one request at a time, {len(lat)} requests: p50 {unloaded_p50:.2f} ms, "
          f"p99 {unloaded_p99:.2f} ms ({one_client_rate:.0f} req/s); cache hits "
          f"{sum(r.cache_hit for r in unloaded)}; CPU: server {cpu_a['server']:.2f}, "
          f"postgres {cpu_a['postgres']:.2f}, other processes {cpu_a['other']:.2f}")

    # (b) peak goodput, stepping the offered rate up
    print(f"\n(b) stepping the offered rate, {args.step_seconds:g} s per step")
    print(f"{'offered/s':>10} {'goodput/s':>10} {'503/s':>7} {'200 p50':>8} {'200 p99':>8} "
          f"{'503 p99':>8} {'gen lag p99':>11} {'cpu srv':>8} {'pg':>5} {'gen':>5} {'other':>6}")
    rate, peak, best_rate, flat = 0.5 * one_client_rate, 0.0, 0.0, 0
    while rate <= args.max_rate:
        c0 = meter.read()
        s = _summary(await open_loop(pool, work, rate, args.step_seconds), args.step_seconds)
        cpu = CpuMeter.rates(c0, meter.read())
        print(f"{s['offered']:>10.0f} {s['goodput']:>10.0f} {s['shed'] / args.step_seconds:>7.0f} "
              f"{s['ok_p50']:>8.2f} {s['ok_p99']:>8.2f} {s['shed_p99']:>8.2f} "
              f"{s['lag_p99']:>11.2f} {cpu['server']:>8.2f} {cpu['postgres']:>5.2f} "
              f"{cpu['generator']:>5.2f} {cpu['other']:>6.2f}")
        if s["goodput"] > peak * 1.03:
            flat = 0
        else:
            flat += 1
        if s["goodput"] > peak:
            peak, best_rate = s["goodput"], rate
        if flat >= 3:  # two flat 4-s steps can be noise (the limit wanders by a step)
            break
        rate *= 1.3
        await asyncio.sleep(1)  # let the last step's stragglers drain
    print(f"peak goodput: {peak:.0f} renders/s (offered {best_rate:.0f}/s)")

    # (c) rounds, side by side: unloaded, at the peak's rate, at `multiplier` x the peak
    offered = args.multiplier * peak
    # The best step may come late in the search, far into overload, by noise: capacity is
    # measured just above the peak goodput, never at an overload of its own.
    best_rate = min(best_rate, 1.25 * peak)
    window = args.duration / args.rounds
    modes = {"batch": ["batch"], "normal": ["normal"], "both": ["batch", "normal"]}[
        args.pg_scheduling]
    print(f"\n(c) {args.rounds} rounds of: {args.round_requests} unloaded requests, "
          f"{window:g} s offered {best_rate:.0f}/s (the peak's rate), {window:g} s offered "
          f"{offered:.0f}/s ({args.multiplier:g}x the peak goodput), open loop"
          + (f"; each round once per PostgreSQL scheduling policy ({', '.join(modes)})"
             if len(modes) > 1 else ""))
    print(f"{'round':>5} {'pg':>6} {'unloaded p99':>12} {'peak goodput':>12} "
          f"{'overload goodput':>16} {'share':>6} {'200 p99':>8} {'503 p99':>8} {'limit':>6}")
    accs = {mode: Rounds() for mode in modes}
    for i in range(args.rounds):
        for mode in modes:
            _pg_scheduling(postmaster, mode)
            acc = accs[mode]
            await asyncio.sleep(1)
            u = await sequential(pool, work, args.round_requests)
            await asyncio.sleep(0.5)
            p = await open_loop(pool, work, best_rate, window)
            await asyncio.sleep(1)
            c0 = meter.read()
            snaps: list[dict] = []
            watcher = asyncio.ensure_future(watch_admission(port, 0.5, snaps))
            o = await open_loop(pool, work, offered, window)
            watcher.cancel()
            acc.add(u, p, o, CpuMeter.rates(c0, meter.read()), snaps)
            su, sp, so = (_ms([r.latency for r in u if r.status == 200], 99),
                          _summary(p, window), _summary(o, window))
            lims = [x["limit"] for x in snaps]
            print(f"{i + 1:>5} {mode:>6} {su:>12.2f} {sp['goodput']:>12.0f} "
                  f"{so['goodput']:>16.0f} "
                  f"{so['goodput'] / sp['goodput'] if sp['goodput'] else 0:>6.0%} "
                  f"{so['ok_p99']:>8.2f} {so['shed_p99']:>8.2f} "
                  f"{(sorted(lims)[len(lims) // 2] if lims else float('nan')):>6.1f}")
    pool.close()
    _pg_scheduling(postmaster, "batch")  # as the service ships it
    checks = []
    for n, mode in enumerate(modes):
        label = {"batch": "PostgreSQL under SCHED_BATCH (as shipped)",
                 "normal": "PostgreSQL under SCHED_OTHER"}[mode]
        if len(modes) > 1:
            label += " (the targets)" if n == 0 else " (for comparison only)"
        mode_checks = _report(label, accs[mode], peak, window * args.rounds, pool)
        if n == 0:
            checks = mode_checks
    print()
    return verdict(checks)


def _pg_scheduling(postmaster: int | None, mode: str) -> None:
    if postmaster is None or not hasattr(os, "SCHED_BATCH"):
        return
    set_scheduling(postmaster, os.SCHED_BATCH if mode == "batch" else os.SCHED_OTHER)


@dataclass
class Rounds:
    """Everything measured in the rounds of one PostgreSQL scheduling policy."""
    unloaded: list[Result] = field(default_factory=list)
    at_peak: list[Result] = field(default_factory=list)
    overload: list[Result] = field(default_factory=list)
    snaps: list[list[dict]] = field(default_factory=list)  # /readyz figures, per round
    cpu: list[dict[str, float]] = field(default_factory=list)

    def add(self, u: list[Result], p: list[Result], o: list[Result], cpu: dict,
            snaps: list[dict]) -> None:
        self.unloaded += u
        self.at_peak += p
        self.overload += o
        self.cpu.append(cpu)
        self.snaps.append(snaps)


def _report(label: str, acc: Rounds, peak: float, total: float, pool: Pool) -> list:
    """Print one policy's figures; the checks against the targets."""
    cpu = {k: sum(c[k] for c in acc.cpu) / len(acc.cpu) for k in acc.cpu[0]}
    s = _summary(acc.overload, total)
    sp = _summary(acc.at_peak, total)
    bad = [r.status for r in acc.unloaded if r.status != 200]
    if bad:
        raise SystemExit(f"unloaded requests failed: {sorted(set(bad))}")
    unloaded_p99 = _ms([r.latency for r in acc.unloaded], 99)
    by_kind = {}
    for kind in ("first_page", "continuation"):
        rs = [r for r in acc.overload if r.kind == kind]
        by_kind[kind] = (sum(r.status == 200 for r in rs), sum(r.status == 503 for r in rs))

    share = s["goodput"] / sp["goodput"] if sp["goodput"] else 0.0
    ratio = s["ok_p99"] / unloaded_p99
    print(f"\n{label}:")
    print(f"  at the peak's rate: goodput {sp['goodput']:.0f}/s (the stepping's peak: "
          f"{peak:.0f}/s), 200 p99 {sp['ok_p99']:.2f} ms")
    print(f"  overload, {total:g} s in all: offered {s['offered']:.0f}/s")
    print(f"  responses: 200 {s['ok']:,}  503 {s['shed']:,}  other {s['other']:,} "
          f"{s['other_statuses'] or ''}")
    print(f"  by kind (200/503): first pages {by_kind['first_page'][0]:,}/"
          f"{by_kind['first_page'][1]:,}, continuations {by_kind['continuation'][0]:,}/"
          f"{by_kind['continuation'][1]:,}")
    print(f"  goodput {s['goodput']:.0f}/s = {share:.0%} of the goodput at the peak's rate "
          f"({s['goodput'] / peak if peak else 0:.0%} of the stepping's peak)")
    print(f"  200 latency p50 {s['ok_p50']:.2f} ms, p99 {s['ok_p99']:.2f} ms = {ratio:.2f}x the "
          f"unloaded p99 ({unloaded_p99:.2f} ms over {len(acc.unloaded)} requests, between "
          f"the rounds)")
    print(f"  503 latency p50 {s['shed_p50']:.2f} ms, p99 {s['shed_p99']:.2f} ms "
          f"({s['shed_read_p99']:.2f} ms to when this process had read them)")
    print(f"  timing: answers timed by the kernel's receive timestamp: "
          f"{pool.kernel_timestamps:,} (whole run); this process read answers up to "
          f"{s['read_delay_p99']:.2f} ms (p99) after they arrived")
    print(f"  generator: lag p99 {s['lag_p99']:.2f} ms, {pool.opened} connections opened "
          f"(whole run), {cpu['generator']:.2f} CPU = "
          f"{cpu['generator'] / max(s['offered'], 1) * 1e6:.0f} us per request")
    print(f"  CPU under overload (cores): server {cpu['server']:.2f}, postgres "
          f"{cpu['postgres']:.2f}, generator {cpu['generator']:.2f}, other processes "
          f"{cpu['other']:.2f} (machine: {os.cpu_count()} CPUs)")
    snaps = [x for r in acc.snaps for x in r]
    if len(snaps) >= 2:
        limits = sorted(x["limit"] for x in snaps)
        shed: dict[str, int] = {}
        for r in acc.snaps:  # within each round: another policy's rounds may come between
            for k, v in (r[-1]["shed_by_reason"] if r else {}).items():
                shed[k] = shed.get(k, 0) + v - r[0]["shed_by_reason"].get(k, 0)
        last = snaps[-1]
        print(f"  service's limit under overload (/readyz every 0.5 s): min {limits[0]:.1f}, "
              f"median {limits[len(limits) // 2]:.1f}, max {limits[-1]:.1f}; latency baseline "
              f"{last['baseline_rtt_ms']} ms, last window {last['short_rtt_ms']} ms; shed by "
              f"reason (first to last snapshot of each round): {shed}")
    elif not snaps:
        print("  (no admission figures at /readyz: load shedding is off)")
    if s["cache_hits"]:
        print(f"  note: {s['cache_hits']} responses were render-cache hits")
    return [
        (share >= GOODPUT_TARGET,
         f"goodput {share:.0%} of the goodput at the peak's rate >= {GOODPUT_TARGET:.0%}"),
        (s["shed_p99"] <= SHED_P99_TARGET_MS or not s["shed"],
         f"503 p99 {s['shed_p99']:.2f} ms <= {SHED_P99_TARGET_MS:g} ms"),
        (ratio <= ADMITTED_P99_RATIO_TARGET,
         f"200 p99 {s['ok_p99']:.2f} ms <= {ADMITTED_P99_RATIO_TARGET:g}x unloaded p99 "
         f"{unloaded_p99:.2f} ms"),
        (s["other"] == 0, f"{s['other']} responses other than 200 and 503 == 0"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=40.0,
                        help="overload in all, s (split over the rounds)")
    parser.add_argument("--rounds", type=int, default=8,
                        help="rounds of (unloaded, peak rate, overload), side by side")
    parser.add_argument("--round-requests", type=int, default=250,
                        help="unloaded requests per round")
    parser.add_argument("--multiplier", type=float, default=3.0, help="overload = this x peak")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="per peak-finding step")
    parser.add_argument("--max-rate", type=float, default=20_000, help="stop stepping here")
    parser.add_argument("--requests", type=int, default=1000, help="unloaded requests measured")
    parser.add_argument("--warmup", type=int, default=100, help="unloaded requests first")
    parser.add_argument("--nice", type=int, default=0,
                        help="the generator's nice increment, e.g. -5 (root) to favour its timing")
    parser.add_argument("--pg-scheduling", choices=("batch", "normal", "both"), default="batch",
                        help="PostgreSQL's processes under SCHED_BATCH (as the embedded server "
                             "ships), SCHED_OTHER, or both, alternating round by round")
    parser.add_argument("--small-pages", action="store_true",
                        help="also render the 2,000 children of the top replies (~6 nodes each)")
    parser.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the service (repeatable), e.g. admission_enabled=false")
    parser.add_argument("--data-dir", default=str(ROOT / ".arbor" / "bench-pgdata"),
                        help="embedded PostgreSQL data folder (kept: reruns skip the seeding)")
    args = parser.parse_args(argv)

    server = EmbeddedPostgres(args.data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    if not server.started_here:
        print(f"note: PostgreSQL in {args.data_dir} was already running (another benchmark?); "
              "figures may be disturbed, and it may be stopped under this run")
    proc = None
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        if not report["skipped"]:
            print(f"seed bench: {report['posts']:,} posts in {report['seconds']:.1f} s")
        ids = asyncio.run(_focal_ids(dsn, report["roots"]))
        settings = _cache_off_settings() + args.server_setting
        print(f"service settings: {' '.join(settings) or '(defaults)'}")
        port = _free_port()
        proc = _start_service(dsn, port, settings)
        if args.nice:
            try:
                # Timestamps are only as good as the generator's event loop: let it (and only
                # it: the service and PostgreSQL are started already) run ahead when the
                # machine is short of CPU. It then also preempts the service more often.
                os.nice(args.nice)
                print(f"generator: running at nice {args.nice} (the service and PostgreSQL at "
                      "their default)")
            except OSError as e:
                print(f"generator: could not change its nice value: {e}")
        return asyncio.run(run(args, port, proc, ids, _postmaster_pid(args.data_dir)))
    finally:
        stop_process(proc)
        if server.started_here:
            server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
