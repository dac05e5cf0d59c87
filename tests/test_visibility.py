"""Visibility for a viewer (DESIGN §5): a table of cases, each rule, both block directions,
tombstones with and without visible replies, and the 404 identity."""
from __future__ import annotations

import pytest

from storage import account_writes

from .helpers import iter_nodes


async def view(client, post_id, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get(f"/v1/conversations/{post_id}", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _viewer_blocks(w, v, x): await w.relate("blocks", v, x)
async def _author_blocks(w, v, x): await w.relate("blocks", x, v)
async def _viewer_mutes(w, v, x): await w.relate("mutes", v, x)
async def _protected(w, v, x): await account_writes.update_account(w.db, x, protected=True)
async def _protected_followed(w, v, x):
    await account_writes.update_account(w.db, x, protected=True)
    await w.relate("follows", v, x)
async def _state(state):
    async def set_state(w, v, x): await account_writes.update_account(w.db, x, state=state)
    return set_state
async def _nothing(w, v, x): pass


CASES = [  # (name, setup(world, viewer, author), reason or None when visible)
    ("viewer blocks author", _viewer_blocks, "blocked"),
    ("author blocks viewer", _author_blocks, "blocked"),
    ("viewer mutes author", _viewer_mutes, "muted"),
    ("protected, not followed", _protected, "unavailable"),
    ("protected, followed", _protected_followed, None),
    ("no relation", _nothing, None),
]


@pytest.fixture
async def scene(world):
    async def make(setup, *, with_child: bool):
        op, viewer, author = await world.accounts(3)
        root = await world.post(op, "root")
        reply = await world.post(author, "the reply", reply_to=root)
        child = await world.post(op, "answer below", reply_to=reply) if with_child else None
        await setup(world, viewer, author)
        return root, reply, child, await world.token(viewer)
    return make


@pytest.mark.parametrize("name, setup, reason", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("with_child", [False, True], ids=["leaf", "with_reply"])
async def test_visibility_table(client, scene, name, setup, reason, with_child):
    root, reply, child, token = await scene(setup, with_child=with_child)
    nodes = {n["id"]: n for n in iter_nodes((await view(client, root, token))["focal"]["replies"])}
    if reason is None:
        assert nodes[str(reply)]["type"] == "post"
    elif with_child:
        assert nodes[str(reply)] == {"type": "tombstone", "id": str(reply), "reason": reason,
                                     "replies": nodes[str(reply)]["replies"]}
        assert nodes[str(child)]["type"] == "post"
    else:
        assert str(reply) not in nodes
    assert ("the reply" in str(nodes)) == (reason is None)


@pytest.mark.parametrize("state", ["suspended", "deactivated", "locked"])
async def test_account_states_all_read_unavailable(client, world, state):
    op, author = await world.account(), await world.account()
    root = await world.post(op, "root")
    reply = await world.post(author, "hidden", reply_to=root)
    await world.post(op, "below", reply_to=reply)
    await account_writes.update_account(world.db, author, state=state)
    body = await view(client, root)
    [node] = body["focal"]["replies"]["items"]
    assert node["type"] == "tombstone" and node["reason"] == "unavailable"
    assert state not in str(body)


async def test_anonymous_viewer_sees_no_protected_posts_but_ignores_relations(client, world):
    op, shy = await world.account(), await world.account(protected=True)
    root = await world.post(op, "root")
    await world.post(shy, "protected words", reply_to=root)
    plain = await world.post(op, "plain", reply_to=root)
    body = await view(client, root)
    assert [n["id"] for n in iter_nodes(body["focal"]["replies"])] == [str(plain)]


@pytest.mark.parametrize("word, text, hidden", [
    ("spoiler", "big SPOILER ahead", True),
    ("spoiler", "no spoilers here", False),        # whole words only
    ("spoiler", "(spoiler)", True),
    ("new york", "I love New  York", False),      # phrases match as written
    ("new york", "i love new york!", True),
    ("#tag", "see #tag now", True),
    ("c++", "I write C++ daily", True),
])
async def test_muted_words(client, world, word, text, hidden):
    op, viewer, author = await world.accounts(3)
    root = await world.post(op, "root")
    reply = await world.post(author, text, reply_to=root)
    await world.mute_word(viewer, word)
    body = await view(client, root, await world.token(viewer))
    shown = [n["id"] for n in iter_nodes(body["focal"]["replies"])]
    assert (str(reply) not in shown) == hidden


async def test_own_posts_are_never_muted(client, world):
    op, viewer = await world.account(), await world.account()
    root = await world.post(op, "root")
    mine = await world.post(viewer, "my spoiler", reply_to=root)
    await world.mute_word(viewer, "spoiler")
    body = await view(client, root, await world.token(viewer))
    assert [n["id"] for n in iter_nodes(body["focal"]["replies"])] == [str(mine)]


async def test_filtering_before_limiting(client, world):
    """A page holds `branching` visible replies when that many exist, however many the
    viewer's rules hide in between."""
    op, viewer, pest = await world.accounts(3)
    root = await world.post(op, "root")
    visible = []
    for i in range(12):
        await world.post(pest, f"pest {i}", reply_to=root, rank_key=100 - 2 * i)
        visible.append(await world.post(op, f"good {i}", reply_to=root, rank_key=99 - 2 * i))
    await world.relate("blocks", viewer, pest)
    body = await view(client, root, await world.token(viewer), branching=5)
    items = body["focal"]["replies"]["items"]
    assert [n["type"] for n in items] == ["post"] * 5
    assert "pest" not in str(items)


async def _identical_404(a, b):
    assert a.status == b.status == 404
    assert await a.read() == await b.read()
    # Date and X-Request-Id (random per request: independent of the post) aside
    strip = lambda r: {k: v for k, v in r.headers.items()  # noqa: E731
                       if k.lower() not in ("date", "x-request-id")}
    assert strip(a) == strip(b)


@pytest.mark.parametrize("name, setup, reason", [c for c in CASES if c[2]],
                         ids=[c[0] for c in CASES if c[2]])
async def test_hidden_focal_is_the_same_404_as_a_missing_post(client, world, name, setup, reason):
    viewer, author = await world.account(), await world.account()
    post = await world.post(author, "focal")
    await setup(world, viewer, author)
    headers = {"Authorization": f"Bearer {await world.token(viewer)}"}
    hidden = await client.get(f"/v1/conversations/{post}", headers=headers)
    missing = await client.get("/v1/conversations/987654321", headers=headers)
    await _identical_404(hidden, missing)


async def test_suspended_focal_is_the_same_404_for_anonymous(client, world):
    author = await world.account()
    post = await world.post(author, "focal")
    await account_writes.update_account(world.db, author, state="suspended")
    await _identical_404(await client.get(f"/v1/conversations/{post}"),
                         await client.get("/v1/conversations/987654321"))


async def test_cursor_of_another_viewer_is_rejected(client, world):
    op, viewer = await world.account(), await world.account()
    root = await world.post(op, "root")
    await world.fan(op, root, 6)
    body = await view(client, root, branching=2)  # anonymous
    cursor = body["focal"]["replies"]["more"]["cursor"]
    resp = await client.get(f"/v1/conversations/{root}/replies", params={"cursor": cursor},
                            headers={"Authorization": f"Bearer {await world.token(viewer)}"})
    assert resp.status == 400 and "another viewer" in (await resp.json())["error"]["message"]


async def test_refills_fill_a_page_when_many_hidden_rank_first(client, world):
    """Anonymous viewers fetch no extra rows; hidden ones are made up by refills."""
    op, shy = await world.account(), await world.account(protected=True)
    root = await world.post(op, "root")
    for i in range(12):
        await world.post(shy, f"protected {i}", reply_to=root, rank_key=100 - i)
    other = await world.account()
    good = [await world.post(other, f"good {i}", reply_to=root, rank_key=50 - i) for i in range(8)]
    body = await view(client, root, branching=5)
    replies = body["focal"]["replies"]
    assert [n["id"] for n in replies["items"]] == [str(g) for g in good[:5]]
    rest = await client.get(f"/v1/conversations/{root}/replies",
                            params={"cursor": replies["more"]["cursor"]})
    assert [n["id"] for n in (await rest.json())["items"]] == [str(g) for g in good[5:]]
