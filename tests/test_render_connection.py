"""A render runs all its statements on one pool connection (storage/db.py `pinned`), and
concurrent renders on a pool smaller than their number neither deadlock nor mix up."""
from __future__ import annotations

import asyncio
import re

import orjson

from service.app import create_app
from service.http.keys import DB

_CURSOR = re.compile(rb'"cursor":"[A-Za-z0-9_-]+"')


async def _conversation(world, replies: int) -> int:
    author = await world.account()
    root = await world.post(author, "root")
    for child in await world.fan(author, root, replies):
        await world.fan(author, child, 2)
    return root


async def test_a_render_acquires_the_pool_once(client, world):
    root = await _conversation(world, 4)
    db = client.server.app[DB]
    acquired = 0
    real_acquire = db.acquire

    def counting_acquire():
        nonlocal acquired
        acquired += 1
        return real_acquire()
    db.acquire = counting_acquire
    try:
        resp = await client.get(f"/v1/conversations/{root}?depth=3")
        assert resp.status == 200
        trips = int(re.search(r"round_trips=(\d+)", resp.headers["Server-Timing"]).group(1))
    finally:
        db.acquire = real_acquire
    assert trips >= 3  # the chain with its posts, two levels with theirs
    # the render's connection, and the viewer lookup's none (anonymous)
    assert acquired == 1


async def test_concurrent_renders_on_a_small_pool(aiohttp_client, settings, world):
    roots = [await _conversation(world, n) for n in (3, 5, 7, 9)]
    client = await aiohttp_client(create_app(settings.replace(db_pool_min=1, db_pool_max=2)))

    async def body(root: int) -> bytes:
        resp = await client.get(f"/v1/conversations/{root}?depth=3")
        assert resp.status == 200
        return _CURSOR.sub(b'"cursor":""', await resp.read())

    alone = {root: await body(root) for root in roots}
    wanted = [roots[i % len(roots)] for i in range(40)]
    together = await asyncio.wait_for(asyncio.gather(*(body(r) for r in wanted)), 60)
    for root, got in zip(wanted, together):
        assert got == alone[root]
        assert orjson.loads(got)["focal_id"] == str(root)
