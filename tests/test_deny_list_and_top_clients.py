"""The deny list (addresses, CIDR ranges, accounts; live, persisted) and the top-clients
report, through the admin API and the HTTP API against the real database."""
from __future__ import annotations

import pytest

from service.app import create_app
from service.http.keys import RATE_LIMITS

ADMIN = {"Authorization": "Bearer test-admin-token"}


def proxied(settings, **changes):
    return settings.replace(trusted_proxies="127.0.0.1", rate_limit_exempt="", **changes)


def who(address: str, token: str | None = None) -> dict:
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@pytest.fixture(scope="module")
async def post(world):
    return await world.post(await world.account(), "root")


async def _deny(client, **body) -> dict:
    resp = await client.post("/v1/admin/deny_list", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _undeny(client, entry: dict) -> None:
    assert (await client.delete(f"/v1/admin/deny_list/{entry['id']}",
                                headers=ADMIN)).status == 204


async def test_denied_address_and_range_get_a_cheap_403_live(aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(proxied(settings)))
    path = f"/v1/conversations/{post}"
    assert (await client.get(path, headers=who("192.0.2.10"))).status == 200
    one = await _deny(client, network="192.0.2.10", note="scraper")
    assert one["network"] == "192.0.2.10/32" and one["note"] == "scraper"
    resp = await client.get(path, headers=who("192.0.2.10"))
    assert resp.status == 403
    assert await resp.json() == {"error": {"code": "denied",
                                           "message": "requests from this client are refused"}}
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Server-Timing" not in resp.headers  # answered before anything else ran
    assert (await client.get(path, headers=who("192.0.2.11"))).status == 200
    rng = await _deny(client, network="192.0.2.0/24")
    assert (await client.get(path, headers=who("192.0.2.11"))).status == 403
    assert (await client.post("/v1/posts", json={"text": "x"},
                              headers=who("192.0.2.99"))).status == 403
    v6 = await _deny(client, network="2001:db8:bad::/48")
    assert (await client.get(path, headers=who("2001:db8:bad:1::5"))).status == 403
    assert (await client.get(path, headers=who("2001:db8:beef::5"))).status == 200
    # ops endpoints still answer (probes, scrapes); the admin token passes
    assert (await client.get("/healthz", headers=who("192.0.2.11"))).status == 200
    assert (await client.get("/v1/admin/deny_list",
                              headers={**ADMIN, **who("192.0.2.11")})).status == 200
    for entry in (one, rng, v6):
        await _undeny(client, entry)
    assert (await client.get(path, headers=who("192.0.2.11"))).status == 200
    # denied even with rate limits off
    off = await aiohttp_client(create_app(proxied(settings, rate_limit_enabled=False)))
    entry = await _deny(off, network="192.0.2.77")
    assert (await off.get(path, headers=who("192.0.2.77"))).status == 403
    await _undeny(off, entry)


async def test_denied_account_known_or_not_yet_known(aiohttp_client, settings, world, post):
    client = await aiohttp_client(create_app(proxied(settings)))
    account = await world.account()
    token = await world.token(account)
    path = f"/v1/conversations/{post}"
    entry = await _deny(client, account_id=str(account))
    # a token this process never saw: refused once resolved
    resp = await client.get(path, headers=who("192.0.2.20", token))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "denied"
    write = await client.post("/v1/posts", json={"text": "nope"}, headers=who("192.0.2.20", token))
    assert write.status == 403
    # the same account's token from any address
    assert (await client.get(path, headers=who("192.0.2.21", token))).status == 403
    # anonymous from the same address is fine
    assert (await client.get(path, headers=who("192.0.2.20"))).status == 200
    await _undeny(client, entry)
    assert (await client.get(path, headers=who("192.0.2.20", token))).status == 200
    # and a known token is refused before the handler (the client key is the account's)
    entry = await _deny(client, account_id=str(account))
    resp = await client.get(path, headers=who("192.0.2.20", token))
    assert resp.status == 403 and "Server-Timing" not in resp.headers
    await _undeny(client, entry)


async def test_deny_list_persists_and_reaches_other_processes(aiohttp_client, settings, post):
    """Two apps on one database: the one that adds applies at once, the other within
    rate_limit_reload_s; a new app (a restart) starts with it."""
    a = await aiohttp_client(create_app(proxied(settings)))
    b = await aiohttp_client(create_app(proxied(settings, rate_limit_reload_s=0.2)))
    path = f"/v1/conversations/{post}"
    entry = await _deny(a, network="192.0.2.30")
    assert (await a.get(path, headers=who("192.0.2.30"))).status == 403
    import asyncio
    await asyncio.sleep(0.6)
    assert (await b.get(path, headers=who("192.0.2.30"))).status == 403
    c = await aiohttp_client(create_app(proxied(settings)))
    assert (await c.get(path, headers=who("192.0.2.30"))).status == 403
    listed = await (await c.get("/v1/admin/deny_list", headers=ADMIN)).json()
    assert entry["id"] in [e["id"] for e in listed["items"]]
    await _undeny(c, entry)


async def test_deny_list_validation(client):
    for body in ({}, {"network": "nonsense"}, {"network": "10.0.0.0/8", "account_id": "1"},
                 {"account_id": 5}, {"account_id": "x1"}, {"network": 1}, {"other": 1},
                 {"account_id": "7", "network": None}, {"network": None}):
        resp = await client.post("/v1/admin/deny_list", json=body, headers=ADMIN)
        assert resp.status == 400, body
    entry = await _deny(client, network="198.18.0.0/15")
    resp = await client.post("/v1/admin/deny_list", json={"network": "198.18.0.0/15"},
                             headers=ADMIN)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "already_denied"
    await _undeny(client, entry)
    assert (await client.delete(f"/v1/admin/deny_list/{entry['id']}",
                                headers=ADMIN)).status == 404
    assert (await client.get("/v1/admin/deny_list")).status == 401


async def test_top_clients_by_requests_404s_and_429s(aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(proxied(settings, rate_limit_not_found="3/minute",
                                                     top_clients_size=10)))
    for _ in range(40):
        await client.get(f"/v1/conversations/{post}", headers=who("192.0.2.40"))
    for i in range(8):  # 3 404s, then 429s
        await client.get(f"/v1/conversations/{920_000_000_000 + i}", headers=who("192.0.2.41"))
    for i in range(3):
        await client.get(f"/v1/conversations/{post}", headers=who(f"192.0.2.{50 + i}"))
    resp = await client.get("/v1/admin/top_clients?minutes=2&limit=3", headers=ADMIN)
    assert resp.status == 200
    top = await resp.json()
    assert top["by_requests"][0] == {"client": "ip:192.0.2.40", "requests": 40,
                                     "not_found": 0, "limited": 0}
    assert top["by_requests"][1] == {"client": "ip:192.0.2.41", "requests": 8,
                                     "not_found": 3, "limited": 5}
    assert len(top["by_requests"]) == 3
    assert top["by_not_found"][0]["client"] == "ip:192.0.2.41"
    assert top["by_limited"] == [{"client": "ip:192.0.2.41", "limited": 5, "requests": 8,
                                  "not_found": 3}]
    assert top["size"] == 10 and top["minutes"] == 2
    # bounded: 200 distinct clients more, the table never holds more than `size` per measure,
    # and a client with more than events / (size + 1) of them (here 40 > 251 / 11) stays
    for i in range(200):
        await client.get("/v1/conversations/1", headers=who(f"198.18.{i // 250}.{i % 250}"))
    state = client.server.app[RATE_LIMITS]
    for _, bucket in state.top._buckets:
        assert all(len(summary.counts) <= 10 for summary in bucket.values())
    top = await (await client.get("/v1/admin/top_clients", headers=ADMIN)).json()
    assert top["by_requests"][0]["client"] == "ip:192.0.2.40"
    assert 40 - top["max_undercount"]["requests"] <= top["by_requests"][0]["requests"] <= 40
    for bad in ("minutes=0", "minutes=11", "limit=0", "other=1"):
        assert (await client.get(f"/v1/admin/top_clients?{bad}", headers=ADMIN)).status == 400
    assert (await client.get("/v1/admin/top_clients")).status == 401
