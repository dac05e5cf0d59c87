"""`arbor serve --workers N`: N worker processes on one port, under this small supervisor.

The supervisor (the parent) does once what must happen once: it starts the embedded
PostgreSQL (unless database_url is set), applies migrations, seeds the demo (--demo), fixes
the cursor secret (one for all workers: a cursor signed by one verifies in another) and holds
the port (so that port 0 means one port, and a rolling restart never leaves it free). Each
worker is `arbor serve` in one process (service/cli/arbor.py serve_one), listening with
SO_REUSEPORT: the kernel spreads new connections over the workers' sockets.

Signals: SIGTERM or SIGINT stop the workers one after the other (each stops accepting and
finishes its requests in flight, within worker_shutdown_timeout_s; then SIGKILL), then the
embedded PostgreSQL. SIGHUP restarts the workers one at a time, each replaced only once its
successor is ready. A worker that dies is restarted (after 1 s, doubling to 30 s while it
keeps dying within a minute). A worker whose supervisor is gone stops itself.

Per worker (document for SREs): admission limits, the render and viewer caches (kept
coherent by the change feed, service/http/coherence.py), and rate limits unless
rate_limit_storage_url names a shared store; the pool (db_pool_max connections each).
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import asyncpg
import orjson

from storage import migrations, seeding

from service.core.settings import Settings, SettingsError, embedded_postgres_class

log = logging.getLogger("arbor.workers")

WORKER_ENV = "ARBOR_WORKER_READY_FD"   # set in a worker: the fd it reports readiness on
SUPERVISOR_ENV = "ARBOR_SUPERVISOR_PID"
READY_TIMEOUT_S = 60.0


def worker_count(setting: int) -> int:
    return setting if setting > 0 else (os.cpu_count() or 1)


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    ready_fd: int
    started: float = field(default_factory=time.monotonic)
    ready: bool = False


class Supervisor:
    def __init__(self, settings: Settings, count: int, setting_args: list[str], *, demo: bool):
        self.settings, self.count, self.demo = settings, count, demo
        self.setting_args = setting_args
        self.workers: list[Worker | None] = [None] * count
        self.server = None  # storage.embedded.EmbeddedPostgres, when this process starts one
        self.env: dict[str, str] = {}
        self.stopping = False
        self.restart_requested = False
        self._sock: socket.socket | None = None
        self._failures = [0] * count

    # -- start -------------------------------------------------------------------
    def prepare(self) -> None:
        s = self.settings
        dsn = s.database_url
        needed = connections_needed(self.count, s.db_pool_max)
        if not dsn:
            # sized for the workers: one per CPU on a large machine is more than its default
            self.server = embedded_postgres_class()(  # names DATABASE_URL if absent
                s.data_dir, {"max_connections": str(max(200, needed))})
            dsn = self.server.start()
        asyncio.run(_migrate_and_seed(dsn, self.demo, s.port, needed))
        self._sock = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.bind((s.host, s.port))  # held, never listening: it takes no connections
        port = self._sock.getsockname()[1]
        self.env = {**os.environ, "ARBOR_DATABASE_URL": dsn, "ARBOR_PORT": str(port),
                    "ARBOR_CURSOR_SECRET": s.cursor_secret, "ARBOR_WORKERS": "1",
                    SUPERVISOR_ENV: str(os.getpid())}
        self.port = port
        if not s.rate_limit_storage_url and self.count > 1:
            log.warning("rate_limit_storage_url is not set: rate limits are kept per worker, so "
                        "a client may get up to %d times its budgets", self.count)

    def spawn(self, index: int) -> Worker:
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "service.cli", "serve", "--workers", "1"]
        for pair in self.setting_args:
            cmd += ["--setting", pair]
        env = {**self.env, WORKER_ENV: str(write_fd), "ARBOR_WORKER_INDEX": str(index)}
        # Its own session: a terminal's Ctrl-C reaches the supervisor only, which stops the
        # workers one by one.
        proc = subprocess.Popen(cmd, env=env, pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        worker = Worker(index, proc, read_fd)
        log.info("worker %d started pid=%d", index, proc.pid)
        return worker

    def wait_ready(self, workers: list[Worker], timeout: float = READY_TIMEOUT_S) -> bool:
        """Until every worker wrote its ready byte (True) or one exited or time ran out."""
        deadline = time.monotonic() + timeout
        pending = {w.ready_fd: w for w in workers if not w.ready}
        while pending and time.monotonic() < deadline and not self.stopping:
            readable, _, _ = select.select(list(pending), [], [], 0.2)
            for fd in readable:
                worker = pending.pop(fd)
                if os.read(fd, 1):
                    worker.ready = True
                    log.info("worker %d ready pid=%d", worker.index, worker.proc.pid)
                else:  # EOF: it exited before it was ready
                    return False
            if any(w.proc.poll() is not None for w in pending.values()):
                return False
        return not pending

    # -- run ---------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            try:
                self.prepare()
            except SettingsError:
                raise  # arbor's main prints it and exits 2, as for one process
            except Exception as e:  # noqa: BLE001 - the port taken, no database, ...
                log.error("supervisor: cannot start: %s: %s", type(e).__name__, e)
                return 1
            self.workers = [self.spawn(i) for i in range(self.count)]
            if not self.wait_ready([w for w in self.workers if w]):
                if not self.stopping:
                    log.error("a worker did not start; stopping")
                    return 1
            else:
                log.info("%d workers serving on http://%s:%d", self.count, self.settings.host,
                         self.port)
            while not self.stopping:
                if self.restart_requested:
                    self.restart_requested = False
                    self.rolling_restart()
                self._reap()
                time.sleep(0.2)
            return 0
        finally:
            self.stop_all()
            if self._sock is not None:
                self._sock.close()
            if self.server is not None and self.server.started_here:
                self.server.stop()

    def _on_stop(self, signum, _frame) -> None:
        if not self.stopping:
            log.info("supervisor: %s; stopping the workers one by one",
                     signal.Signals(signum).name)
        self.stopping = True

    def _on_hup(self, _signum, _frame) -> None:
        self.restart_requested = True

    def _reap(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker is None or worker.proc.poll() is None or self.stopping:
                continue
            lived = time.monotonic() - worker.started
            self._failures[i] = self._failures[i] + 1 if lived < 60 else 1
            delay = min(30.0, 2 ** (self._failures[i] - 1))
            log.error("worker %d (pid=%d) exited with %s after %.1fs; restarting in %.0fs",
                      i, worker.proc.pid, worker.proc.returncode, lived, delay)
            os.close(worker.ready_fd)
            self.workers[i] = None
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.1)
            if not self.stopping:
                self.workers[i] = self.spawn(i)
                self.wait_ready([self.workers[i]])

    def rolling_restart(self) -> None:
        log.info("supervisor: SIGHUP; replacing the workers one at a time")
        for i, old in enumerate(self.workers):
            if self.stopping:
                return
            new = self.spawn(i)
            if not self.wait_ready([new]):
                log.error("worker %d: its replacement did not start; keeping the old one", i)
                self._stop(new)
                continue
            self.workers[i] = new
            if old is not None:
                self._stop(old)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker is not None:
                self._stop(worker)

    def _stop(self, worker: Worker) -> None:
        proc = worker.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.settings.worker_shutdown_timeout_s + 5)
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid=%d) did not stop in time: killed", worker.index,
                          proc.pid)
                proc.kill()
                proc.wait()
        log.info("worker %d stopped pid=%d status=%s", worker.index, proc.pid, proc.returncode)
        try:
            os.close(worker.ready_fd)
        except OSError:
            pass


def connections_needed(workers: int, pool_max: int) -> int:
    """Connections N workers may hold: each its pool and its change-feed listener, plus a few
    for the supervisor, psql and superuser maintenance."""
    return workers * (pool_max + 1) + 10


async def _migrate_and_seed(dsn: str, demo: bool, port: int, needed: int = 0) -> None:
    con = await asyncpg.connect(dsn)
    try:
        limit = int(await con.fetchval("SHOW max_connections"))
        if needed > limit:
            log.warning("the workers may open %d connections but the database allows %d "
                        "(max_connections): lower workers or db_pool_max, or raise it", needed,
                        limit)
        applied = await migrations.apply(con)
        if applied:
            log.info("migrations applied: %s", applied)
        if not demo:
            return
        if await con.fetchval("SELECT EXISTS (SELECT 1 FROM posts)"):
            log.info("database has posts; not seeding the demo")
        else:
            await seeding.seed(con, "demo")
        roots = await con.fetchval("SELECT roots FROM seed_runs WHERE preset = 'demo'")
        if roots:
            named = orjson.loads(roots)
            # a deleted post (the `tombstone` demo) is the 404 on its own: not a link to follow
            deleted = {r["id"] for r in await con.fetch(
                "SELECT id FROM posts WHERE id = ANY($1::bigint[]) AND deleted_at IS NOT NULL",
                [int(v) for v in named.values()])}
            log.info("demo conversations: %s", ", ".join(
                f"{name}=http://localhost:{port}/v1/conversations/{post_id}"
                for name, post_id in named.items() if int(post_id) not in deleted))
    finally:
        await con.close()


# -- in a worker ----------------------------------------------------------------------
def report_ready() -> None:
    """Called once the worker listens: tells the supervisor (a no-op outside one)."""
    fd = os.environ.pop(WORKER_ENV, None)
    if fd is not None:
        try:
            os.write(int(fd), b"R")
            os.close(int(fd))
        except OSError:
            pass


def index() -> int | None:
    """This worker's number (0..N-1) under a supervisor, else None."""
    value = os.environ.get("ARBOR_WORKER_INDEX") if SUPERVISOR_ENV in os.environ else None
    return int(value) if value is not None and value.isdigit() else None


def is_worker() -> bool:
    return SUPERVISOR_ENV in os.environ


async def watch_supervisor(interval_s: float = 1.0) -> None:
    """Stop this worker (SIGTERM to itself: a graceful stop) once its supervisor is gone."""
    supervisor = int(os.environ.get(SUPERVISOR_ENV, "0"))
    if not supervisor:
        return
    while True:
        await asyncio.sleep(interval_s)
        if os.getppid() != supervisor:
            log.error("worker: the supervisor (pid=%d) is gone; stopping", supervisor)
            os.kill(os.getpid(), signal.SIGTERM)
            return
