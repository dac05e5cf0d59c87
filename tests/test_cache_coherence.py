"""Caches coherent across processes: two apps on one database (as two workers or two hosts
are), each with long cache TTLs, so that only the change feed (LISTEN/NOTIFY from the write's
transaction) can make one see the other's writes. tests/test_workers.py does the same across
real worker processes."""
from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from service.app import create_app
from service.http.keys import CHANGE_FEED, READS

from .helpers import iter_nodes

LONG = {"render_cache_ttl_s": 300, "stale_ttl_s": 600, "viewer_cache_ttl_s": 300,
        "cache_notifications_enabled": True}  # off in the shared test settings


async def two_apps(aiohttp_client, settings, **overrides):
    a = await aiohttp_client(create_app(settings.replace(**LONG, **overrides)))
    b = await aiohttp_client(create_app(settings.replace(**LONG, **overrides)))
    for client in (a, b):
        assert client.server.app[CHANGE_FEED].up
    return a, b


def ids_in(body) -> set[str]:
    return {n["id"] for n in iter_nodes(body["focal"]["replies"])}


async def until(predicate, timeout=2.0):
    """Notices arrive asynchronously (well under a millisecond after the commit, usually):
    poll briefly, and return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await predicate():
        assert loop.time() - started < timeout, "not seen within the timeout"
        await asyncio.sleep(0.005)
    return loop.time() - started


async def until_cached_not_liked(b, root: int, auth: dict) -> None:
    """Until b serves the viewer's render of `root` from its cache, not liked."""
    async def cached_not_liked():
        r = await b.get(f"/v1/conversations/{root}", headers=auth)
        return r.headers["Arbor-Cache"] == "hit" and (await r.json())["focal"]["liked"] is False
    await until(cached_not_liked)


async def test_a_reply_through_a_is_seen_through_b_on_the_next_read(aiohttp_client, settings,
                                                                     world):
    a, b = await two_apps(aiohttp_client, settings)
    author = await world.account()
    token = await world.token(author)
    auth = {"Authorization": f"Bearer {token}"}
    root = await world.post(author, "root")

    async def hit():
        return (await b.get(f"/v1/conversations/{root}")).headers["Arbor-Cache"] == "hit"
    for round_ in range(10):
        await until(hit)  # b serves it from its cache now (world.post's notice came late)
        made = await a.post("/v1/posts", json={"text": f"reply {round_}",
                                               "in_reply_to_id": str(root)}, headers=auth)
        assert made.status == 201, await made.text()
        new_id = (await made.json())["id"]
        # the very next read through b (no waiting): the write's notice got there first
        seen = await b.get(f"/v1/conversations/{root}")
        body = await seen.json()
        assert new_id in ids_in(body), f"round {round_}: b served what it had cached"
        assert body["focal"]["counts"]["replies"] == round_ + 1
    feed_a = a.server.app[CHANGE_FEED]
    assert b.server.app[CHANGE_FEED].origin in feed_a.live_peers()
    assert feed_a.fences_incomplete == 0  # each write waited for b's confirmation


async def test_a_block_through_a_hides_the_author_through_b(aiohttp_client, settings, world):
    """The viewer cache too: b had the viewer's relations cached for 300 s."""
    a, b = await two_apps(aiohttp_client, settings)
    viewer, other = await world.account(), await world.account()
    auth = {"Authorization": f"Bearer {await world.token(viewer)}"}
    root = await world.post(viewer, "root")
    reply = await world.post(other, "a reply", reply_to=root)
    body = await (await b.get(f"/v1/conversations/{root}", headers=auth)).json()
    assert str(reply) in ids_in(body)
    assert (await a.put(f"/v1/me/blocks/{other}", headers=auth)).status == 204
    body = await (await b.get(f"/v1/conversations/{root}", headers=auth)).json()
    assert str(reply) not in ids_in(body)


async def test_a_like_through_a_shows_as_liked_through_b(aiohttp_client, settings, world):
    """The viewer's own renders (`liked`), which b had cached for that viewer's token."""
    a, b = await two_apps(aiohttp_client, settings)
    author, viewer = await world.account(), await world.account()
    auth = {"Authorization": f"Bearer {await world.token(viewer)}"}
    root = await world.post(author, "root")

    await until_cached_not_liked(b, root, auth)
    assert (await a.put(f"/v1/posts/{root}/like", headers=auth)).status in (200, 204)
    body = await (await b.get(f"/v1/conversations/{root}", headers=auth)).json()
    assert body["focal"]["liked"] is True


