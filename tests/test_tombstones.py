"""Deleted posts: tombstones keep their replies attached; deleted leaves are left out."""
from __future__ import annotations

from .helpers import iter_nodes


async def view(client, post_id, **params):
    resp = await client.get(f"/v1/conversations/{post_id}", params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_deleted_post_with_replies_is_a_tombstone_holding_them(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    middle = await world.post(a, "secret text", reply_to=root)
    child = await world.post(a, "child", reply_to=middle)
    await world.delete(middle)
    body = await view(client, root)
    [node] = body["focal"]["replies"]["items"]
    assert node == {"type": "tombstone", "id": str(middle), "reason": "deleted",
                    "replies": node["replies"]}
    assert [n["id"] for n in node["replies"]["items"]] == [str(child)]
    assert "secret text" not in str(body)
    assert body["focal"]["counts"]["replies"] == 1  # the tombstone still counts: it is listed


async def test_deleted_leaf_is_left_out_and_uncounted(client, world):
    a = await world.account()
    root = await world.post(a)
    keep = await world.post(a, "keep", reply_to=root)
    gone = await world.post(a, "gone", reply_to=root)
    await world.delete(gone)
    body = await view(client, root)
    assert [n["id"] for n in body["focal"]["replies"]["items"]] == [str(keep)]
    assert body["focal"]["counts"]["replies"] == 1
    assert body["focal"]["replies"]["more"] is None


async def test_deleting_the_last_reply_under_a_tombstone_removes_it(client, world):
    a = await world.account()
    root = await world.post(a)
    middle = await world.post(a, reply_to=root)
    child = await world.post(a, reply_to=middle)
    await world.delete(middle)
    await world.delete(child)  # ripples up: middle has nothing left to hold
    body = await view(client, root)
    assert body["focal"]["replies"] is None
    assert body["focal"]["counts"]["replies"] == 0


async def test_reply_to_a_deleted_leaf_brings_its_tombstone_back(client, world):
    a = await world.account()
    root = await world.post(a)
    middle = await world.post(a, reply_to=root)
    await world.delete(middle)
    late = await world.post(a, "late", reply_to=middle)
    body = await view(client, root)
    [node] = body["focal"]["replies"]["items"]
    assert node["type"] == "tombstone" and node["id"] == str(middle)
    assert [n["id"] for n in node["replies"]["items"]] == [str(late)]


async def test_deleted_ancestor_stays_in_the_chain_as_a_tombstone(client, world):
    a = await world.account()
    chain = await world.chain(a, 4)
    await world.delete(chain[1])
    body = await view(client, chain[3])
    items = body["ancestors"]["items"]
    assert [n["id"] for n in items] == [str(i) for i in chain[:3]]
    assert items[1] == {"type": "tombstone", "id": str(chain[1]), "reason": "deleted",
                        "replies": None}


async def test_deleted_focal_is_the_same_404_as_a_missing_post(client, world):
    a = await world.account()
    root = await world.post(a)
    post = await world.post(a, reply_to=root)
    await world.post(a, reply_to=post)
    await world.delete(post)
    deleted = await client.get(f"/v1/conversations/{post}")
    missing = await client.get("/v1/conversations/123456789")
    assert deleted.status == missing.status == 404
    assert await deleted.read() == await missing.read()


async def test_suspended_author_renders_unavailable_never_the_reason(client, world):
    a = await world.account()
    bad = await world.account(state="suspended")
    root = await world.post(a)
    hidden = await world.post(bad, "by a suspended account", reply_to=root)
    await world.post(a, "answer", reply_to=hidden)
    await world.post(bad, "leaf by suspended", reply_to=root)
    body = await view(client, root)
    nodes = list(iter_nodes(body["focal"]["replies"]))
    assert [n["type"] for n in nodes] == ["tombstone", "post"]
    assert nodes[0]["reason"] == "unavailable"
    assert "suspend" not in str(body)


async def test_quote_of_a_deleted_post_keeps_the_quoting_post(client, world):
    a = await world.account()
    quoted = await world.post(a, "original")
    root = await world.post(a, "root")
    quoting = await world.post(a, "quoting it", reply_to=root, quote=quoted)
    body = await view(client, root)
    [node] = body["focal"]["replies"]["items"]
    assert node["quote"]["state"] == "ok" and node["quote"]["post"]["text"] == "original"
    await world.delete(quoted)
    body = await view(client, root)
    [node] = body["focal"]["replies"]["items"]
    assert node["id"] == str(quoting)
    assert node["quote"] == {"state": "deleted", "id": str(quoted), "post": None}
