"""Read replicas against a real streaming standby of the session's PostgreSQL (pg_basebackup -R
from the embedded binaries): reads go to it, writes to the primary, a viewer never reads an
older state than their own last write (replay paused: the standby really is behind), and a
lagging or dead standby is skipped."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.app import create_app
from service.http.keys import REPLICAS
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres

from .helpers import iter_nodes


@pytest.fixture(scope="module")
def standby(pg_dsn, tmp_path_factory):
    server = EmbeddedPostgres(tmp_path_factory.mktemp("standby") / "data", FAST_UNSAFE_OPTIONS)
    server.make_standby(pg_dsn)
    server.start()
    yield server
    server.stop("immediate")


async def on_standby(server: EmbeddedPostgres, sql: str):
    con = await asyncpg.connect(server.dsn())
    try:
        return await con.fetchval(sql)
    finally:
        await con.close()


@pytest.fixture
async def replica_app(aiohttp_client, settings, standby):
    async def make(**overrides):
        app = create_app(settings.replace(replica_urls=standby.dsn(), replica_poll_ms=50,
                                          cache_notifications_enabled=True,
                                          **overrides))
        return await aiohttp_client(app)
    yield make
    if await on_standby(standby, "SELECT pg_is_wal_replay_paused()"):
        await on_standby(standby, "SELECT pg_wal_replay_resume()")


def ids_in(body) -> set[str]:
    return {n["id"] for n in iter_nodes(body["focal"]["replies"])}


async def until(predicate, timeout=10.0):
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await predicate():
        assert loop.time() - started < timeout, "not within the timeout"
        await asyncio.sleep(0.02)


async def test_reads_go_to_the_replica_writes_to_the_primary(replica_app, world):
    client = await replica_app()
    replicas = client.server.app[REPLICAS]
    author = await world.account()
    auth = {"Authorization": f"Bearer {await world.token(author)}"}
    root = await world.post(author, "root")

    async def replayed():
        r = await client.get(f"/v1/conversations/{root}")
        return r.status == 200
    await until(replayed)  # the standby has the root
    before = replicas.replicas[0].reads
    for _ in range(5):
        assert (await client.get(f"/v1/conversations/{root}")).status == 200
    assert replicas.replicas[0].reads >= before + 5
    made = await client.post("/v1/posts", headers=auth,
                             json={"text": "a write", "in_reply_to_id": str(root)})
    assert made.status == 201  # a standby refuses writes: this one went to the primary
    ready = await (await client.get("/readyz")).json()
    assert ready["details"]["replicas"]["replicas"][0]["up"] is True
    assert "replicas" not in ready["degraded"]
    metrics = await (await client.get("/metrics")).text()
    assert 'arbor_db_replica_up{replica="replica-0"} 1.0' in metrics
    assert 'arbor_db_replica_lag_seconds{replica="replica-0"}' in metrics


async def test_a_viewer_never_reads_older_than_their_own_write(replica_app, world, standby):
    """Replay paused, and the lag bound high enough that the standby stays in use: only the
    LSN stickiness keeps each writer on the primary. Five writers, concurrently, each reading
    right after each of their writes; an anonymous reader meanwhile still reads the standby
    (so it really is used, and really is behind)."""
    client = await replica_app(replica_max_lag_ms=600_000)
    replicas = client.server.app[REPLICAS]
    author = await world.account()
    root = await world.post(author, "root")

    async def replayed():
        return (await client.get(f"/v1/conversations/{root}")).status == 200
    await until(replayed)
    await on_standby(standby, "SELECT pg_wal_replay_pause()")
    writers = [await world.account() for _ in range(5)]
    tokens = [await world.token(w) for w in writers]
    await asyncio.sleep(0.2)  # polls see the standby caught up to before the pause

    async def writer(token: str) -> list[str]:
        auth = {"Authorization": f"Bearer {token}"}
        mine = []
        for i in range(4):
            made = await client.post("/v1/posts", headers=auth,
                                     json={"text": f"mine {i}", "in_reply_to_id": str(root)})
            assert made.status == 201, await made.text()
            mine.append((await made.json())["id"])
            seen = await client.get(f"/v1/conversations/{root}?branching=100", headers=auth)
            assert seen.status == 200
            assert set(mine) <= ids_in(await seen.json()), "a read older than my write"
        return mine

    written = await asyncio.gather(*(writer(t) for t in tokens))
    anonymous_reads = replicas.replicas[0].reads
    anonymous = await (await client.get(f"/v1/conversations/{root}?branching=100")).json()
    assert replicas.replicas[0].reads == anonymous_reads + 1  # served by the paused standby
    assert not (set(sum(written, [])) & ids_in(anonymous))  # which is behind
    await on_standby(standby, "SELECT pg_wal_replay_resume()")
    auth = {"Authorization": f"Bearer {tokens[0]}"}

    async def back_on_the_replica():
        before = replicas.replicas[0].reads
        seen = await client.get(f"/v1/conversations/{root}?branching=100", headers=auth)
        assert set(written[0]) <= ids_in(await seen.json())
        return replicas.replicas[0].reads == before + 1
    await until(back_on_the_replica)  # once replayed, the writer reads the standby again


async def test_a_lagging_replica_is_skipped(replica_app, world, standby):
    client = await replica_app(replica_max_lag_ms=300)
    author = await world.account()
    root = await world.post(author, "root")

    async def replayed():
        return (await client.get(f"/v1/conversations/{root}")).status == 200
    await until(replayed)
    await on_standby(standby, "SELECT pg_wal_replay_pause()")
    reply = await world.post(author, "after the pause", reply_to=root)

    async def skipped():
        body = await (await client.get("/readyz")).json()
        return "replicas" in body["degraded"]
    await until(skipped)
    # anonymous reads now go to the primary: they see the reply the standby has not replayed
    body = await (await client.get(f"/v1/conversations/{root}")).json()
    assert str(reply) in ids_in(body)
    lag = client.server.app[REPLICAS].replicas[0].lag_s
    assert lag is not None and lag > 0.3
    # the threshold is live: raised, the paused replica is usable again and serves the
    # anonymous read (without what it has not replayed); lowered, skipped again
    await _set(client, replica_max_lag_ms=3_600_000)

    async def usable():
        body = await (await client.get("/readyz")).json()
        return "replicas" not in body["degraded"]
    await until(usable)
    served = client.server.app[REPLICAS].replicas[0].reads
    resp = await client.get(f"/v1/conversations/{root}")
    assert client.server.app[REPLICAS].replicas[0].reads == served + 1
    if resp.status == 200:   # (a 404 if the pause came before it replayed the root itself)
        assert str(reply) not in ids_in(await resp.json())
    await _set(client, replica_max_lag_ms=300)
    await until(skipped)
    await on_standby(standby, "SELECT pg_wal_replay_resume()")
    await until(usable)   # replayed: usable again at the old threshold


async def test_a_dead_replica_is_skipped_and_comes_back(replica_app, world, standby):
    client = await replica_app(db_connect_timeout_s=1)
    author = await world.account()
    root = await world.post(author, "root")

    async def replayed():
        return (await client.get(f"/v1/conversations/{root}")).status == 200
    await until(replayed)
    standby.stop("immediate")
    try:
        for _ in range(10):  # the reads in flight fall back to the primary: none fails
            assert (await client.get(f"/v1/conversations/{root}")).status == 200
        ready = await (await client.get("/readyz")).json()
        assert ready["status"] == "degraded" and "replicas" in ready["degraded"]
        assert (await client.get("/readyz")).status == 200  # the primary serves
        assert ready["details"]["replicas"]["replicas"][0]["up"] is False
    finally:
        standby.start()

    async def up_again():
        return client.server.app[REPLICAS].replicas[0].up
    await until(up_again)


async def _set(client, **changes) -> None:
    resp = await client.patch("/v1/admin/settings", json=changes,
                              headers={"Authorization": "Bearer test-admin-token"})
    assert resp.status == 200, await resp.text()