async def test_writes_behind_the_service_are_seen_too(aiohttp_client, settings, world):
    """SQL by hand, an import, a repair: the trigger notifies whatever wrote."""
    a, b = await two_apps(aiohttp_client, settings)
    author = await world.account()
    root = await world.post(author, "root")

    async def hit():
        return (await b.get(f"/v1/conversations/{root}")).headers["Arbor-Cache"] == "hit"
    await until(hit)
    reply = await world.post(author, "behind its back", reply_to=root)  # no fence: poll

    async def seen():
        return str(reply) in ids_in(await (await b.get(f"/v1/conversations/{root}")).json())
    await until(seen)


async def test_a_rolled_back_write_sends_nothing(aiohttp_client, settings, world, db):
    a, b = await two_apps(aiohttp_client, settings)
    author = await world.account()
    root = await world.post(author, "root")

    async def hit():
        return (await b.get(f"/v1/conversations/{root}")).headers["Arbor-Cache"] == "hit"
    await until(hit)  # the insert's own notice may come after b's first render
    received = b.server.app[CHANGE_FEED].received
    async with db.acquire() as con:
        tx = con.transaction()
        await tx.start()
        await con.execute("UPDATE posts SET text = 'x' WHERE id = $1", root)
        await tx.rollback()
    await asyncio.sleep(0.1)
    assert b.server.app[CHANGE_FEED].received == received
    assert (await b.get(f"/v1/conversations/{root}")).headers["Arbor-Cache"] == "hit"


async def test_live_settings_reach_the_other_process(aiohttp_client, settings):
    a, b = await two_apps(aiohttp_client, settings)
    admin = {"Authorization": "Bearer test-admin-token"}
    try:
        r = await a.patch("/v1/admin/settings", json={"default_depth": 3}, headers=admin)
        assert r.status == 200

        async def applied():
            return b.server.app[READS].settings.default_depth == 3
        await until(applied)
    finally:
        for client in (a, b):
            await client.patch("/v1/admin/settings", json={"default_depth": None},
                               headers=admin)


async def test_channel_down_is_degraded_then_recovers_and_drops_everything(
        aiohttp_client, settings, world, fault_proxy, proxied_dsn):
    """b listens through a proxy; cut it: /readyz says cache_notifications (still 200), and
    what b cached is bounded by its TTL only. Healed: b listens again and, having missed
    notices, treats everything it cached as stale."""
    a = await aiohttp_client(create_app(settings.replace(**LONG)))
    b = await aiohttp_client(create_app(settings.replace(
        **LONG, database_url=proxied_dsn, db_connect_timeout_s=0.5,
        cache_notifications_keepalive_s=0.2, cache_notifications_max_backoff_s=0.2)))
    author = await world.account()
    root = await world.post(author, "root")

    async def hit():
        return (await b.get(f"/v1/conversations/{root}")).headers["Arbor-Cache"] == "hit"
    await until(hit)
    fault_proxy.refuse()
    fault_proxy.reset_all()  # the listening connection (and the pool's) die

    async def degraded():
        body = await (await b.get("/readyz")).json()
        return "cache_notifications" in body["degraded"]
    await until(degraded, timeout=5)
    ready = await b.get("/readyz")
    assert ready.status in (200, 503)  # 503 only for the database itself: it is unreachable
    body = await ready.json()
    assert body["details"]["cache_notifications"]["up"] is False
    metrics = await (await b.get("/metrics")).text()
    assert "arbor_cache_notifications_up 0.0" in metrics
    # a write through a while b does not listen: b still serves its cached copy (TTL bound)
    reply = await world.post(author, "missed", reply_to=root)
    stale = await (await b.get(f"/v1/conversations/{root}")).json()
    assert str(reply) not in ids_in(stale)
    fault_proxy.heal()
    await fault_proxy.wait_listening()

    async def listening():
        return b.server.app[CHANGE_FEED].up
    await until(listening, timeout=5)
    fresh = await (await b.get(f"/v1/conversations/{root}")).json()
    assert str(reply) in ids_in(fresh)  # the reset on reconnecting dropped the cached copy
    assert "cache_notifications" not in (await (await b.get("/readyz")).json())["degraded"]
    assert a.server.app[CHANGE_FEED].up


