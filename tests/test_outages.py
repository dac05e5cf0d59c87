"""Outages through the fault proxy: stale serving, fast 503s with nothing cached, the
database breaker opening and closing, partial trees when the database is slow."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from service.app import create_app
from service.http.keys import READS

from .conftest import PROXIED_APP_SETTINGS
from .helpers import cursors_in, iter_nodes

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def outage(aiohttp_client, settings, fault_proxy, proxied_dsn):
    async def make(**overrides):
        app = create_app(settings.replace(database_url=proxied_dsn,
                                          **{**PROXIED_APP_SETTINGS, **overrides}))
        return await aiohttp_client(app, timeout=TIMEOUT)
    yield make
    fault_proxy.heal()
    await fault_proxy.wait_listening()


async def small_tree(world, n=3):
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, n)
    return root


async def get(client, path):
    started = time.perf_counter()
    resp = await client.get(path)
    body = await resp.read()
    return resp, body, (time.perf_counter() - started) * 1000


async def open_breaker(client, fault_proxy, world):
    """Black-hole the database and fail uncached reads until the breaker opens."""
    fault_proxy.blackhole()
    breaker = client.server.app[READS].database
    for _ in range(breaker.failure_threshold):
        resp, _, _ = await get(client, f"/v1/conversations/{await _fresh_id(world)}")
        assert resp.status == 503
    assert breaker.state == "open"


_ids: list[int] = []


async def _fresh_id(world) -> int:
    if not _ids:
        a = await world.account()
        _ids.extend([await world.post(a, f"never rendered {i}") for i in range(40)])
    return _ids.pop()


async def test_cached_conversation_is_served_stale_when_the_database_drops(outage, fault_proxy,
                                                                           world):
    client = await outage()
    root = await small_tree(world)
    resp, fresh, _ = await get(client, f"/v1/conversations/{root}")
    assert resp.status == 200
    fault_proxy.blackhole()
    resp, body, ms = await get(client, f"/v1/conversations/{root}")
    assert resp.status == 200 and resp.headers["Arbor-Degraded"] == "stale"
    data = await resp.json()
    assert data["degraded"] == ["stale"]
    assert data["focal"] == (await _json(fresh))["focal"]
    assert ms < 2500   # bounded by the request budget, not the black hole


async def _json(raw: bytes):
    import orjson
    return orjson.loads(raw)


async def test_nothing_cached_is_a_fast_503_once_the_breaker_is_open(outage, fault_proxy, world):
    client = await outage()
    await open_breaker(client, fault_proxy, world)
    for _ in range(10):
        resp, body, ms = await get(client, f"/v1/conversations/{await _fresh_id(world)}")
        assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
        assert (await _json(body))["error"]["code"] == "database_unavailable"
        assert ms < 50, f"503 took {ms:.1f} ms"


async def test_breaker_closes_after_the_database_returns(outage, fault_proxy, world):
    client = await outage(breaker_backoff_ms=100, breaker_max_backoff_ms=200)
    root = await small_tree(world)
    await open_breaker(client, fault_proxy, world)
    ready = await client.get("/readyz")
    assert ready.status == 503 and "database" in (await ready.json())["degraded"]
    fault_proxy.heal()
    deadline = time.monotonic() + 10
    while True:
        resp, _, _ = await get(client, f"/v1/conversations/{root}")
        if resp.status == 200:
            break
        assert time.monotonic() < deadline, "did not recover within 10 s"
        await asyncio.sleep(0.1)
    assert client.server.app[READS].database.state == "closed"
    assert (await client.get("/readyz")).status == 200


async def test_slow_database_gives_a_partial_tree_with_cursors(outage, fault_proxy, world):
    # one connection, warmed first: the latency then costs round trips, not connection set-up
    client = await outage(request_budget_ms=1500, db_statement_timeout_ms=5000,
                          db_command_timeout_s=5.0, db_pool_min=1, db_pool_max=1)
    a = await world.account()
    chain = await world.chain(a, 25)
    resp, _, _ = await get(client, f"/v1/conversations/{chain[0]}?depth=20&branching=1")
    assert resp.status == 200 and (await resp.json())["partial"] is False
    fault_proxy.latency = 0.05            # per forwarded chunk: a level costs ~0.1 s
    resp, body, ms = await get(client, f"/v1/conversations/{chain[0]}?depth=20&branching=1")
    assert resp.status == 200, body
    data = await _json(body)
    assert data["partial"] is True
    shown = [n["id"] for n in iter_nodes(data["focal"]["replies"])]
    assert 0 < len(shown) < 20
    assert shown == [str(i) for i in chain[1:len(shown) + 1]]
    fault_proxy.latency = 0.0
    [cursor] = list(cursors_in(data["focal"]["replies"]))  # at the cut, and only there
    page = await (await client.get(f"/v1/conversations/{chain[0]}/replies",
                                   params={"cursor": cursor})).json()
    assert [n["id"] for n in iter_nodes(page)][0] == str(chain[len(shown) + 1])
