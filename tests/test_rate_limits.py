"""Per-client rate limits through the HTTP API, against the real database: 429 and its headers,
costs by route and outcome, the 404 budget, overrides, trusted proxies, exemptions, live
settings (service/resilience/rate_limit_rules.py)."""
from __future__ import annotations

import asyncio
import re

import pytest

from service.app import create_app

ADMIN = {"Authorization": "Bearer test-admin-token"}


def limited(settings, **changes):
    """Settings with rate limits on for the test client's address (loopback is exempt by
    default) and the peer trusted as a proxy, so each test names its clients with
    X-Forwarded-For."""
    return settings.replace(rate_limit_exempt="", trusted_proxies="127.0.0.1", **changes)


def who(address: str, token: str | None = None) -> dict:
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def statuses(client, path: str, n: int, headers: dict) -> list[int]:
    out = []
    for _ in range(n):
        resp = await client.get(path, headers=headers)
        await resp.read()
        out.append(resp.status)
    return out


@pytest.fixture(scope="module")
async def post(world):
    author = await world.account()
    root = await world.post(author, "root")
    await world.fan(author, root, 3)
    return root


async def test_over_the_read_budget_is_a_429_with_retry_after_and_ratelimit_fields(
        aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="10/minute")))
    h = who("198.51.100.1")
    # render cache off in tests: each first page is rendered, 4 units (1 before, 3 after);
    # the third's cost does not fit: it is answered, and the client is over from then on
    assert await statuses(client, f"/v1/conversations/{post}", 3, h) == [200, 200, 200]
    resp = await client.get(f"/v1/conversations/{post}", headers=h)
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "rate_limited"
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert resp.headers["RateLimit-Policy"] == '"read";q=10;w=60, "not_found";q=60;w=300'
    assert resp.headers["RateLimit"] == f'"read";r=0;t={retry}'
    assert resp.headers["Cache-Control"] == "no-store"
    # another client is not affected
    assert await statuses(client, f"/v1/conversations/{post}", 1, who("198.51.100.2")) == [200]
    # and the refused one is refused without a store call each time, at once
    assert await statuses(client, f"/v1/conversations/{post}", 5, h) == [429] * 5


async def test_cached_answers_cost_less_than_renders(aiohttp_client, settings, post):
    """Read budget 12: with the render cache, 1 render (4) then 8 cached answers (1 each)
    fit; without it, only 3 renders."""
    cached = await aiohttp_client(create_app(limited(settings, rate_limit_read="12/minute",
                                                     render_cache_ttl_s=60)))
    got = await statuses(cached, f"/v1/conversations/{post}", 11, who("198.51.100.3"))
    assert got == [200] * 9 + [429] * 2
    rendered = await aiohttp_client(create_app(limited(settings, rate_limit_read="12/minute")))
    got = await statuses(rendered, f"/v1/conversations/{post}", 5, who("198.51.100.3"))
    assert got == [200] * 3 + [429] * 2


async def test_cost_table_is_live_and_continuations_cost_the_page_cost(
        aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="12/minute")))
    body = await (await client.get(f"/v1/conversations/{post}?branching=1",
                                   headers=who("198.51.100.30"))).json()
    cursor = body["focal"]["replies"]["more"]["cursor"]
    path = f"/v1/conversations/{post}/replies?cursor={cursor}"
    # 4 spent; continuation pages at 2: 4 more fit (12), the next is refused
    got = await statuses(client, path, 5, who("198.51.100.30"))
    assert got == [200] * 4 + [429]
    # live: a first page costing 1 (as a cached one) lets a new client read 12 of them
    resp = await client.patch("/v1/admin/settings", json={"rate_limit_cost_render": 1},
                              headers=ADMIN)
    assert resp.status == 200
    got = await statuses(client, f"/v1/conversations/{post}", 13, who("198.51.100.31"))
    assert got == [200] * 12 + [429]


async def test_ops_endpoints_are_free(aiohttp_client, settings):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="1/minute",
                                                     rate_limit_not_found="1/minute")))
    h = who("198.51.100.4")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert set(await statuses(client, path, 10, h)) == {200}, path
    # the budget is untouched: the first read still goes through
    assert (await client.get("/openapi.json", headers=h)).status == 200


