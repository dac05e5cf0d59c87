"""SREs cap one conversation's view limits (a viral post) without touching the others."""
from __future__ import annotations

from .helpers import collect_all_replies, iter_nodes

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_caps_lower_defaults_and_requests_and_cursors_reach_the_rest(client, world):
    a = await world.account()
    viral = await world.post(a, "viral")
    replies = await world.fan(a, viral, 12)
    other = await world.post(a, "quiet")
    await world.fan(a, other, 12)
    resp = await client.put(f"/v1/admin/conversations/{replies[3]}/limits",
                            json={"branching": 3, "depth": 1}, headers=ADMIN)
    assert resp.status == 200 and (await resp.json())["branching"] == 3
    body = await (await client.get(f"/v1/conversations/{viral}?branching=50")).json()
    assert len(body["focal"]["replies"]["items"]) == 3
    seen = await collect_all_replies(client, viral, body)
    assert sorted(seen) == sorted(str(r) for r in replies)
    untouched = await (await client.get(f"/v1/conversations/{other}")).json()
    assert len(untouched["focal"]["replies"]["items"]) == 10
    got = await (await client.get(f"/v1/admin/conversations/{viral}/limits", headers=ADMIN)).json()
    assert (got["branching"], got["depth"], got["max_nodes"]) == (3, 1, None)
    assert (await client.delete(f"/v1/admin/conversations/{viral}/limits",
                                headers=ADMIN)).status == 204
    body = await (await client.get(f"/v1/conversations/{viral}")).json()
    assert len(body["focal"]["replies"]["items"]) == 10


async def test_caps_validation(client, world):
    a = await world.account()
    post = await world.post(a, "p")
    for bad in ({"branching": 0}, {"depth": "3"}, {"colour": 1}, [1]):
        resp = await client.put(f"/v1/admin/conversations/{post}/limits", json=bad, headers=ADMIN)
        assert resp.status == 400
    resp = await client.put("/v1/admin/conversations/123456789/limits", json={}, headers=ADMIN)
    assert resp.status == 404
    assert (await client.get(f"/v1/admin/conversations/{post}/limits")).status == 401


async def test_continuation_pages_keep_the_cap(client, world):
    a = await world.account()
    viral = await world.post(a, "viral")
    for parent in await world.fan(a, viral, 8):
        await world.fan(a, parent, 3)
    await client.put(f"/v1/admin/conversations/{viral}/limits", json={"max_nodes": 4},
                     headers=ADMIN)
    body = await (await client.get(f"/v1/conversations/{viral}")).json()
    assert sum(1 for _ in iter_nodes(body["focal"]["replies"])) == 4
    cursor = body["focal"]["replies"]["more"]["cursor"]
    page = await (await client.get(f"/v1/conversations/{viral}/replies",
                                   params={"cursor": cursor, "max_nodes": 1000})).json()
    assert sum(1 for _ in iter_nodes(page)) == 4
