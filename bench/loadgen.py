"""Load generation for the overload and fairness benches: a lean HTTP/1.1 client timed by the
kernel's receive timestamps, the render workload, open (Poisson) and closed loops, CPU meters,
and the service as a subprocess with its render caches off.

The client: keep-alive, a connection per request in flight, reused, much cheaper than
aiohttp's. A latency runs from writing the request to the kernel's receive time of the
answer's last byte (SO_TIMESTAMPNS on Linux; elsewhere, to when this process read it): the
generator is one asyncio process on the same busy machine, and the moment its event loop gets
round to a readable socket is its own delay, not the service's (printed beside the figures).

The workload: first pages of the 100 top-ranked replies of the `bench` preset's 1K and 1M
conversations (~120 reply nodes each) and 20% continuation pages (`/replies` cursors of those
replies). Every request carries a random `max_nodes` above the pages' size (same work,
distinct key), so neither a cache nor the coalescing of identical concurrent renders makes a
render cheaper than a real one.
"""
from __future__ import annotations

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

import asyncpg  # noqa: E402
import orjson  # noqa: E402

from harness import percentile  # noqa: E402
from service.core.settings import SETTINGS  # noqa: E402

CONTINUATION_SHARE = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else 0)
_ANC_SPACE = socket.CMSG_SPACE(16)


# -- the client ----------------------------------------------------------------------------

class _Conn:
    """One keep-alive connection, one request at a time, read with recvmsg so each read
    carries the kernel's receive timestamp."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop):
        self.sock, self.loop = sock, loop
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.need = -1           # total bytes of the current response, once the head is read
        self.status = 0
        self.closed = False
        self.rx_ns = 0           # kernel receive time of the latest segment read (0: unknown)
        loop.add_reader(sock.fileno(), self._readable)

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
            self.need = end + 4 + int(m.group(1))
        if len(self.buf) >= self.need:
            del self.buf[:self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self.status, self.rx_ns, self.loop.time()))

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
    sent: float              # loop clock, just before the request was written
    read: float              # loop clock, when this process had read the whole answer
    latency: float           # s from writing the request to the answer's last byte arriving


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

    async def get(self, path: str, headers: bytes = b"") -> Answer:
        """GET path; `headers`: extra header lines, each ending in CRLF."""
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
            conn.sock.send(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._host_header
                           + headers + b"\r\n")
            status, rx_ns, read = await conn.waiter
        except BaseException:
            conn.close()  # a half-read answer must not be taken for the next request's
            raise
        self.idle.append(conn)
        if rx_ns >= sent_ns:
            self.kernel_timestamps += 1
            latency = (rx_ns - sent_ns) / 1e9
        else:
            latency = read - sent
        return Answer(status, sent, read, latency)

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


# -- workload ------------------------------------------------------------------------------

@dataclass
class Workload:
    first_pages: list[str]
    continuations: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    continuation_share: float = CONTINUATION_SHARE

    def only(self, kind: str) -> "Workload":
        """The same pages, one kind only ("first_page" or "continuation")."""
        return Workload(self.first_pages, self.continuations, random.Random(11),
                        1.0 if kind == "continuation" else 0.0)

    def pick(self) -> tuple[str, str]:
        max_nodes = self.rng.randint(130, 1000)
        if self.continuations and self.rng.random() < self.continuation_share:
            return "continuation", f"{self.rng.choice(self.continuations)}&max_nodes={max_nodes}"
        return "first_page", f"{self.rng.choice(self.first_pages)}?max_nodes={max_nodes}"


async def workload(dsn: str, roots: dict[str, str], port: int) -> Workload:
    con = await asyncpg.connect(dsn)
    try:
        top = [r["id"] for r in await con.fetch(
            "SELECT p.id FROM posts p JOIN post_counts c ON c.post_id = p.id "
            "WHERE p.in_reply_to_id = ANY($1::bigint[]) AND c.likes >= 5000000 ORDER BY p.id",
            [int(v) for v in roots.values()])]
    finally:
        await con.close()
    pool, conts = Pool("127.0.0.1", port), []
    for post_id in top:   # the `/replies` cursor of each top reply's first page
        a = await _get_json(pool, f"/v1/conversations/{post_id}?depth=1")
        more = (a["focal"].get("replies") or {}).get("more") or {}
        if more.get("cursor"):
            conts.append(f"/v1/conversations/{post_id}/replies?cursor={more['cursor']}")
    pool.close()
    return Workload([f"/v1/conversations/{i}" for i in top], conts)


async def _get_json(pool: Pool, path: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{pool.host}:{pool.port}{path}") as r:
            return orjson.loads(await r.read())


# -- measuring -----------------------------------------------------------------------------

@dataclass
class Result:
    kind: str
    client: str
    scheduled: float
    status: int            # 0: a transport error or no answer within 10 s
    latency: float         # s, writing the request to the answer's last byte arriving
    lag: float = 0.0       # how late after its scheduled time the request was written, s
    read_delay: float = 0.0  # how long after arriving the answer was read by this process


async def one(pool: Pool, kind: str, path: str, scheduled: float, out: list[Result],
              client: str = "", headers: bytes = b"") -> Result:
    try:
        a = await asyncio.wait_for(pool.get(path, headers), 10)
        r = Result(kind, client, scheduled, a.status, a.latency, a.sent - scheduled,
                   max(0.0, a.read - a.sent - a.latency))
    except (OSError, asyncio.TimeoutError, RuntimeError):
        r = Result(kind, client, scheduled, 0, time.monotonic() - scheduled)
    out.append(r)
    return r


async def open_loop(pool: Pool, work: Workload, rate: float, duration: float, *,
                    client: str = "", headers: bytes = b"", seed: int = 1,
                    out: list[Result] | None = None) -> list[Result]:
    """Poisson arrivals at `rate` per second for `duration` s, whatever the answers."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    out = [] if out is None else out
    tasks = []
    t = loop.time() + 0.02
    end = t + duration
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            break
        delay = t - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        kind, path = work.pick()
        tasks.append(loop.create_task(one(pool, kind, path, t, out, client, headers)))
    await asyncio.gather(*tasks)
    return out