async def test_writes_have_their_own_budget(aiohttp_client, settings, world, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_write="2/minute")))
    token = await world.token(await world.account())
    h = who("198.51.100.5", token)
    assert (await client.get("/v1/me/follows", headers=h)).status == 200  # token now known
    for expected in (201, 201, 429):
        resp = await client.post("/v1/posts", json={"text": "hi"}, headers=h)
        assert resp.status == expected, await resp.text()
    assert resp.headers["RateLimit"].startswith('"write";r=0;t=')
    assert '"write";q=2;w=60' in resp.headers["RateLimit-Policy"]
    # reads are another budget
    assert await statuses(client, f"/v1/conversations/{post}", 2, h) == [200, 200]


async def test_probing_ids_is_throttled_within_the_404_budget(aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_not_found="5/minute")))
    h = who("198.51.100.6")
    probes = [f"/v1/conversations/{900_000_000_000 + i}" for i in range(8)]
    got = [await statuses(client, p, 1, h) for p in probes]
    assert [g[0] for g in got] == [404] * 5 + [429] * 3
    resp = await client.get(f"/v1/conversations/{post}", headers=h)
    assert resp.status == 429  # everything is refused while the 404 budget is spent
    assert resp.headers["RateLimit"].startswith('"not_found";r=0;t=')
    assert (await resp.json())["error"]["message"].startswith(
        "too many requests from this client: its 'not_found' budget of 5 per 60 s is spent")
    # any route's 404 spends it: a DELETE of a missing post, an unknown path
    other = who("198.51.100.7")
    assert (await client.get("/no/such/path", headers=other)).status == 404
    # normal reading meets no 404 and is not affected
    assert await statuses(client, f"/v1/conversations/{post}", 3, other) == [200] * 3


async def test_concurrent_probes_get_no_more_404s_than_the_budget(aiohttp_client, settings):
    """The 404 is charged after the answer; a prober opening many connections at once must
    not get a burst of probes past its budget (the in-flight bound)."""
    client = await aiohttp_client(create_app(limited(settings, rate_limit_not_found="5/minute")))
    h = who("198.51.100.8")

    async def probe(i):
        resp = await client.get(f"/v1/conversations/{910_000_000_000 + i}", headers=h)
        await resp.read()
        return resp.status
    waves = [await asyncio.gather(*(probe(100 * w + i) for i in range(40))) for w in range(3)]
    assert [w.count(404) for w in waves] == [5, 0, 0]
    assert all(s in (404, 429) for w in waves for s in w)


async def test_hidden_and_missing_posts_spend_the_404_budget_alike(
        aiohttp_client, settings, world):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_not_found="4/minute")))
    author = await world.account()
    gone = await world.post(author, "gone")
    await world.delete(gone)
    h = who("198.51.100.9")
    paths = [f"/v1/conversations/{gone}", f"/v1/conversations/{gone + 7919}"] * 3
    got = [(await client.get(p, headers=h)) for p in paths]
    statuses_ = [r.status for r in got]
    assert statuses_ == [404] * 4 + [429] * 2
    bodies = [await r.read() for r in got[:4]]
    assert len(set(bodies)) == 1
    # Date and X-Request-Id (random per request: independent of the post) aside
    strip = lambda r: {k: v for k, v in r.headers.items()  # noqa: E731
                       if k.lower() not in ("date", "x-request-id")}
    assert strip(got[0]) == strip(got[1]) == strip(got[3])


