"""A focal post hidden from the viewer costs what a missing id costs: the same statements,
in the same number, and the same 404 bytes, so neither time nor content tells them apart
(bench/enumeration.py measures the time; this checks the cause)."""
from __future__ import annotations

import asyncio

import pytest

from service.http.keys import DB


async def _statements(client, path: str, headers: dict) -> tuple[list[str], int, bytes, dict]:
    db = client.server.app[DB]
    await asyncio.sleep(0.01)
    db.query_log = []
    resp = await client.get(path, headers=headers)
    body = await resp.read()
    await asyncio.sleep(0.01)  # asyncpg's query logger reports through call_soon
    log, db.query_log = db.query_log, None
    # Date and X-Request-Id (random per request: independent of the post) aside
    return log, resp.status, body, {k: v for k, v in resp.headers.items()
                                    if k.lower() not in ("date", "x-request-id")}


@pytest.fixture(scope="module")
async def thread(world):
    """A chain 6 deep, then focal candidates under it, each hidden for one reason from
    `viewer` (and the anonymous viewer where the reason applies to it)."""
    alice, viewer = await world.account(), await world.account()
    chain = await world.chain(alice, 6)
    parent = chain[-1]
    suspended, protected = await world.account(), await world.account(protected=True)
    blocker, blocked, muted = await world.account(), await world.account(), await world.account()
    posts = {
        "visible": await world.post(alice, "fine", reply_to=parent),
        "deleted": await world.post(alice, "gone", reply_to=parent),
        "suspended": await world.post(suspended, "x", reply_to=parent),
        "protected": await world.post(protected, "x", reply_to=parent),
        "blocks_viewer": await world.post(blocker, "x", reply_to=parent),
        "blocked_by_viewer": await world.post(blocked, "x", reply_to=parent),
        "muted": await world.post(muted, "x", reply_to=parent),
    }
    # each hidden post has a visible reply: a tombstone in a tree, but as a focal post a 404
    for key in ("deleted", "suspended", "protected", "blocks_viewer"):
        await world.post(alice, "reply below", reply_to=posts[key])
    await world.delete(posts["deleted"])
    await world.db.execute("UPDATE accounts SET state = 'suspended' WHERE id = $1", suspended)
    await world.relate("blocks", blocker, viewer)
    await world.relate("blocks", viewer, blocked)
    await world.relate("mutes", viewer, muted)
    posts["missing"] = posts["muted"] + 7919
    return posts, await world.token(viewer)


ANONYMOUS_REASONS = ["deleted", "suspended", "protected"]
VIEWER_REASONS = ANONYMOUS_REASONS + ["blocks_viewer", "blocked_by_viewer", "muted"]


@pytest.mark.parametrize("signed_in", [False, True])
async def test_hidden_focal_does_the_work_of_a_missing_id(client, thread, signed_in):
    posts, token = thread
    headers = {"Authorization": f"Bearer {token}"} if signed_in else {}
    await client.get(f"/v1/conversations/{posts['visible']}", headers=headers)  # viewer cached
    missing = await _statements(client, f"/v1/conversations/{posts['missing']}", headers)
    assert missing[1] == 404
    assert len(missing[0]) == 1  # the gated chain query, nothing else
    for reason in VIEWER_REASONS if signed_in else ANONYMOUS_REASONS:
        hidden = await _statements(client, f"/v1/conversations/{posts[reason]}", headers)
        assert hidden[1] == 404, reason
        assert hidden[0] == missing[0], reason        # the same statements, in the same order
        assert hidden[2:] == missing[2:], reason      # the same bytes, headers but Date, X-Request-Id


async def test_visible_focal_still_renders_for_those_who_may_see_it(client, thread, world):
    posts, token = thread
    headers = {"Authorization": f"Bearer {token}"}
    for reason in ("visible",):
        resp = await client.get(f"/v1/conversations/{posts[reason]}", headers=headers)
        assert resp.status == 200
    # the gate lets through what the rules let through: the author, and a follower of a
    # protected author
    protected_post = posts["protected"]
    row = await world.db.fetchrow("SELECT author_id FROM posts WHERE id = $1", protected_post)
    author_token = await world.token(row["author_id"])
    resp = await client.get(f"/v1/conversations/{protected_post}",
                            headers={"Authorization": f"Bearer {author_token}"})
    assert resp.status == 200
    follower = await world.account()
    await world.relate("follows", follower, row["author_id"])
    resp = await client.get(f"/v1/conversations/{protected_post}",
                            headers={"Authorization": f"Bearer {await world.token(follower)}"})
    assert resp.status == 200
    body = await resp.json()
    assert body["focal"]["id"] == str(protected_post)
    assert len(body["ancestors"]["items"]) == 6  # the walk up went on past the gate
