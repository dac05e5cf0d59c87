"""Several processes, one budget: rate limits kept in a real Redis server shared by two apps;
and what happens when it goes down (fail open to per-process limits, said in /readyz, the
metrics and the log) and comes back."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from service.app import create_app

from .redis_server import RedisServer


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def shared(settings, url: str, **changes):
    return settings.replace(trusted_proxies="127.0.0.1", rate_limit_exempt="",
                            rate_limit_storage_url=url, **changes)


@pytest.fixture(scope="module")
async def post(world):
    return await world.post(await world.account(), "root")


async def _status(client, path: str, address: str) -> int:
    resp = await client.get(path, headers={"X-Forwarded-For": address})
    await resp.read()
    return resp.status


async def test_two_apps_sharing_redis_share_one_budget(aiohttp_client, settings, redis, post):
    s = shared(settings, redis.url, rate_limit_read="20/minute", rate_limit_cost_render=1)
    a = await aiohttp_client(create_app(s))
    b = await aiohttp_client(create_app(s))
    path = f"/v1/conversations/{post}"
    got = []
    for i in range(24):  # alternate between the two processes
        got.append(await _status(a if i % 2 == 0 else b, path, "198.51.100.60"))
    assert got[:20] == [200] * 20
    assert got[20:] == [429] * 4
    # alone, each would have let 20 through: in memory they are two budgets
    m1 = await aiohttp_client(create_app(shared(settings, "", rate_limit_read="20/minute",
                                                rate_limit_cost_render=1)))
    m2 = await aiohttp_client(create_app(shared(settings, "", rate_limit_read="20/minute",
                                                rate_limit_cost_render=1)))
    got = [await _status(m1 if i % 2 == 0 else m2, path, "198.51.100.60") for i in range(24)]
    assert got == [200] * 24
    # the 404 budget is shared too
    s = shared(settings, redis.url, rate_limit_not_found="4/minute")
    a, b = await aiohttp_client(create_app(s)), await aiohttp_client(create_app(s))
    got = [await _status(a if i % 2 else b, f"/v1/conversations/{930_000_000_000 + i}",
                         "198.51.100.61") for i in range(7)]
    # each process lets at most one 404 past the shared count before it knows (the 404 is
    # charged after the answer): 4 from the budget, then both refuse
    assert got.count(404) <= 5 and got[-2:] == [429, 429]
    readyz = await (await a.get("/readyz")).json()
    assert readyz["details"]["rate_limits"]["storage"] == "redis"
    assert readyz["details"]["rate_limits"]["shared_up"] is True
    assert "rate_limit_store" not in readyz["degraded"]


async def test_redis_down_fails_open_to_per_process_limits_and_recovers(
        aiohttp_client, settings, redis, post, caplog):
    s = shared(settings, redis.url, rate_limit_read="6/minute", rate_limit_cost_render=1)
    client = await aiohttp_client(create_app(s))
    path = f"/v1/conversations/{post}"
    assert await _status(client, path, "198.51.100.62") == 200
    redis.stop()
    caplog.set_level(logging.INFO, logger="arbor.rate_limits")
    started = time.monotonic()
    got = [await _status(client, path, "198.51.100.63") for _ in range(8)]
    assert time.monotonic() - started < 5
    # served, and limited in this process: 6 fit, then 429s (not 500s, not unlimited)
    assert got == [200] * 6 + [429] * 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "rate limit store redis://127.0.0.1" in r.getMessage()]
    assert len(warnings) == 1 and "limiting in this process only" in warnings[0].getMessage()
    assert "password" not in warnings[0].getMessage()
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert "rate_limit_store" in body["degraded"]
    assert body["details"]["rate_limits"]["shared_up"] is False
    text = await (await client.get("/metrics")).text()
    assert "arbor_rate_limit_store_up 0.0" in text
    assert "arbor_rate_limit_store_errors_total" in text
    # back on the same port: shared again within the breaker's backoff (0.5-5 s)
    redis.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await _status(client, path, "198.51.100.64")
        body = await (await client.get("/readyz")).json()
        if "rate_limit_store" not in body["degraded"]:
            break
        await asyncio.sleep(0.2)
    assert "rate_limit_store" not in body["degraded"]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    text = await (await client.get("/metrics")).text()
    assert "arbor_rate_limit_store_up 1.0" in text


async def test_a_redis_that_stops_answering_costs_a_request_its_timeout_not_a_hang(
        aiohttp_client, settings, redis, post):
    s = shared(settings, redis.url, rate_limit_storage_timeout_ms=100)
    client = await aiohttp_client(create_app(s))
    path = f"/v1/conversations/{post}"
    assert await _status(client, path, "198.51.100.65") == 200
    redis.pause()
    try:
        started = time.monotonic()
        assert await _status(client, path, "198.51.100.65") == 200
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(5):  # the breaker is open: no wait at all
            assert await _status(client, path, "198.51.100.65") == 200
        rest = time.monotonic() - started
    finally:
        redis.resume()
    assert first < 1.0, first      # two tries of 100 ms, not redis-py's default retries
    assert rest < 0.5, rest
