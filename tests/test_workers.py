"""`arbor serve --workers 2`: real worker processes on one port (SO_REUSEPORT) under the
supervisor, against the session's PostgreSQL (reached through a fault proxy, to hold requests
in flight). Each aiohttp session below has one keep-alive connection, so it talks to one
worker, whose pid /healthz names."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from service.cli.workers import _migrate_and_seed, connections_needed

from .helpers import iter_nodes

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def workers(proxied_dsn):
    port = free_port()
    settings = {"database_url": proxied_dsn, "port": port, "log_level": "WARNING",
                "admin_token": "test-admin-token", "admission_enabled": "false",
                "render_cache_ttl_s": 300, "viewer_cache_ttl_s": 300,
                "worker_shutdown_timeout_s": 10, "request_budget_ms": 20000,
                "db_statement_timeout_ms": 20000, "db_connect_timeout_s": 20,
                "db_acquire_timeout_s": 20}
    cmd = [sys.executable, "-m", "service.cli", "serve", "--workers", "2"]
    for name, value in settings.items():
        cmd += ["--setting", f"{name}={value}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBOR_")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(600):
                try:
                    async with s.get(base + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, "the supervisor exited"
                await asyncio.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def one_worker_each(base: str, n: int = 2, seconds: float = 20.0):
    """n sessions, each holding one connection to a different worker: [(session, pid)].
    Tries new connections for up to `seconds` (a worker may still be starting)."""
    found: dict[int, aiohttp.ClientSession] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        try:
            async with s.get(base + "/healthz") as r:
                pid = (await r.json())["pid"]
        except aiohttp.ClientError:
            await s.close()
            await asyncio.sleep(0.05)
            continue
        if pid in found:
            await s.close()
            await asyncio.sleep(0.01)
        else:
            found[pid] = s
        if len(found) == n:
            return [(s, pid) for pid, s in found.items()]
    for s in found.values():
        await s.close()
    raise AssertionError(f"only {len(found)} worker(s) answered within {seconds} s")


async def test_two_workers_share_the_port_the_secret_and_each_others_writes(workers, world):
    base, _ = workers
    (a, pid_a), (b, pid_b) = await one_worker_each(base)
    try:
        assert pid_a != pid_b
        author = await world.account()
        auth = {"Authorization": f"Bearer {await world.token(author)}"}
        root = await world.post(author, "root")
        await world.fan(author, root, 12)
        # a cursor signed by worker a verifies in worker b (one secret)
        async with a.get(f"{base}/v1/conversations/{root}?branching=5") as r:
            body = await r.json()
        cursor = body["focal"]["replies"]["more"]["cursor"]
        async with b.get(f"{base}/v1/conversations/{root}/replies",
                         params={"cursor": cursor}) as r:
            assert r.status == 200, await r.text()
        for round_ in range(5):
            async with b.get(f"{base}/v1/conversations/{root}?branching=100") as r:
                before = await r.json()
            async with a.post(f"{base}/v1/posts", headers=auth,
                              json={"text": f"via a {round_}", "in_reply_to_id": str(root)}) as r:
                assert r.status == 201, await r.text()
                new_id = (await r.json())["id"]
            async with b.get(f"{base}/v1/conversations/{root}?branching=100") as r:
                after = await r.json()
            assert new_id in {n["id"] for n in iter_nodes(after["focal"]["replies"])}, round_
            assert (after["focal"]["counts"]["replies"]
                    == before["focal"]["counts"]["replies"] + 1)
            async with b.get(f"{base}/readyz") as r:
                assert "cache_notifications" not in (await r.json())["degraded"]
    finally:
        await a.close()
        await b.close()


async def test_sigterm_finishes_requests_in_flight_then_stops(workers, world, fault_proxy):
    base, proc = workers
    author = await world.account()
    root = await world.post(author, "root")
    async with aiohttp.ClientSession() as s:
        fault_proxy.latency = 0.2  # every database round trip now takes 0.4 s
        in_flight = [asyncio.create_task(s.get(f"{base}/v1/conversations/{root}?depth={d}"))
                     for d in range(1, 5)]
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*in_flight)
        assert [r.status for r in responses] == [200] * 4
        fault_proxy.latency = 0
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        assert code == 0
        with pytest.raises(aiohttp.ClientConnectionError):
            async with s.get(base + "/healthz"):
                pass


async def test_a_killed_worker_is_replaced(workers):
    base, _ = workers
    (a, pid_a), (b, pid_b) = await one_worker_each(base)
    await a.close()
    await b.close()
    os.kill(pid_a, signal.SIGKILL)
    # the supervisor restarts it (after 1 s): two workers answer again, the new one not pid_a
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        try:
            sessions = await one_worker_each(base, seconds=5)
        except AssertionError:  # still restarting
            continue
        pids = {pid for _, pid in sessions}
        for s, _ in sessions:
            await s.close()
        if pid_b in pids and pid_a not in pids:
            return
    raise AssertionError("the killed worker was not replaced")


def test_connections_needed_counts_each_workers_pool_and_listener():
    assert connections_needed(1, 10) == 21
    # one worker per CPU on a 32-CPU machine: more than the embedded server's default 200
    assert connections_needed(32, 10) == 362 > 200


async def test_the_supervisor_warns_when_the_database_allows_fewer_connections(pg_dsn, caplog):
    caplog.set_level("WARNING", logger="arbor.workers")
    await _migrate_and_seed(pg_dsn, False, 0, needed=100_000)
    assert any("max_connections" in r.getMessage() for r in caplog.records)
    caplog.clear()
    await _migrate_and_seed(pg_dsn, False, 0, needed=5)
    assert not any("max_connections" in r.getMessage() for r in caplog.records)


async def test_sighup_replaces_every_worker_without_failing_a_request(workers):
    """A rolling restart under a steady stream of requests on new connections (each may land
    on any worker, including one that is stopping): every request answered 200."""
    base, proc = workers
    before = {pid for s, pid in await _sessions_closed(await one_worker_each(base))}
    outcomes: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)) as s:
            while not stop.is_set():
                try:
                    async with s.get(base + "/healthz") as r:
                        outcomes.append(str(r.status))
                except aiohttp.ClientError as e:
                    outcomes.append(type(e).__name__)
                await asyncio.sleep(0.005)
    clients = [asyncio.create_task(client()) for _ in range(3)]
    await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGHUP)
    loop = asyncio.get_running_loop()
    deadline, now = loop.time() + 90, set()
    while loop.time() < deadline:
        await asyncio.sleep(0.5)
        try:
            now = {pid for s, pid in await _sessions_closed(await one_worker_each(base,
                                                                                   seconds=3))}
        except AssertionError:
            continue
        if not now & before:
            break
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    assert now and not now & before, (before, now)   # both workers replaced
    assert proc.poll() is None
    failures = [o for o in outcomes if o != "200"]
    assert len(outcomes) > 100 and failures == [], (len(outcomes), failures[:10])


async def _sessions_closed(sessions):
    for s, _ in sessions:
        await s.close()
    return sessions
