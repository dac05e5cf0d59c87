"""A tree level's statement ends its ids with `LIMIT level_bound(...)` (storage/
thread_queries.py): the most rows they can make, so the planner plans for a page, not for a
tenth of every parent's replies. The bound must never cut a row, and the planner must see it.
"""
from __future__ import annotations

import orjson
import pytest

from storage import thread_queries as q


@pytest.fixture(scope="module")
async def level_case(world):
    """12 parents, each with 4 replies by the focal author, 4 by the viewer, 4 by a followed
    account and 4 by others: every part of a level (listed, head, followed) has more rows
    than its limit."""
    focal, viewer, followed, other = await world.accounts(4)
    root = await world.post(focal, "root")
    conversation = (await world.db.fetchrow(
        "SELECT conversation_id FROM posts WHERE id = $1", root))[0]
    parents = []
    for i in range(12):
        parent = await world.post(other, f"parent {i}", reply_to=root)
        for author in (focal, viewer, followed, other):
            await world.fan(author, parent, 4, rank=lambda k: 10 * k + author % 7)
        parents.append(parent)
    return conversation, parents, focal, viewer, followed


def _shape(out: dict) -> dict:
    return {parent: ([p.id for p in rows.listed], [p.id for p in rows.head])
            for parent, rows in out.items()}


@pytest.mark.parametrize("followed", [False, True])
@pytest.mark.parametrize("sort", q.SORTS)
async def test_the_bound_never_cuts_a_row(world, level_case, monkeypatch, sort, followed):
    conversation, parents, focal, viewer, friend = level_case
    fetches = [q.Fetch(p, 3) for p in parents]
    head = q.Head((friend,) if followed else (), focal, viewer, all_sections=True,
                  limit=4, window=5)
    got = await q.level(world.db, conversation, fetches, sort, 0, head)
    after = [q.Fetch(p, 2, q.keyset(rows.listed[0], sort)) for p, rows in got.items()]
    got_after = await q.level(world.db, conversation, after, sort, 0)
    # what the statements return with no bound at all (the same statements, LIMIT 10^9)
    monkeypatch.setattr(q, "level_bound", lambda fetches, head: 10 ** 9)
    assert _shape(got) == _shape(await q.level(world.db, conversation, fetches, sort, 0, head))
    assert _shape(got_after) == _shape(await q.level(world.db, conversation, after, sort, 0))
    # every part was filled: a bound of the listed rows alone would have cut some
    assert sum(len(r.listed) + len(r.head) for r in got.values()) > sum(f.limit for f in fetches)
    assert all(len(r.listed) == 2 for r in got_after.values())


async def test_the_planner_plans_for_the_bound(world, level_case):
    """Under plans made for the actual parameters (as psql, EXPLAIN or a pool without
    force_generic_plan make them), the ids are estimated at no more than the bound."""
    conversation, parents, focal, viewer, friend = level_case
    fetches = [q.Fetch(p, 2) for p in parents]
    head = q.Head((friend,), focal, viewer, all_sections=True, limit=4, window=5)
    sql = q._LEVEL_SQL[("ranked", False, True, True)]
    bound = q.level_bound(fetches, head)
    args = [conversation, parents, [2] * len(parents), 0, [friend], True, focal, viewer, 4, 5,
            bound]
    async with world.db.connection() as con:
        await con.execute("SET plan_cache_mode = force_custom_plan")
        try:
            plan = orjson.loads(await con.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))
        finally:
            await con.execute("SET plan_cache_mode = force_generic_plan")
    top = plan[0]["Plan"]
    assert top["Plan Rows"] <= bound, top

    def nodes(node):
        yield node
        for child in node.get("Plans", ()):
            yield from nodes(child)
    # the bound sits above the union of the parts (below it, each parent's own LIMIT q.lim)
    above_union = [n for n in nodes(top) if n["Node Type"] == "Limit"
                   and any(d["Node Type"] == "Append" for d in nodes(n))]
    assert above_union and all(n["Plan Rows"] <= bound for n in above_union), above_union


async def test_a_followed_focal_author_is_in_the_head_once(world, level_case):
    """The head's parts are joined with UNION ALL: the viewer following the focal author finds
    the author's replies in both, and level() keeps each once."""
    conversation, parents, focal, viewer, friend = level_case
    head = q.Head((focal, friend), focal, viewer, all_sections=True, limit=20, window=20)
    got = await q.level(world.db, conversation, [q.Fetch(p, 3) for p in parents], "ranked", 0,
                        head)
    for rows in got.values():
        ids = [p.id for p in rows.head]
        assert len(ids) == len(set(ids)) == 12   # 4 each by the focal author, viewer, friend
        assert [p.author.id for p in rows.head][:4] == [focal] * 4
