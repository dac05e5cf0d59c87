"""Quote embeds in every state, the quotes list, and its count."""
from __future__ import annotations

import asyncpg
import pytest

from service.app import create_app
from service.resilience.faults import Faults
from storage import account_writes

from .helpers import iter_nodes


async def view(client, post_id, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get(f"/v1/conversations/{post_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def node(body, post_id):
    return next(n for n in iter_nodes(body["focal"]["replies"]) if n["id"] == str(post_id))


@pytest.fixture
async def quoting(world):
    """A root with one reply quoting a post from another conversation."""
    op, other = await world.accounts(2)
    quoted = await world.post(other, "the original")
    root = await world.post(op, "root")
    reply = await world.post(op, "look at this", reply_to=root, quote=quoted)
    return {"op": op, "other": other, "quoted": quoted, "root": root, "reply": reply}


async def test_ok_embed_carries_the_quoted_post(client, quoting):
    q = node(await view(client, quoting["root"]), quoting["reply"])["quote"]
    assert q["state"] == "ok" and q["id"] == str(quoting["quoted"])
    assert q["post"]["text"] == "the original" and q["post"]["replies"] is None


async def test_deleted_quoted_post_keeps_the_quoting_post(client, world, quoting):
    await world.delete(quoting["quoted"])
    n = node(await view(client, quoting["root"]), quoting["reply"])
    assert n["type"] == "post" and n["text"] == "look at this"
    assert n["quote"] == {"state": "deleted", "id": str(quoting["quoted"]), "post": None}


@pytest.mark.parametrize("direction", ["viewer_blocks", "author_blocks"])
async def test_block_yields_blocked(client, world, quoting, direction):
    viewer = await world.account()
    if direction == "viewer_blocks":
        await world.relate("blocks", viewer, quoting["other"])
    else:
        await world.relate("blocks", quoting["other"], viewer)
    n = node(await view(client, quoting["root"], await world.token(viewer)), quoting["reply"])
    assert n["quote"] == {"state": "blocked", "id": str(quoting["quoted"]), "post": None}


@pytest.mark.parametrize("change", [{"state": "suspended"}, {"state": "locked"},
                                    {"protected": True}])
async def test_unavailable_author_yields_unavailable(client, world, quoting, change):
    await account_writes.update_account(world.db, quoting["other"], **change)
    n = node(await view(client, quoting["root"]), quoting["reply"])
    assert n["quote"]["state"] == "unavailable" and n["quote"]["post"] is None
    assert "suspended" not in str(n) and "locked" not in str(n)


async def test_protected_author_followed_is_ok(client, world, quoting):
    viewer = await world.account()
    await account_writes.update_account(world.db, quoting["other"], protected=True)
    await world.relate("follows", viewer, quoting["other"])
    n = node(await view(client, quoting["root"], await world.token(viewer)), quoting["reply"])
    assert n["quote"]["state"] == "ok"


async def test_quote_inside_a_quote_is_id_and_state_only(client, world, quoting):
    a = await world.account()
    inner = await world.post(a, "inner")
    quoted = await world.post(a, "middle", quote=inner)
    root = await world.post(a, "root")
    reply = await world.post(a, "outer", reply_to=root, quote=quoted)
    q = node(await view(client, root), reply)["quote"]
    assert q["post"]["quote"] == {"state": "ok", "id": str(inner), "post": None}


async def test_hydration_failure_is_temporarily_unavailable_and_degraded(aiohttp_client, settings,
                                                                         quoting):
    faults = Faults(quote_hydration=asyncpg.QueryCanceledError("injected"))
    client = await aiohttp_client(create_app(settings, faults=faults))
    body = await view(client, quoting["root"])
    n = node(body, quoting["reply"])
    assert n["type"] == "post" and n["text"] == "look at this"   # never dropped for its quote
    assert n["quote"] == {"state": "temporarily_unavailable", "id": str(quoting["quoted"]),
                          "post": None}
    assert body["degraded"] == ["quotes"]
    faults.quote_hydration = None
    body = await view(client, quoting["root"])
    assert body["degraded"] == [] and node(body, quoting["reply"])["quote"]["state"] == "ok"


async def quotes_list(client, post_id, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get(f"/v1/posts/{post_id}/quotes", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def walk_quotes(client, post_id, token=None, limit=3):
    page = await quotes_list(client, post_id, token, limit=limit)
    ids, count = [i["id"] for i in page["items"]], page["count"]
    while page["cursor"]:
        page = await quotes_list(client, post_id, token, cursor=page["cursor"], limit=limit)
        ids += [i["id"] for i in page["items"]]
    return ids, count


async def test_quotes_list_newest_first_and_count_matches_for_anonymous(client, world):
    a, shy, gone, pest = await world.accounts(4)
    quoted = await world.post(a, "popular")
    quotes = [await world.post(a, f"quote {i}", quote=quoted) for i in range(7)]
    await world.post(shy, "protected quote", quote=quoted)
    await account_writes.update_account(world.db, shy, protected=True)
    await world.post(gone, "suspended quote", quote=quoted)
    await account_writes.update_account(world.db, gone, state="suspended")
    deleted = await world.post(a, "deleted quote", quote=quoted)
    await world.delete(deleted)
    await world.post(pest, "pest quote", quote=quoted)
    ids, count = await walk_quotes(client, quoted)
    assert len(ids) == len(set(ids)) == count == 8
    assert ids[1:] == [str(q) for q in reversed(quotes)]
    viewer = await world.account()
    await world.relate("blocks", viewer, pest)
    mine, _ = await walk_quotes(client, quoted, await world.token(viewer))
    assert mine == [str(q) for q in reversed(quotes)]      # pest hidden; shy unavailable


async def test_quotes_of_a_hidden_post_are_a_404(client, world):
    a = await world.account()
    quoted = await world.post(a, "x")
    await world.delete(quoted)
    resp = await client.get(f"/v1/posts/{quoted}/quotes")
    missing = await client.get("/v1/posts/424242424242/quotes")
    assert resp.status == missing.status == 404
    assert await resp.read() == await missing.read()
