"""Shape and limits of GET /v1/conversations/{id}: sorts, branching, depth, max_nodes, ancestors."""
from __future__ import annotations

import pytest

from .helpers import iter_nodes


async def get_view(client, post_id, **params):
    resp = await client.get(f"/v1/conversations/{post_id}", params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_small_conversation_shape(client, world):
    alice = await world.account("alice_shape")
    root = await world.post(alice, "root post")
    r1 = await world.post(alice, "first", reply_to=root)
    r2 = await world.post(alice, "second", reply_to=root)
    r11 = await world.post(alice, "nested", reply_to=r1)

    body = await get_view(client, root)
    assert body["focal_id"] == str(root)
    assert body["degraded"] == [] and body["partial"] is False
    assert body["ancestors"] == {"items": [], "omitted": 0, "cursor": None}
    focal = body["focal"]
    assert focal["type"] == "post" and focal["text"] == "root post"
    assert focal["author"] == {"id": str(alice), "handle": "alice_shape",
                               "display_name": f"User {alice}"}
    assert focal["counts"] == {"replies": 2, "likes": 0, "reposts": 0, "quotes": 0}
    assert focal["conversation_id"] == str(root) and focal["in_reply_to_id"] is None
    items = focal["replies"]["items"]
    # ranked with equal rank keys: ties broken by id, newest id first
    assert [i["id"] for i in items] == [str(r2), str(r1)]
    assert focal["replies"]["more"] is None
    assert focal["replies"]["sections"] == {"low_quality": None, "offensive": None}
    first = items[1]
    assert first["in_reply_to_id"] == str(root) and first["counts"]["replies"] == 1
    assert [n["id"] for n in first["replies"]["items"]] == [str(r11)]
    assert first["replies"]["items"][0]["replies"] is None  # a leaf
    assert items[0]["replies"] is None


@pytest.mark.parametrize("sort,expected", [
    ("ranked", [2, 4, 3, 1, 0]),   # rank keys 5,3,7,9,1 -> 9,7,5,3,1 = indices 3,2,0,1,4
    ("newest", [4, 3, 2, 1, 0]),
    ("oldest", [0, 1, 2, 3, 4]),
])
async def test_sorts(client, world, sort, expected):
    a = await world.account()
    root = await world.post(a)
    ranks = [5, 3, 7, 9, 1]
    ids = await world.fan(a, root, 5, rank=lambda i: ranks[i])
    body = await get_view(client, root, sort=sort)
    got = [n["id"] for n in body["focal"]["replies"]["items"]]
    if sort == "ranked":
        expected = sorted(range(5), key=lambda i: -ranks[i])
    assert got == [str(ids[i]) for i in expected]


async def test_branching_cuts_with_a_cursor_on_the_focal(client, world):
    a = await world.account()
    root = await world.post(a)
    await world.fan(a, root, 7)
    body = await get_view(client, root, branching=3)
    replies = body["focal"]["replies"]
    assert len(replies["items"]) == 3
    assert replies["more"]["count"] == 4 and replies["more"]["cursor"]


async def test_depth_limit_leaves_a_cursor_at_the_cut(client, world):
    a = await world.account()
    chain = await world.chain(a, 6)  # root + 5 levels
    body = await get_view(client, chain[0], depth=3)
    node, level = body["focal"], 0
    while node["replies"]["items"]:
        node, level = node["replies"]["items"][0], level + 1
    assert level == 3 and node["id"] == str(chain[3])
    assert node["replies"]["items"] == [] and node["replies"]["more"]["count"] == 1


async def test_depth_zero_shows_only_a_cursor(client, world):
    a = await world.account()
    root = await world.post(a)
    await world.fan(a, root, 2)
    body = await get_view(client, root, depth=0)
    assert body["focal"]["replies"]["items"] == []
    assert body["focal"]["replies"]["more"]["count"] == 2


async def test_max_nodes_bounds_the_tree(client, world):
    a = await world.account()
    root = await world.post(a)
    for parent in await world.fan(a, root, 5):
        await world.fan(a, parent, 5)
    body = await get_view(client, root, max_nodes=12, branching=5)
    nodes = list(iter_nodes(body["focal"]["replies"]))
    assert len(nodes) == 12
    # budget goes breadth first: all 5 direct replies, then 7 of their replies
    assert len(body["focal"]["replies"]["items"]) == 5
    cut = [n for n in body["focal"]["replies"]["items"] if n["replies"]["more"]]
    assert cut, "nodes cut by the budget carry a cursor"


async def test_ancestors_root_first_root_kept_gap_counted(client, world):
    a = await world.account()
    chain = await world.chain(a, 12)  # depths 0..11
    focal = chain[11]
    body = await get_view(client, focal, ancestors=4)
    anc = body["ancestors"]
    # root, then the 3 nearest ancestors (depths 8, 9, 10); depths 1..7 omitted
    assert [n["id"] for n in anc["items"]] == [str(chain[i]) for i in (0, 8, 9, 10)]
    assert anc["omitted"] == 7 and anc["cursor"]
    assert all(n["replies"] is None for n in anc["items"])

    resp = await client.get(f"/v1/conversations/{focal}/ancestors", params={"cursor": anc["cursor"]})
    page = await resp.json()
    assert [n["id"] for n in page["items"]] == [str(chain[i]) for i in (4, 5, 6, 7)]
    assert page["omitted"] == 3
    resp = await client.get(f"/v1/conversations/{focal}/ancestors", params={"cursor": page["cursor"]})
    last = await resp.json()
    assert [n["id"] for n in last["items"]] == [str(chain[i]) for i in (1, 2, 3)]
    assert last["omitted"] == 0 and last["cursor"] is None


async def test_ancestors_all_shown_when_they_fit(client, world):
    a = await world.account()
    chain = await world.chain(a, 4)
    body = await get_view(client, chain[3], ancestors=3)
    assert [n["id"] for n in body["ancestors"]["items"]] == [str(i) for i in chain[:3]]
    assert body["ancestors"]["omitted"] == 0 and body["ancestors"]["cursor"] is None


async def test_ancestors_of_one_show_only_the_root(client, world):
    a = await world.account()
    chain = await world.chain(a, 5)
    body = await get_view(client, chain[4], ancestors=1)
    assert [n["id"] for n in body["ancestors"]["items"]] == [str(chain[0])]
    assert body["ancestors"]["omitted"] == 3


async def test_no_phantom_cursor_when_the_focal_author_wrote_every_reply(client, world):
    """Replies by the focal author are found by the head lookup and skipped in the list: a
    list that holds nothing else must not end with a cursor to an empty page."""
    a = await world.account()
    chain = await world.chain(a, 5)
    body = await get_view(client, chain[0], branching=1)
    node = body["focal"]
    while node["replies"]:
        assert node["replies"]["more"] is None
        node = node["replies"]["items"][0]