async def test_per_account_override_through_the_admin_api_persists(
        aiohttp_client, settings, world, post):
    s = limited(settings, rate_limit_read="8/minute")
    client = await aiohttp_client(create_app(s))
    trusted, ordinary = await world.account(), await world.account()
    t_token, o_token = await world.token(trusted), await world.token(ordinary)
    resp = await client.put(f"/v1/admin/accounts/{trusted}/rate_limits",
                            json={"read": "1000/minute", "note": "integration"}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["effective"]["read"] == {"quota": 1000, "window_s": 60}
    assert body["effective"]["write"] == {"quota": 300, "window_s": 300}
    assert body["override"]["read"] == "1000/minute" and body["override"]["write"] is None
    path = f"/v1/conversations/{post}"
    # one request from each makes its token known (charged to the address's token budget)
    assert await statuses(client, path, 1, who("198.51.100.10", t_token)) == [200]
    assert await statuses(client, path, 1, who("198.51.100.11", o_token)) == [200]
    assert set(await statuses(client, path, 10, who("198.51.100.10", t_token))) == {200}
    assert (await statuses(client, path, 3, who("198.51.100.11", o_token)))[-1] == 429
    # a new app (a restart) reads the override from PostgreSQL
    again = await aiohttp_client(create_app(s))
    assert await statuses(again, path, 1, who("198.51.100.10", t_token)) == [200]
    assert set(await statuses(again, path, 10, who("198.51.100.10", t_token))) == {200}
    got = await (await again.get(f"/v1/admin/accounts/{trusted}/rate_limits",
                                 headers=ADMIN)).json()
    assert got["override"]["note"] == "integration"
    # removed: back to the default at once in the process that removed it
    assert (await again.delete(f"/v1/admin/accounts/{trusted}/rate_limits",
                               headers=ADMIN)).status == 204
    got = await (await again.get(f"/v1/admin/accounts/{trusted}/rate_limits",
                                 headers=ADMIN)).json()
    assert got["override"] is None and got["effective"]["read"]["quota"] == 8
    assert 429 in await statuses(again, path, 5, who("198.51.100.10", t_token))


async def test_override_validation(client, world):
    account = await world.account()
    url = f"/v1/admin/accounts/{account}/rate_limits"
    for body in ({"read": "lots"}, {"read": 5}, {"bogus": "1/minute"}, {"read": "0/minute"}):
        resp = await client.put(url, json=body, headers=ADMIN)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] in ("invalid_field",)
    assert (await client.put("/v1/admin/accounts/999999999999/rate_limits", json={},
                             headers=ADMIN)).status == 404
    assert (await client.get(url)).status == 401


async def test_signed_in_account_behind_a_spent_address_is_not_starved(
        aiohttp_client, settings, world, post):
    """A shared NAT address whose anonymous traffic spent its budget: a signed-in user behind
    it still gets its first request through (tokens not yet known have the address's other
    budget), then its own account's budget."""
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="8/minute")))
    nat = "198.51.100.12"
    assert (await statuses(client, f"/v1/conversations/{post}", 4, who(nat)))[-1] == 429
    token = await world.token(await world.account())
    assert await statuses(client, f"/v1/conversations/{post}", 2, who(nat, token)) == [200] * 2
    # made-up tokens share one budget per address: no fresh budget per token
    got = [await statuses(client, "/v1/me/follows", 1, who(nat, f"fake{i}")) for i in range(9)]
    assert [g[0] for g in got][-1] == 429


async def test_trusted_proxies_decide_who_the_client_is(aiohttp_client, settings, post):
    # untrusted peer: X-Forwarded-For is ignored, every request is the peer's
    client = await aiohttp_client(create_app(settings.replace(
        rate_limit_exempt="", rate_limit_read="8/minute")))
    path = f"/v1/conversations/{post}"
    got = [await statuses(client, path, 1, who(f"203.0.113.{i}")) for i in range(4)]
    assert [g[0] for g in got][-1] == 429
    # trusted: the forwarded address is the client; a spoofed leftmost hop is not believed
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="8/minute")))
    got = [await statuses(client, path, 1, {"X-Forwarded-For": f"6.6.6.{i}, 203.0.113.50"})
           for i in range(4)]
    assert [g[0] for g in got][-1] == 429
    assert await statuses(client, path, 1, who("203.0.113.51")) == [200]


