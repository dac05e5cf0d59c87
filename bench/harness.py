"""What every bench does around its measurement: an embedded PostgreSQL with the `bench`
preset (kept under .arbor/bench-pgdata, so reruns skip the seeding), and the service as a
subprocess on a free port, stopped however the bench ends."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

DATA_DIR = str(ROOT / ".arbor" / "bench-pgdata")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextmanager
def bench_database(data_dir: str = DATA_DIR) -> Iterator[tuple[str, dict]]:
    """(dsn, seed report) of the `bench` preset; the server is stopped afterwards if this
    process started it."""
    server = EmbeddedPostgres(data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        if report["skipped"]:
            print(f"seed bench: already loaded ({report['posts']:,} posts) in {data_dir}")
        else:
            print(f"seed bench: {report['posts']:,} posts in {report['seconds']:.1f} s = "
                  f"{report['posts_per_second']:,} posts/s")
        yield dsn, report
    finally:
        if server.started_here:
            server.stop()


@contextmanager
def arbor_service(dsn: str, *settings: str, root: Path = ROOT
                  ) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of `arbor serve` against dsn, healthy; settings are NAME=VALUE.
    `root`: the checkout whose code runs (another worktree, to compare side by side)."""
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--setting", f"database_url={dsn}",
           "--setting", f"port={port}", "--setting", "log_level=WARNING"]
    for setting in settings:
        cmd += ["--setting", setting]
    # One process, as these benches measure (and older checkouts know no `workers`).
    proc = subprocess.Popen(cmd, cwd=root, env={**os.environ, "ARBOR_WORKERS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_healthy(base, proc))
        yield base, proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM (the service stops gracefully), SIGKILL after 15 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def wait_healthy(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with status {proc.returncode}")
        try:
            async with session.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the service did not become healthy within 60 s")


async def _healthy(base: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, base, proc)


def verdict(checks: list[tuple[bool, str]]) -> int:
    """Print PASS/FAIL per target; the exit status: 0 when all pass."""
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for ok, _ in checks) else 1
