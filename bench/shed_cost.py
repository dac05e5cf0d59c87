"""What one refused request (503 `overloaded`) costs the service's CPU, side by side.

    python bench/shed_cost.py [--rounds 5] [--seconds 3] [--connections 8]
                              [--variant NAME=ROOT ...] [--floors] [--log-level ERROR]
                              [--profile FILE]

Starts an embedded PostgreSQL (an empty database under a temporary directory: a refusal
touches none of it) and, per variant, a server process running the code of a checkout
(`NAME=ROOT`, e.g. `main=/tmp/main-worktree`; default: this checkout as `this`), built as
`arbor serve` builds it (create_app, the access logger, handler cancellation) plus one route,
`/bench/hold`, whose requests wait until the server stops. Each server gets
`concurrency_limit` such requests, so every slot is taken, and `admission_queue_size=0`, so
every other limited request is refused at once: exactly the 503 path of an overload, without
the renders around it.

Then, in --rounds interleaved rounds, each server in turn gets --seconds of a flood of
`GET /v1/conversations/1` on --connections keep-alive connections (a closed loop without
think time, from 127.0.0.1: exempt from rate limits, like bench/overload.py's client), and
the figure is the server process's CPU time (utime + stime, /proc/<pid>/stat) over the 503s
it answered: µs per refusal. Only the server's own CPU is counted, so other work on the
machine changes the rate of refusals, hardly their cost (it still costs cache misses: compare
variants measured in the same rounds).

--floors adds two servers that show what any answer costs here: `aiohttp`, a bare aiohttp
app whose one handler returns a 503 with the same body and headers, and `asyncio`, a
protocol that answers every request with fixed bytes (no HTTP framework at all).
--profile FILE runs the first variant's server under cProfile and writes its stats (pstats)
to FILE when it stops: where a refusal's time goes.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOLD_PATH = "/bench/hold"
FLOOD_PATH = "/v1/conversations/1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the servers (run as `shed_cost.py --serve KIND ...` in their own processes) -----------

def serve_arbor(root: str, port: int, dsn: str, log_level: str, profile: str | None) -> None:
    sys.path.insert(0, root)   # this checkout's code, not the installed one
    from aiohttp import web

    from service.app import create_app
    from service.core import logs
    from service.core.settings import load_settings
    from service.http import gc_tuning
    from service.http.middlewares import AccessLogger

    import service
    assert str(Path(service.__file__).resolve()).startswith(str(Path(root).resolve())), \
        service.__file__
    settings = load_settings(env={}, overrides={
        "database_url": dsn, "port": port, "log_level": log_level, "cursor_secret": "shed-cost",
        "admin_token": "bench-admin", "concurrency_limit": 4, "admission_queue_size": 0})
    logs.configure(settings.log_level)
    app = create_app(settings)

    async def hold(request: web.Request) -> web.Response:
        await asyncio.Event().wait()   # holds its slot until the server stops
        return web.Response()

    app.router.add_get(HOLD_PATH, hold)
    gc_tuning.install(app)
    _run(lambda: web.run_app(app, host="127.0.0.1", port=port, access_log_class=AccessLogger,
                             print=None, shutdown_timeout=1, handler_cancellation=True),
         profile)


def serve_bare_aiohttp(port: int) -> None:
    from aiohttp import web
    body = _shed_body()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, body=body, headers={
            "Content-Type": "application/json", "Retry-After": "1", "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                shutdown_timeout=1)


def serve_bare_asyncio(port: int) -> None:
    body = _shed_body()
    answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
              b"Retry-After: 1\r\nCache-Control: no-store\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)

    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                _, self.buf = self.buf.split(b"\r\n\r\n", 1)
                self.transport.write(answer)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


def _shed_body() -> bytes:
    import orjson
    return orjson.dumps({"error": {"code": "overloaded", "message": "the service is overloaded "
                                   "and shed this request; retry after Retry-After seconds"}})


def _run(fn, profile: str | None) -> None:
    if not profile:
        fn()
        return
    prof = cProfile.Profile()
    try:
        prof.runcall(fn)
    finally:
        prof.dump_stats(profile)


# -- the flood -----------------------------------------------------------------------------

def _cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_busy() -> float:
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


class Server:
    def __init__(self, name: str, cmd: list[str]):
        self.name, self.port = name, _free_port()
        self.proc = subprocess.Popen(cmd + [str(self.port)], cwd=ROOT)
        self.holds: list[asyncio.Task] = []
        self.rounds: list[tuple[int, float, int, float]] = []  # (503s, cpu s, other, wall)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _request(host_port: tuple[str, int], path: str,
                   conn: list) -> int:
    """One GET on a keep-alive connection kept in conn[0]; the status."""
    if not conn:
        conn.append(await asyncio.open_connection(*host_port))
    reader, writer = conn[0]
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _healthy(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name}: exited with status {server.proc.returncode}")
        try:
            status = await _request(("127.0.0.1", server.port), "/healthz", [])
            if status in (200, 503):
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{server.name}: not healthy within 60 s")


async def _hold(server: Server, slots: int) -> None:
    async def one() -> None:
        try:
            await _request(("127.0.0.1", server.port), HOLD_PATH, [])
        except (OSError, asyncio.IncompleteReadError):
            pass
    server.holds = [asyncio.create_task(one()) for _ in range(slots)]
    await asyncio.sleep(0.5)
    probe = await _request(("127.0.0.1", server.port), FLOOD_PATH, [])
    if probe != 503:
        raise SystemExit(f"{server.name}: {FLOOD_PATH} answered {probe}, not 503, with every "
                         "slot held")


async def _flood(server: Server, connections: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    counts = {"503": 0, "other": 0}

    async def user() -> None:
        conn: list = []
        while loop.time() < end:
            status = await _request(("127.0.0.1", server.port), FLOOD_PATH, conn)
            counts["503" if status == 503 else "other"] += 1
        conn[0][1].close()

    c0, m0, w0 = _cpu(server.proc.pid), _machine_busy(), time.monotonic()
    await asyncio.gather(*(user() for _ in range(connections)))
    await asyncio.sleep(0.05)
    cpu, wall = _cpu(server.proc.pid) - c0, time.monotonic() - w0
    other = max(0.0, (_machine_busy() - m0) - cpu) / wall
    if counts["other"]:
        raise SystemExit(f"{server.name}: {counts['other']} answers were not 503")
    server.rounds.append((counts["503"], cpu, connections, other))


async def run(args, servers: list[Server]) -> None:
    for s in servers:
        await _healthy(s)
        if s.name not in ("aiohttp", "asyncio"):
            await _hold(s, 4)
    for r in range(args.rounds):
        for s in (servers if r % 2 == 0 else servers[::-1]):
            await _flood(s, args.connections, args.seconds)
            n, cpu, _, other = s.rounds[-1]
            print(f"round {r + 1} {s.name:>10}: {n:>6} refusals in {args.seconds:g} s, server "
                  f"CPU {cpu:.2f} s = {cpu / n * 1e6:6.1f} µs each; other work on the machine "
                  f"{other:.2f} cores (this flood's client included)", flush=True)
    print(f"\nload average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"{'variant':>10} {'µs/refusal (each round)':<44} {'total':>8}")
    for s in servers:
        per = [cpu / n * 1e6 for n, cpu, _, _ in s.rounds]
        total = sum(c for _, c, _, _ in s.rounds) / sum(n for n, *_ in s.rounds) * 1e6
        print(f"{s.name:>10} {' '.join(f'{p:6.1f}' for p in per):<44} {total:8.1f}")
    for s in servers:
        for t in s.holds:
            t.cancel()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ROOT")
    p.add_argument("--floors", action="store_true")
    p.add_argument("--log-level", default="ERROR",
                   help="the servers' log_level (INFO: the access log writes every 503)")
    p.add_argument("--profile", metavar="FILE")
    args = p.parse_args()
    if args.serve:
        kind, *rest = args.serve
        if kind == "arbor":
            root, dsn, level, profile, port = rest
            serve_arbor(root, int(port), dsn, level, profile or None)
        elif kind == "aiohttp":
            serve_bare_aiohttp(int(rest[0]))
        else:
            serve_bare_asyncio(int(rest[0]))
        return 0

    sys.path.insert(0, str(ROOT))
    from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres
    variants = [v.split("=", 1) for v in args.variant] or [["this", str(ROOT)]]
    me = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    with tempfile.TemporaryDirectory(prefix="shed-cost-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", FAST_UNSAFE_OPTIONS)
        dsn = pg.start()
        servers: list[Server] = []
        try:
            for i, (name, root) in enumerate(variants):
                profile = args.profile if i == 0 and args.profile else ""
                servers.append(Server(name, me + ["arbor", str(Path(root).resolve()), dsn,
                                                  args.log_level, profile]))
            if args.floors:
                servers.append(Server("aiohttp", me + ["aiohttp"]))
                servers.append(Server("asyncio", me + ["asyncio"]))
            asyncio.run(run(args, servers))
        finally:
            for s in servers:
                s.stop()
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
