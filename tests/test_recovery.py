"""The service through a database outage: fail fast with 503 `database_unavailable` (never a
500, never a hang), then serve fresh data again on its own, without a restart.

(a) through tests/faultproxy.py in front of the session's PostgreSQL: reset, refuse, black hole;
(b) a real PostgreSQL of its own, stopped with `pg_ctl stop -m immediate` and started again.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from service.app import create_app
from storage.db import Database
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres

from .builders import World
from .conftest import PROXIED_APP_SETTINGS
from .helpers import iter_nodes

RECOVERY_BOUND_S = 10.0
# Every request is bounded by the client; a request that reaches this is a hang.
CLIENT_TIMEOUT_S = 8.0


async def _get(client, path: str) -> tuple[int, dict | None, dict, float]:
    """(status, JSON body or None, headers, seconds) of one bounded GET."""
    started = time.monotonic()
    resp = await client.get(path, timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S))
    try:
        body = await resp.json(content_type=None)
    except ValueError:
        body = None
    return resp.status, body, dict(resp.headers), time.monotonic() - started


def _assert_database_unavailable(status: int, body: dict | None, headers: dict) -> None:
    assert status == 503, (status, body)
    assert body["error"]["code"] == "database_unavailable", body
    assert int(headers["Retry-After"]) >= 1


def _reply_ids(view: dict) -> set[str]:
    return {node["id"] for node in iter_nodes(view["focal"]["replies"])}


async def _conversation(world: World, replies: int = 3) -> tuple[int, int]:
    """(author, root) of a small conversation."""
    author = await world.account()
    root = await world.post(author, "outage drill root")
    for i in range(replies):
        await world.post(author, f"reply {i}", reply_to=root)
    return author, root


async def _await_fresh(client, world: World, author: int, root: int,
                       started: float | None = None) -> float:
    """Write a reply now (directly, not through the app), then poll the app until it renders
    the conversation with that reply; returns the seconds from `started` (default: now).
    Fails past RECOVERY_BOUND_S, or on any status but 200 and 503."""
    started = time.monotonic() if started is None else started
    new = str(await world.post(author, "written after the database came back", reply_to=root))
    statuses = []
    while True:
        status, body, _, _ = await _get(client, f"/v1/conversations/{root}")
        statuses.append(status)
        assert status in (200, 503), (status, body)
        if status == 200 and new in _reply_ids(body):
            return time.monotonic() - started
        assert time.monotonic() - started < RECOVERY_BOUND_S, (
            f"not serving fresh data {RECOVERY_BOUND_S:g} s after the database came back; "
            f"statuses {statuses[-20:]}")
        await asyncio.sleep(0.1)


# -- (a) through the fault proxy -------------------------------------------------------

async def test_database_down_is_a_fast_503_and_the_service_recovers(proxied_app_client,
                                                                    fault_proxy, world):
    client = proxied_app_client
    author, hot = await _conversation(world)
    _, cold = await _conversation(world)
    status, _, _, _ = await _get(client, f"/v1/conversations/{hot}")
    assert status == 200

    # The database "goes down": open connections reset, new ones refused.
    fault_proxy.refuse()
    assert fault_proxy.reset_all() >= 1
    for _ in range(5):
        status, body, headers, seconds = await _get(client, f"/v1/conversations/{cold}")
        _assert_database_unavailable(status, body, headers)
        assert seconds < 1.0, f"a refused database must fail fast, took {seconds:.2f} s"
    # A conversation rendered before may be served from a stale copy, or be a 503: never a 500.
    status, body, _, _ = await _get(client, f"/v1/conversations/{hot}")
    assert status in (200, 503), (status, body)
    status, body, _, _ = await _get(client, "/readyz")
    assert status == 503 and "database" in body["degraded"], body

    fault_proxy.heal()
    await _await_fresh(client, world, author, hot)
    status, _, _, _ = await _get(client, f"/v1/conversations/{cold}")
    assert status == 200
    status, body, _, _ = await _get(client, "/readyz")
    assert status == 200, body


async def test_readyz_recovers_without_other_traffic(aiohttp_client, settings, fault_proxy,
                                                     proxied_dsn, world):
    """A load balancer that took the instance out of rotation on /readyz sends it nothing but
    /readyz: that check must probe the open breaker itself, or it never closes."""
    app = create_app(settings.replace(database_url=proxied_dsn, breaker_backoff_ms=200,
                                      breaker_max_backoff_ms=1000, **PROXIED_APP_SETTINGS))
    client = await aiohttp_client(app)
    _, cold = await _conversation(world)
    fault_proxy.refuse()
    fault_proxy.reset_all()
    for _ in range(6):  # breaker_failure_threshold (5) failures open the breaker
        status, body, headers, _ = await _get(client, f"/v1/conversations/{cold}")
        _assert_database_unavailable(status, body, headers)
    status, body, _, _ = await _get(client, "/readyz")
    assert status == 503 and body["details"]["breakers"]["database"]["state"] != "closed"
    fault_proxy.heal()
    healed = time.monotonic()
    while True:
        status, body, _, _ = await _get(client, "/readyz")
        if status == 200:
            break
        assert time.monotonic() - healed < 5.0, f"/readyz still {status} 5 s after: {body}"
        await asyncio.sleep(0.1)
    assert body["details"]["breakers"]["database"]["state"] == "closed"
    # within the breaker's longest backoff (1 s here), plus the pool's reconnect
    assert time.monotonic() - healed < 1.0 + 1.5
    status, _, _, _ = await _get(client, f"/v1/conversations/{cold}")
    assert status == 200
    fault_proxy.heal()
    await fault_proxy.wait_listening()


async def test_reset_under_load_is_never_a_500(proxied_app_client, fault_proxy, world):
    client = proxied_app_client
    author, root = await _conversation(world)
    assert (await _get(client, f"/v1/conversations/{root}"))[0] == 200
    fault_proxy.latency = 0.05  # keep requests in flight while the connections are reset
    in_flight = [asyncio.ensure_future(_get(client, f"/v1/conversations/{root}?depth={d}"))
                 for d in range(1, 7)]
    await asyncio.sleep(0.08)
    fault_proxy.reset_all()
    results = await asyncio.gather(*in_flight)
    for status, body, headers, _ in results:
        assert status in (200, 503), (status, body)
        if status == 503:
            _assert_database_unavailable(status, body, headers)
    fault_proxy.heal()
    await _await_fresh(client, world, author, root)


async def test_black_holed_database_costs_a_bounded_wait_then_recovers(proxied_app_client,
                                                                       fault_proxy, world):
    client = proxied_app_client
    author, root = await _conversation(world)
    _, cold = await _conversation(world)
    assert (await _get(client, f"/v1/conversations/{root}"))[0] == 200

    fault_proxy.blackhole()
    # statement (db_command_timeout_s=1) + its cancel and release (db_acquire_timeout_s=1), or a
    # new connection (db_connect_timeout_s=0.5): a few seconds at most, then a 503.
    bound = (PROXIED_APP_SETTINGS["db_command_timeout_s"]
             + PROXIED_APP_SETTINGS["db_acquire_timeout_s"] + 1.0)
    for _ in range(3):
        status, body, headers, seconds = await _get(client, f"/v1/conversations/{cold}")
        _assert_database_unavailable(status, body, headers)
        assert seconds < bound, f"a black-holed request took {seconds:.2f} s"
    # concurrent requests are each bounded too (none waits behind another's hung connection)
    results = await asyncio.gather(*(_get(client, f"/v1/conversations/{cold}?depth={d}")
                                     for d in range(1, 7)))
    for status, body, headers, seconds in results:
        _assert_database_unavailable(status, body, headers)
        assert seconds < 2 * bound, f"a black-holed request took {seconds:.2f} s"

    fault_proxy.heal()
    await _await_fresh(client, world, author, root)


# -- (b) a real PostgreSQL restart -----------------------------------------------------

@pytest.fixture
async def own_postgres(tmp_path):
    """A PostgreSQL of this test's own (the session's must not go down). Fast and unsafe,
    except that commits are synchronous: `pg_ctl stop -m immediate` kills the WAL writer,
    and with `synchronous_commit=off` the last ~0.6 s of acknowledged commits (this test's
    conversation) would be lost. fsync off is harmless here: the OS does not crash."""
    server = EmbeddedPostgres(tmp_path / "data", {**FAST_UNSAFE_OPTIONS,
                                                  "synchronous_commit": "on"})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, server.start)
    yield server
    await loop.run_in_executor(None, server.stop, "immediate")


async def test_real_database_restart(aiohttp_client, settings, own_postgres):
    server = own_postgres
    loop = asyncio.get_running_loop()
    dsn = server.dsn()
    app = create_app(settings.replace(database_url=dsn, **PROXIED_APP_SETTINGS))
    client = await aiohttp_client(app)  # applies the migrations
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        world = World(db)
        author, hot = await _conversation(world)
        _, cold = await _conversation(world)
        status, _, _, _ = await _get(client, f"/v1/conversations/{hot}")
        assert status == 200

        # Requests keep arriving through the stop and the start: each one a 200 or a 503.
        statuses: list[int] = []
        stop_load = asyncio.Event()

        async def load():
            while not stop_load.is_set():
                status, body, _, _ = await _get(client, f"/v1/conversations/{hot}?depth=2")
                assert status in (200, 503), (status, body)
                statuses.append(status)
                await asyncio.sleep(0.02)
        load_task = asyncio.ensure_future(load())

        await loop.run_in_executor(None, server.stop, "immediate")
        assert not server.is_running()
        for _ in range(5):
            status, body, headers, seconds = await _get(client, f"/v1/conversations/{cold}")
            _assert_database_unavailable(status, body, headers)
            assert seconds < 1.0, f"a stopped database must fail fast, took {seconds:.2f} s"
        status, body, _, _ = await _get(client, f"/v1/conversations/{hot}")
        assert status in (200, 503), (status, body)
        status, _, _, _ = await _get(client, "/readyz")
        assert status == 503

        await loop.run_in_executor(None, server.start)
        started = time.monotonic()
        # the test's own pool (broken connections, like the app's) recovers too: it writes
        await _await_fresh(client, world, author, hot, started)
        status, _, _, _ = await _get(client, f"/v1/conversations/{cold}")
        assert status == 200
        status, _, _, _ = await _get(client, "/readyz")
        assert status == 200
        stop_load.set()
        await load_task  # re-raises a status that was neither 200 nor 503
        assert statuses and set(statuses) <= {200, 503}
    finally:
        stop_load.set()
        await db.close()