async def closed_loop(pool: Pool, work: Workload, clients: int, think: float,
                      duration: float, *, honor_retry_after: bool = True, seed: int = 1,
                      client: str = "", headers: bytes = b"") -> list[Result]:
    """`clients` users each sending one request at a time, waiting an exponentially
    distributed think time (mean `think` s) after each answer and Retry-After (1 s) after a
    503; their starts are spread over one think time (a steady state, not a stampede)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    out: list[Result] = []
    end = loop.time() + duration

    async def user() -> None:
        await asyncio.sleep(rng.uniform(0, think) if think else 0)
        while loop.time() < end:
            kind, path = work.pick()
            r = await one(pool, kind, path, loop.time(), out, client, headers)
            if r.status == 503 and honor_retry_after:
                await asyncio.sleep(1.0)
            elif think:
                await asyncio.sleep(rng.expovariate(1 / think))

    await asyncio.gather(*(user() for _ in range(clients)))
    return out


async def sequential(pool: Pool, work: Workload, n: int) -> list[Result]:
    loop = asyncio.get_running_loop()
    out: list[Result] = []
    for _ in range(n):
        kind, path = work.pick()
        await one(pool, kind, path, loop.time(), out)
    return out


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000 if values else float("nan")


def summary(results: list[Result], duration: float) -> dict:
    ok = [r.latency for r in results if r.status == 200]
    shed = [r.latency for r in results if r.status == 503]
    other = [r for r in results if r.status not in (200, 503)]
    return {"n": len(results), "offered": len(results) / duration,
            "goodput": len(ok) / duration, "ok": len(ok), "shed": len(shed),
            "other": len(other), "other_statuses": sorted({r.status for r in other}),
            "ok_p50": ms(ok, 50), "ok_p99": ms(ok, 99), "shed_p50": ms(shed, 50),
            "shed_p99": ms(shed, 99), "lag_p99": ms([r.lag for r in results], 99),
            "read_delay_p99": ms([r.read_delay for r in results], 99)}


# -- CPU -----------------------------------------------------------------------------------

def _proc_cpu(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu(parent: int) -> float:
    """The parent's CPU, its exited children's (backends come and go) and its live ones'."""
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
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


class CpuMeter:
    """CPU seconds of the server, PostgreSQL, this generator and the whole machine; rates()
    gives cores used between two readings ("other": processes not ours)."""

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


# -- the service ---------------------------------------------------------------------------

def cache_off_settings() -> list[str]:
    """Every render cache off (settings `*cache*_bytes`/`*cache*_size` that may be 0), the
    viewer cache kept."""
    return [f"{s.name}=0" for s in SETTINGS
            if "cache" in s.name and s.name.endswith(("_bytes", "_size"))
            and not s.name.startswith("viewer_") and (s.min is None or s.min <= 0)]


def start_service(dsn: str, port: int, settings: list[str],
                  root: str | Path = ROOT) -> subprocess.Popen:
    """The service of the checkout at `root` (this one by default)."""
    cmd = [sys.executable, "-m", "service.cli", "serve"]
    for pair in [f"database_url={dsn}", f"port={port}", "log_level=ERROR",
                 "cursor_secret=overload-bench", "admin_token=bench-admin", *settings]:
        cmd += ["--setting", pair]
    # One process, as these benches measure (and older checkouts know no `workers`).
    return subprocess.Popen(cmd, cwd=root, env={**os.environ, "ARBOR_WORKERS": "1"})


async def wait_healthy(pool: Pool, proc: subprocess.Popen) -> None:
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


def postmaster_pid(data_dir: str) -> int | None:
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def admission(port: int) -> dict:
    """The service's admission figures (GET /readyz: never shed)."""
    a = await _get_json(Pool("127.0.0.1", port), "/readyz")
    return a.get("details", {}).get("admission") or {}


async def set_settings(port: int, values: dict) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.patch(f"http://127.0.0.1:{port}/v1/admin/settings", json=values,
                           headers={"Authorization": "Bearer bench-admin"}) as r:
            if r.status != 200:
                raise SystemExit(f"PATCH /v1/admin/settings: {r.status} {await r.text()}")