async def test_notices_from_bulk_statements_are_bounded(pg_dsn, world):
    """One statement over many conversations sends one `*`, not thousands of notices."""
    author = await world.account()
    roots = [await world.post(author, f"root {i}") for i in range(120)]
    got: list[str] = []
    con = await asyncpg.connect(pg_dsn)
    try:
        await con.add_listener("arbor.changes", lambda *args: got.append(args[-1]))
        writer = await asyncpg.connect(pg_dsn)
        try:
            await writer.execute("UPDATE posts SET text = text WHERE id = ANY($1::bigint[])",
                                 roots)
            await writer.execute("UPDATE posts SET text = text WHERE id = ANY($1::bigint[])",
                                 roots[:3])
        finally:
            await writer.close()
        await asyncio.sleep(0.2)
    finally:
        await con.close()
    assert got[0] == "*"
    assert sorted(got[1][2:].split(",")) == sorted(str(r) for r in roots[:3])
    assert got[1].startswith("c:")


async def test_concurrent_likes_through_a_share_fences_and_each_shows_through_b(
        aiohttp_client, settings, world):
    """Writers share fence notices (storage/change_feed.py), and a shared one still covers
    every write that joined it: 30 viewers like a post through a at once, each reads through
    b the moment its like is answered, and each sees its own like, though b had every one of
    those renders cached as not liked. The fence's bound is raised from 100 ms: 30 likes at
    once on this shared machine can take longer to confirm (the writes would then answer
    without waiting, by design, and the test could not tell)."""
    a, b = await two_apps(aiohttp_client, settings, cache_notifications_fence_ms=5000)
    author = await world.account()
    root = await world.post(author, "root")
    viewers = [await world.account() for _ in range(30)]
    auths = [{"Authorization": f"Bearer {await world.token(v)}"} for v in viewers]
    for auth in auths:
        await until_cached_not_liked(b, root, auth)
    feed = a.server.app[CHANGE_FEED]
    notices_before = feed.fence_notices

    async def like_then_read(auth) -> bool:
        assert (await a.put(f"/v1/posts/{root}/like", headers=auth)).status == 200
        body = await (await b.get(f"/v1/conversations/{root}", headers=auth)).json()
        return body["focal"]["liked"]
    seen = await asyncio.gather(*(like_then_read(auth) for auth in auths))
    assert seen == [True] * len(auths)
    assert feed.fences_incomplete == 0
    # fewer notices than writes: some waited on one notice together
    assert feed.fence_notices - notices_before < len(auths)


async def test_fences_asked_for_together_share_one_notice_and_later_ones_get_their_own(
        pg_dsn):
    async with _running_feed(pg_dsn) as feed:
        assert await asyncio.gather(*(feed.fence(2.0) for _ in range(20))) == [True] * 20
        assert feed.fence_notices == 1   # all asked before it was sent
        # one asked while a notice is on its way cannot use it (that notice may precede its
        # commit): it gets the next
        first = asyncio.create_task(feed.fence(2.0))
        while feed._forming is not None or not feed._fences:
            await asyncio.sleep(0)       # until the first is being sent
        second = asyncio.create_task(feed.fence(2.0))
        assert await first and await second
        assert feed.fence_notices == 3
        assert feed.fences_incomplete == 0 and not feed._fences and feed._forming is None


async def _listening(pg_dsn):
    got: list[str] = []
    con = await asyncpg.connect(pg_dsn)
    await con.add_listener("arbor.changes", lambda *args: got.append(args[-1]))
    return con, got