async def test_exempt_addresses_and_the_off_switch_are_live(aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="4/minute")))
    path, h = f"/v1/conversations/{post}", who("198.51.100.13")
    assert await statuses(client, path, 2, h) == [200, 429]
    resp = await client.patch("/v1/admin/settings",
                              json={"rate_limit_exempt": "198.51.100.0/24"}, headers=ADMIN)
    assert resp.status == 200
    assert set(await statuses(client, path, 5, h)) == {200}
    await client.patch("/v1/admin/settings", json={"rate_limit_exempt": ""}, headers=ADMIN)
    assert await statuses(client, path, 1, h) == [429]
    await client.patch("/v1/admin/settings", json={"rate_limit_enabled": False}, headers=ADMIN)
    assert set(await statuses(client, path, 5, h)) == {200}
    # a budget changed live applies to the next request (a new rate starts its count over)
    await client.patch("/v1/admin/settings", json={"rate_limit_enabled": True,
                                                   "rate_limit_read": "100/minute"},
                       headers=ADMIN)
    assert set(await statuses(client, path, 5, h)) == {200}
    resp = await client.patch("/v1/admin/settings", json={"rate_limit_read": "often"},
                              headers=ADMIN)
    assert resp.status == 400 and "rate_limit_read" in (await resp.json())["error"]["message"]


async def test_admin_requests_are_not_limited(aiohttp_client, settings):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="1/minute",
                                                     rate_limit_write="1/minute")))
    h = {**ADMIN, **who("198.51.100.14")}
    assert set(await statuses(client, "/v1/admin/settings", 5, h)) == {200}
    # without the token, an admin path is an ordinary request (a 401 costs 1)
    assert await statuses(client, "/v1/admin/settings", 2, who("198.51.100.14")) == [401, 429]


async def test_always_mode_puts_the_fields_on_every_limited_answer(
        aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(limited(
        settings, rate_limit_read="20/minute", rate_limit_headers="always",
        rate_limit_cost_render=1)))
    h = who("198.51.100.15")
    remaining = []
    for _ in range(3):
        resp = await client.get(f"/v1/conversations/{post}", headers=h)
        assert resp.status == 200
        assert resp.headers["RateLimit-Policy"] == '"read";q=20;w=60, "not_found";q=60;w=300'
        m = re.fullmatch(r'"read";r=(\d+);t=(\d+)', resp.headers["RateLimit"])
        remaining.append(int(m.group(1)))
        assert 1 <= int(m.group(2)) <= 60
    assert remaining == [19, 18, 17]
    # the default: none on answers that were not refused
    quiet = await aiohttp_client(create_app(limited(settings)))
    resp = await quiet.get(f"/v1/conversations/{post}", headers=h)
    assert "RateLimit" not in resp.headers and "RateLimit-Policy" not in resp.headers


async def test_refusals_are_counted_by_route_and_reason(aiohttp_client, settings, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="4/minute")))
    await statuses(client, f"/v1/conversations/{post}", 3, who("198.51.100.16"))
    text = await (await client.get("/metrics")).text()
    line = ('arbor_rate_limited_requests_total{reason="read",'
            'route="/v1/conversations/{post_id}"} 2.0')
    assert line in text
    assert "198.51.100.16" not in text  # never a label per client
    assert "arbor_rate_limit_clients " in text


async def test_an_exempt_proxy_that_is_not_trusted_is_said_once(aiohttp_client, settings, post,
                                                                caplog):
    """Defaults: loopback exempt, no trusted proxies. A local proxy forwarding client
    addresses then makes every client this host, unlimited: the log says so, once."""
    client = await aiohttp_client(create_app(settings))
    for i in range(3):
        await client.get(f"/v1/conversations/{post}", headers=who(f"203.0.113.{i}"))
    said = [r for r in caplog.records if "not in trusted_proxies" in r.getMessage()]
    assert len(said) == 1 and "set trusted_proxies" in said[0].getMessage()


async def test_a_busy_signed_in_account_does_not_starve_its_address(
        aiohttp_client, settings, world, post):
    client = await aiohttp_client(create_app(limited(settings, rate_limit_read="8/minute")))
    nat, token = "198.51.100.17", await world.token(await world.account())
    await statuses(client, f"/v1/conversations/{post}", 1, who(nat, token))  # token now known
    assert (await statuses(client, f"/v1/conversations/{post}", 4, who(nat, token)))[-1] == 429
    # the account spent its own budget, not the address's: anonymous readers behind it read on
    assert await statuses(client, f"/v1/conversations/{post}", 2, who(nat)) == [200, 200]
