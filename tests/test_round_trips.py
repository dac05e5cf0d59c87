"""Bounded cost: database round trips per render are at most depth + 3, whatever the size."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from service.http.keys import DB


async def big_conversation(world, direct: int):
    """`direct` direct replies; the first 20 each carry a 10-deep chain and a fan of 5."""
    a = await world.account()
    root = await world.post(a, "root")
    replies = await world.fan(a, root, direct, rank=lambda i: 1000 - i)
    for parent in replies[:20]:
        node = parent
        for _ in range(10):
            node = await world.post(a, reply_to=node)
        await world.fan(a, parent, 5)
    return root


async def count_round_trips(client, url):
    db = client.server.app[DB]
    await asyncio.sleep(0.01)
    before = db.queries_executed
    db.query_log = []
    resp = await client.get(url)
    assert resp.status == 200
    await resp.read()
    await asyncio.sleep(0.01)  # asyncpg's query logger reports through call_soon
    header = re.search(r"round_trips=(\d+)", resp.headers["Server-Timing"])
    return db.queries_executed - before, int(header.group(1)), await resp.json()


@pytest.fixture(scope="module")
async def conversations(world):
    return {"small": await big_conversation(world, 30), "large": await big_conversation(world, 1500)}


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("depth", [0, 1, 3, 6, 12])
async def test_render_round_trips_within_depth_plus_three(client, conversations, size, depth):
    root = conversations[size]
    counted, reported, body = await count_round_trips(
        client, f"/v1/conversations/{root}?depth={depth}&branching=10&max_nodes=1000")
    assert counted == reported, client.server.app[DB].query_log
    assert counted <= depth + 3
    assert body["focal"]["replies"]["more"] or depth == 0


async def test_continuation_page_round_trips_bounded(client, conversations):
    root = conversations["large"]
    _, _, body = await count_round_trips(client, f"/v1/conversations/{root}?depth=4")
    cursor = body["focal"]["replies"]["more"]["cursor"]
    counted, _, page = await count_round_trips(
        client, f"/v1/conversations/{root}/replies?cursor={cursor}")
    assert page["items"] and counted <= 4 + 3


_SQL_COUNT = re.compile(r"\bcount\s*\(\s*(\*|distinct\b|[a-z_][\w.]*\s*\))", re.I)


def test_sql_count_pattern_catches_counts():
    assert _SQL_COUNT.search("SELECT count(*) FROM posts")
    assert _SQL_COUNT.search("select COUNT( p.id ) from posts p")
    assert not _SQL_COUNT.search('text.count(".")')


def test_no_count_star_over_replies_at_request_time():
    """Counts come from counters: no request-time SQL counts rows. Write-time modules (seeding,
    writes, section recomputation) may count: their cost is paid once per write."""
    write_time = re.compile(r"(_writes|seeding|section_updates|repair)\.py$")
    request_code = [p for d in ("service", "storage") for p in Path(d).glob("*.py")
                    if not write_time.search(p.name)]
    offenders = [str(p) for p in request_code if _SQL_COUNT.search(p.read_text())]
    assert offenders == []
