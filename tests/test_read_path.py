"""The read path through HTTP: cache hits, coalescing, invalidation by writes, ranking that
fails open (chronological), viewer relations that fail closed."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.app import create_app
from service.http.keys import DB, READS
from service.resilience.faults import Faults

from .helpers import iter_nodes


@pytest.fixture
async def cached(aiohttp_client, settings):
    """An app with its render cache on (the shared test settings turn it off)."""
    faults = Faults()
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=30),
                                             faults=faults))
    return client, faults


async def queries(client) -> int:
    await asyncio.sleep(0.02)  # asyncpg's query logger reports through call_soon
    return client.server.app[DB].queries_executed


async def test_second_read_is_a_hit_without_database_work(cached, world):
    client, _ = cached
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, 3)
    first = await client.get(f"/v1/conversations/{root}")
    assert first.headers["Arbor-Cache"] == "miss"
    before = await queries(client)
    second = await client.get(f"/v1/conversations/{root}")
    assert second.headers["Arbor-Cache"] == "hit"
    assert await second.read() == await first.read()
    assert await queries(client) == before


async def test_concurrent_misses_share_one_set_of_queries(cached, world):
    client, _ = cached
    a = await world.account()
    roots = [await world.post(a, f"root {i}") for i in range(2)]
    for root in roots:
        for parent in await world.fan(a, root, 4):
            await world.fan(a, parent, 2)
    before = await queries(client)
    await client.get(f"/v1/conversations/{roots[0]}")
    one_render = await queries(client) - before
    before = await queries(client)
    responses = await asyncio.gather(*(client.get(f"/v1/conversations/{roots[1]}")
                                       for _ in range(20)))
    assert {r.status for r in responses} == {200}
    assert len({await r.read() for r in responses}) == 1
    assert await queries(client) - before == one_render
    assert client.server.app[READS].coalescer.shared >= 1


async def test_a_write_through_the_api_invalidates(cached, world):
    client, _ = cached
    a = await world.account()
    root = await world.post(a, "root")
    token = await world.token(a)
    await client.get(f"/v1/conversations/{root}")
    resp = await client.post("/v1/posts", json={"text": "new reply", "in_reply_to_id": str(root)},
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 201
    view = await client.get(f"/v1/conversations/{root}")
    assert view.headers["Arbor-Cache"] == "miss"
    assert [n["text"] for n in iter_nodes((await view.json())["focal"]["replies"])] == ["new reply"]


async def test_ranking_unavailable_renders_chronologically_without_error(cached, world):
    client, faults = cached
    a = await world.account()
    root = await world.post(a, "root")
    other = await world.account()
    ids = [await world.post(other, f"r{i}", reply_to=root, rank_key=i) for i in range(4)]
    faults.ranking = asyncpg.QueryCanceledError("injected: ranking index too slow")
    body = await (await client.get(f"/v1/conversations/{root}")).json()
    assert body["degraded"] == ["ranking"]
    assert [n["id"] for n in body["focal"]["replies"]["items"]] == [str(i) for i in ids]
    breaker = client.server.app[READS].ranking
    for _ in range(5):
        await client.get(f"/v1/conversations/{root}?branching=2")
    assert breaker.state == "open"          # ranked lookups are no longer attempted
    faults.ranking = None
    body = await (await client.get(f"/v1/conversations/{root}?depth=1")).json()
    assert body["degraded"] == ["ranking"]  # still open: chronological, no waiting
    breaker._retry_at = 0                   # the backoff has passed: one probe goes through
    body = await (await client.get(f"/v1/conversations/{root}?depth=2")).json()
    assert body["degraded"] == [] and breaker.state == "closed"
    assert [n["id"] for n in body["focal"]["replies"]["items"]] == [str(i) for i in reversed(ids)]


async def test_viewer_relations_unavailable_fail_closed(cached, world):
    client, faults = cached
    op, viewer, pest = await world.accounts(3)
    root = await world.post(op, "root")
    await world.post(pest, "from someone the viewer blocks", reply_to=root)
    await world.relate("blocks", viewer, pest)
    token = await world.token(viewer)
    faults.viewer_relations = asyncpg.QueryCanceledError("injected")
    resp = await client.get(f"/v1/conversations/{root}",
                            headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert "someone the viewer blocks" not in await resp.text()
    anonymous = await client.get(f"/v1/conversations/{root}")
    assert anonymous.status == 200      # nothing personal to protect


async def test_partial_responses_are_not_cached(cached, world):
    client, faults = cached
    a = await world.account()
    root = await world.post(a, "root")
    faults.quote_hydration = asyncpg.QueryCanceledError("injected")
    quoted = await world.post(a, "quoted")
    await world.post(a, "quoting", reply_to=root, quote=quoted)
    assert (await (await client.get(f"/v1/conversations/{root}")).json())["degraded"] == ["quotes"]
    faults.quote_hydration = None
    resp = await client.get(f"/v1/conversations/{root}")
    assert resp.headers["Arbor-Cache"] == "miss" and (await resp.json())["degraded"] == []


async def test_a_read_begun_after_a_write_does_not_join_a_render_begun_before_it(
        aiohttp_client, settings, fault_proxy, proxied_dsn, world):
    """A render is in flight (slow database), having read the conversation's replies; a reply
    is written and the write answered (its conversation's version bumped, as the API does);
    a read begun after that must not get the render from before the write (before the
    coalescer's generations, it joined it)."""
    app = create_app(settings.replace(database_url=proxied_dsn, render_cache_ttl_s=60,
                                      request_budget_ms=20000, db_statement_timeout_ms=20000,
                                      db_acquire_timeout_s=20, db_pool_min=1,
                                      db_pool_max=1))
    client = await aiohttp_client(app)
    author = await world.account()
    root = await world.post(author, "root")
    await world.fan(author, root, 3)
    path = f"/v1/conversations/{root}"
    # the pool's one connection opened and its statements prepared now, not through the slow
    # proxy (a second read waits for it rather than opening another at 0.8 s a round trip)
    assert (await client.get(f"{path}?depth=1")).status == 200   # another key: not cached
    try:
        # each chunk waits 0.4 s each way: the render's two round trips run 0-0.8 s and
        # 0.8-1.6 s, their statements executing at 0.4 s and 1.2 s
        fault_proxy.latency = 0.4
        before = asyncio.ensure_future(client.get(path))
        await asyncio.sleep(1.35)       # both statements have run; the answer is on its way
        reply = await world.post(author, "written while it rendered", reply_to=root)
        app[READS].cache.versions.bump(root)   # what the API's write does when it answers
        after = await client.get(path)
        first = await (await before).json()
        body = await after.json()
    finally:
        fault_proxy.latency = 0
    # (the render from before normally lacks the reply; on a machine slow enough that its
    # statements ran after the insert it has it, and then this cannot tell: not a failure)
    assert first["focal"]["counts"]["replies"] in (3, 4)
    assert str(reply) in {n["id"] for n in iter_nodes(body["focal"]["replies"])}