@contextlib.asynccontextmanager
async def _running_feed(pg_dsn):
    """A ChangeFeed of its own, running and up, stopped after."""
    from storage.change_feed import ChangeFeed
    feed = ChangeFeed(pg_dsn, on_change=lambda _p: None, on_reset=lambda: None)
    task = asyncio.create_task(feed.run())
    try:
        assert await feed.wait_up(5)
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_reaction_is_notified_with_its_fence_not_from_its_transaction(
        aiohttp_client, settings, world, db, pg_dsn):
    """migrations/0011: a like's transaction notifies nothing (a notifying commit takes a
    global lock); the viewer's `u:` goes out with the writer's fence, just before it. A like
    by SQL behind the service's back is then not notified (its counts are, by the fold)."""
    from storage import reactions
    a, _b = await two_apps(aiohttp_client, settings)
    author, viewer = await world.account(), await world.account()
    auth = {"Authorization": f"Bearer {await world.token(viewer)}"}
    root = await world.post(author, "root")
    con, got = await _listening(pg_dsn)
    try:
        await asyncio.sleep(0.1)
        del got[:]
        assert (await a.put(f"/v1/posts/{root}/like", headers=auth)).status == 200
        await until(lambda: _async(any(p.startswith("f:") for p in got)))
        mine = [p for p in got if p.startswith(("u:", "f:"))]
        assert mine[0] == f"u:{viewer}" and mine[1].startswith("f:"), got
        assert sum(p.startswith("u:") for p in got) == 1, got
        del got[:]
        other = await world.account()
        assert await reactions.like(db, root, other)   # by SQL, not through the API
        await asyncio.sleep(0.2)
        assert not [p for p in got if p.startswith("u:")], got
    finally:
        await con.close()


async def _async(value):
    return value


async def test_a_fence_carries_its_writers_ids_in_notices_of_at_most_100(pg_dsn):
    async with _running_feed(pg_dsn) as feed:
        con, got = await _listening(pg_dsn)
        try:
            await asyncio.sleep(0.1)
            del got[:]
            # 150 writers waiting on one fence, each with its viewer
            assert await asyncio.gather(*(feed.fence(2.0, {"u": [i]})
                                          for i in range(1, 151))) == [True] * 150
            await asyncio.sleep(0.1)
            # (other apps of the session fold likes meanwhile: their `c:` notices are not ours)
            mine = [p for p in got if p.startswith(("u:", "f:"))]
            assert [p.split(":")[0] for p in mine] == ["u", "u", "f"], mine
            assert sorted(int(x) for p in mine[:2] for x in p[2:].split(",")) == \
                list(range(1, 151))
            assert feed.fence_notices == 1
        finally:
            await con.close()


async def test_a_fence_nobody_waits_for_any_more_still_sends_its_writers_notices(pg_dsn):
    """Writers that gave up on a fence before it went out (their bound ran out while the
    connection was busy) still have their `u:` notices sent: they are what tells the other
    processes."""
    async with _running_feed(pg_dsn) as feed:
        con, got = await _listening(pg_dsn)
        try:
            await asyncio.sleep(0.1)
            del got[:]
            async with feed._lock:            # the listening connection busy for a while
                assert await feed.fence(0.05, {"u": [42]}) is False   # gave up
            await asyncio.sleep(0.2)
            assert [p for p in got if p.startswith(("u:", "f:"))] == ["u:42"], got
            assert feed.fence_notices == 0 and feed.fences_incomplete == 1
        finally:
            await con.close()


async def test_without_a_fence_a_like_is_still_notified(aiohttp_client, settings, world):
    """cache_notifications_fence_ms=0 (writes do not wait): the like's `u:` is sent anyway,
    so b drops the viewer's cached render a moment later rather than at the TTL (300 s)."""
    a, b = await two_apps(aiohttp_client, settings, cache_notifications_fence_ms=0)
    author, viewer = await world.account(), await world.account()
    auth = {"Authorization": f"Bearer {await world.token(viewer)}"}
    root = await world.post(author, "root")

    await until_cached_not_liked(b, root, auth)
    notices = a.server.app[CHANGE_FEED].fence_notices
    assert (await a.put(f"/v1/posts/{root}/like", headers=auth)).status == 200

    async def liked():
        r = await b.get(f"/v1/conversations/{root}", headers=auth)
        return (await r.json())["focal"]["liked"] is True
    await until(liked)
    assert a.server.app[CHANGE_FEED].fence_notices == notices   # no fence was asked for
