"""The Locust suite end to end: `arbor seed --preset demo --export` on a database of its own
(the writers add posts: the session's database stays as other tests expect it), the real
service as a subprocess, and short headless Locust runs gated by loadtest/slo.toml: one that
passes (with --processes 2: the gate sees the master's aggregated stats), one with an absurd
p99 limit and one with an absurdly low rate limit, each exit 1 naming the missed SLO.

Locust runs in subprocesses (it monkey-patches the process with gevent)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from storage import migrations

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN = "loadtest-admin-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ARBOR_") and k != "DATABASE_URL"}


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _patch_settings(url: str, changes: dict) -> None:
    req = urllib.request.Request(url + "/v1/admin/settings", method="PATCH",
                                 data=json.dumps(changes).encode(),
                                 headers={"Authorization": f"Bearer {ADMIN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture(scope="module")
def loadtest_dsn(pg_dsn):
    """A database of its own in the session's PostgreSQL (dropped afterwards)."""
    name = f"loadtest_{os.getpid()}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(pg_dsn)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    async def migrate(dsn: str) -> None:
        con = await asyncpg.connect(dsn)
        try:
            await migrations.apply(con)
        finally:
            await con.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    parts = urlsplit(pg_dsn)   # postgresql://user@host:port/postgres?...: another database
    dsn = urlunsplit(parts._replace(path="/" + name))
    asyncio.run(migrate(dsn))
    yield dsn
    asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def exported(loadtest_dsn, tmp_path_factory):
    path = tmp_path_factory.mktemp("loadtest") / "data.json"
    done = subprocess.run([str(BIN / "arbor"), "seed", "--preset", "demo", "--export",
                           str(path), "--export-accounts", "12", "--export-labels", "3",
                           f"--setting=database_url={loadtest_dsn}"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    return path, report


def _start_service(loadtest_dsn: str, log_path: Path):
    """The service on a free port, and its URL; None when it exited before answering
    (another process took the port between _free_port and the bind)."""
    port = _free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(BIN / "arbor"), "serve", f"--setting=database_url={loadtest_dsn}",
         f"--setting=port={port}", f"--setting=admin_token={ADMIN}",
         "--setting=cursor_secret=loadtest-test", "--setting=log_level=WARNING",
         # as in conftest.py: load shedding is test_admission's; on a box shared with other
         # test runs it would shed a request of a six-user run now and then, and one in fifty
         # is over the gate's 1% (the gate's shed accounting is test_loadtest_gate's)
         "--setting=admission_enabled=false"],
        env=_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            return None
        try:
            if _get(url + "/healthz")[0] == 200:
                return proc, log, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    log.close()
    pytest.fail("the service did not start")


@pytest.fixture(scope="module")
def service(loadtest_dsn, exported, tmp_path_factory):
    logs = tmp_path_factory.mktemp("loadtest-log")
    for attempt in range(3):   # a port taken by another process in between: another port
        started = _start_service(loadtest_dsn, logs / f"service-{attempt}.log")
        if started is not None:
            break
        text = (logs / f"service-{attempt}.log").read_text(errors="replace")
        assert "address already in use" in text.lower(), f"the service exited:\n{text[-2000:]}"
    else:
        pytest.fail("the service found no free port in 3 attempts")
    proc, log, url = started
    yield url
    proc.terminate()
    proc.wait(30)
    log.close()


def _locust(url: str, data: Path, tmp_path: Path, *args: str, users: int = 6,
            run_time: str = "6s") -> tuple[int, str, dict]:
    report = tmp_path / "slo.json"
    done = subprocess.run(
        [str(BIN / "locust"), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--host", url,
         "--headless", "-u", str(users), "-r", str(users), "-t", run_time,
         "--arbor-data", str(data), "--slo-file", str(ROOT / "loadtest" / "slo.toml"),
         "--slo-min-rps", "1", "--slo-min-requests", "20", "--slo-report", str(report),
         "--only-summary", "--csv", str(tmp_path / "run"), *args],
        env=_env(), capture_output=True, text=True, timeout=60, cwd=ROOT)
    verdict = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, verdict


def test_the_export_names_posts_and_mints_working_tokens(exported, service, loadtest_dsn):
    path, report = exported
    data = json.loads(path.read_text())
    assert report["export"]["accounts"] == len(data["accounts"]) == 12
    assert oct(path.stat().st_mode & 0o777) == "0o600"      # it holds bearer tokens
    assert data["huge_conversation"] in {c["root"] for c in data["conversations"]}
    for conversation in data["conversations"]:
        for post_id in (p for level in conversation["levels"] for p in level):
            status, view = _get(f"{service}/v1/conversations/{post_id}?depth=0")
            assert status == 200 and view["focal_id"] == post_id
    for account in data["accounts"][:3]:
        status, body = _get(f"{service}/v1/me/follows", account["token"])
        assert status == 200 and "items" in body
    # the labelled replies make sections, so readers meet section cursors
    huge = data["huge_conversation"]
    status, view = _get(f"{service}/v1/conversations/{huge}")
    sections = view["focal"]["replies"]["sections"]
    assert sections["low_quality"]["count"] >= 3 and sections["offensive"]["count"] >= 3
    # a second export labels nothing more (topped up, not added)
    again = subprocess.run([str(BIN / "arbor"), "seed", "--preset", "demo", "--export",
                            str(path.with_name("again.json")), "--export-labels", "3",
                            f"--setting=database_url={loadtest_dsn}"],
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["export"]["labelled"] == 0


def test_a_short_run_passes_the_gate_with_two_processes(exported, service, tmp_path):
    code, out, verdict = _locust(service, exported[0], tmp_path, "--processes", "2")
    assert code == 0, out[-4000:]
    assert "SLO gate: PASS (exit 0)" in out and verdict["exit_code"] == 0
    # the mix ran: every user class's routes were hit, and named by template (the rarer
    # tasks, quotes and ancestors pages, may not come up in six seconds)
    stats = (tmp_path / "run_stats.csv").read_text()
    for route in ("/v1/conversations/{post_id}", "/v1/conversations/{post_id}/replies",
                  "/v1/me/follows/{account_id}", "/v1/posts"):
        assert f",{route}," in stats, route
    assert not any(ch.isdigit() for line in stats.splitlines()[1:]
                   for ch in line.split(",")[1].replace("v1", "")), "an id in a name"


def test_an_absurd_p99_limit_misses_and_names_it(exported, service, tmp_path):
    # --tags read: the writers' class is left without tasks and dropped (not an error)
    code, out, verdict = _locust(service, exported[0], tmp_path, "--slo-p99-ms", "0.001",
                                 "--slo-min-requests", "5", "--tags", "read",
                                 users=4, run_time="4s")
    assert code == 1, out[-4000:]
    assert "SLO gate: MISSED (exit 1)" in out
    assert any(m.startswith("p99 of GET /v1/conversations/{post_id} is ")
               and m.endswith("> 0.001 ms") for m in verdict["missed"]), verdict
    stats = (tmp_path / "run_stats.csv").read_text()
    assert ",/v1/conversations/{post_id}," in stats and ",/v1/posts," not in stats
    assert '"Writer"' not in out


def test_a_bad_slo_file_is_a_run_error_before_the_run(exported, service, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\np99 = 5\n')
    code, out, verdict = _locust(service, exported[0], tmp_path, "--slo-file", str(bad))
    assert code == 2 and "unknown key(s) p99" in out and verdict == {}


def test_an_absurdly_low_rate_limit_misses_the_error_ratio(exported, service, tmp_path):
    # this host is exempt by default: take the exemption away and allow 5 reads per 5 min
    _patch_settings(service, {"rate_limit_exempt": "", "rate_limit_read": "5/5minutes"})
    try:
        code, out, verdict = _locust(service, exported[0], tmp_path, users=4, run_time="4s")
    finally:
        _patch_settings(service, {"rate_limit_exempt": None, "rate_limit_read": None})
    assert code == 1, out[-4000:]
    assert any(m.startswith("error ratio is ") and "incl. shed/limited" in m
               for m in verdict["missed"]), verdict
    assert "limited: 429 rate_limited" in out


def _serving(marker: str) -> list[int]:
    """Pids of `arbor serve` processes with `marker` in an argument."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and any(marker.encode() in arg for arg in cmdline):
            found.append(int(pid))
    return found


def test_make_loadtest_runner_passes_the_gate_code_through_and_stops_the_service(
        loadtest_dsn, exported, tmp_path):
    # loadtest/run.py, what `make loadtest` runs, on the module's database (seeded already)
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--preset", "demo", "--database-url",
         loadtest_dsn, "--dir", str(tmp_path), "--users", "4", "--run-time", "4s",
         "--setting", "admission_enabled=false",
         "--", "--slo-p99-ms", "0.001", "--slo-min-requests", "5"],
        env=_env(), capture_output=True, text=True, timeout=90, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]
    assert "SLO gate: MISSED (exit 1)" in out
    assert done.stdout.splitlines()[-1].endswith("exit 1")   # "loadtest: reports in ..."
    verdict = json.loads((tmp_path / "slo.json").read_text())
    assert any(m.startswith("p99 of ") for m in verdict["missed"])
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "run_stats.csv").exists() and (tmp_path / "data.json").exists()
    # (its data_dir setting names --dir; the module's own service runs on beside it)
    assert _serving(str(tmp_path)) == []
