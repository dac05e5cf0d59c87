"""Likes and reposts over HTTP (PUT/DELETE /v1/posts/{id}/like|repost), GET /v1/posts/{id} and
GET /v1/me, against the real app and PostgreSQL: idempotency, the uniform 404, the viewer's
own `liked`/`reposted` in renders (one query per page), the engagement score feeding
`sort=ranked` after a fold, and exact counts under concurrent likers."""
from __future__ import annotations

import asyncio
import re

from service.http import reaction_folder
from storage import counter_writes, reactions


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _signed_in(world) -> tuple[int, dict[str, str]]:
    me = await world.account()
    return me, bearer(await world.token(me))


async def _fold(client) -> None:
    await reaction_folder.fold_once(client.server.app)


async def test_like_unlike_are_idempotent(client, world):
    author = await world.account()
    post = await world.post(author, "like me")
    _, auth = await _signed_in(world)
    for _ in range(2):
        resp = await client.put(f"/v1/posts/{post}/like", headers=auth)
        assert resp.status == 200
        assert await resp.json() == {"id": str(post), "liked": True, "reposted": False,
                                     "counts": {"likes": 1, "reposts": 0}}
    resp = await client.put(f"/v1/posts/{post}/repost", headers=auth)
    assert (await resp.json())["counts"] == {"likes": 1, "reposts": 1}
    for _ in range(2):
        resp = await client.delete(f"/v1/posts/{post}/like", headers=auth)
        assert resp.status == 200
        body = await resp.json()
        assert (body["liked"], body["reposted"], body["counts"]["likes"]) == (False, True, 0)
    assert (await client.put(f"/v1/posts/{post}/like")).status == 401


async def test_reacting_to_a_hidden_post_is_the_missing_404(client, world):
    author = await world.account()
    post = await world.post(author, "not for you")
    me, auth = await _signed_in(world)
    await world.relate("blocks", author, me)
    hidden = await client.put(f"/v1/posts/{post}/like", headers=auth)
    missing = await client.put("/v1/posts/987654321987/like", headers=auth)
    assert hidden.status == missing.status == 404
    assert await hidden.read() == await missing.read()
    assert await counter_writes.recount_reactions(world.db, post) == (0, 0)


async def test_get_post_is_the_node_a_conversation_shows(client, world):
    author = await world.account()
    root = await world.post(author, "root")
    reply = await world.post(author, "reply", reply_to=root)
    resp = await client.get(f"/v1/posts/{reply}")
    assert resp.status == 200
    post = await resp.json()
    conv = await (await client.get(f"/v1/conversations/{reply}")).json()
    assert post == {**conv["focal"], "replies": None}
    assert post["liked"] is False and post["reposted"] is False
    # hidden, deleted and missing: one 404
    me, auth = await _signed_in(world)
    await world.relate("blocks", author, me)
    hidden = await client.get(f"/v1/posts/{reply}", headers=auth)
    missing = await client.get("/v1/posts/987654321987", headers=auth)
    assert hidden.status == missing.status == 404
    assert await hidden.read() == await missing.read()
    await world.delete(reply)
    assert (await client.get(f"/v1/posts/{reply}")).status == 404
    assert (await client.get(f"/v1/posts/{root}", params={"x": "1"})).status == 400


async def test_get_me(client, world):
    me, auth = await _signed_in(world)
    other = await world.account()
    await world.relate("follows", me, other)
    resp = await client.get("/v1/me", headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == str(me) and body["handle"] == f"user{me}"
    assert body["relations"] == {"follows": 1, "blocks": 0, "mutes": 0, "muted_words": 0}
    assert (await client.get("/v1/me")).status == 401


def _round_trips(resp) -> int:
    return int(re.search(r"round_trips=(\d+)", resp.headers["Server-Timing"]).group(1))


async def test_viewer_state_in_renders_with_one_query_per_page(client, world):
    author = await world.account()
    root = await world.post(author, "root")
    replies = await world.fan(author, root, 6)
    quoting = await world.post(author, "quoting the root", reply_to=root, quote=root)
    me, auth = await _signed_in(world)
    path = f"/v1/conversations/{root}"
    await client.get(path, headers=auth)  # loads and caches the viewer's relations
    before = await client.get(path, headers=auth)
    for post in (root, replies[1], replies[4]):
        assert (await client.put(f"/v1/posts/{post}/like", headers=auth)).status == 200
    assert (await client.put(f"/v1/posts/{replies[4]}/repost", headers=auth)).status == 200
    await client.get(path, headers=auth)  # the relations again (a write forgot them)
    after = await client.get(path, headers=auth)
    assert _round_trips(after) == _round_trips(before)  # not one query per liked post
    body = await after.json()
    assert body["focal"]["liked"] is True
    state = {n["id"]: (n["liked"], n["reposted"]) for n in body["focal"]["replies"]["items"]}
    assert state[str(replies[1])] == (True, False)
    assert state[str(replies[4])] == (True, True)
    assert state[str(replies[0])] == (False, False)
    quoted = next(n for n in body["focal"]["replies"]["items"] if n["id"] == str(quoting))
    assert quoted["quote"]["post"]["liked"] is True  # the embed carries it too
    anon = await (await client.get(path)).json()
    assert anon["focal"]["liked"] is False
    assert all(not n["liked"] for n in anon["focal"]["replies"]["items"])
    page = await client.get(f"/v1/posts/{replies[1]}", headers=auth)
    assert (await page.json())["liked"] is True


async def test_likes_feed_counts_and_ranked_order_after_a_fold(client, world):
    author = await world.account()
    root = await world.post(author, "which reply is best?")
    others = await world.accounts(3)
    replies = [await world.post(a, f"answer {i}", reply_to=root) for i, a in enumerate(others)]
    fans = await world.accounts(4)
    for fan in fans:
        await client.put(f"/v1/posts/{replies[0]}/like", headers=bearer(await world.token(fan)))
    await client.put(f"/v1/posts/{replies[1]}/repost", headers=bearer(await world.token(fans[0])))
    await _fold(client)
    body = await (await client.get(f"/v1/conversations/{root}", params={"sort": "ranked"})).json()
    order = [n["id"] for n in body["focal"]["replies"]["items"]]
    assert order == [str(replies[0]), str(replies[1]), str(replies[2])]
    counts = {n["id"]: n["counts"] for n in body["focal"]["replies"]["items"]}
    assert counts[str(replies[0])]["likes"] == 4
    assert counts[str(replies[1])]["reposts"] == 1


async def test_concurrent_likers_are_counted_exactly(client, world):
    author = await world.account()
    post = await world.post(author, "viral")
    fans = await world.accounts(40)
    auths = [bearer(await world.token(f)) for f in fans]

    async def like_twice(auth):
        for _ in range(2):
            resp = await client.put(f"/v1/posts/{post}/like", headers=auth)
            assert resp.status == 200

    await asyncio.gather(*(like_twice(a) for a in auths))
    assert await reactions.counts(world.db, [post]) == {post: (40, 0)}
    # half unlike while the other half like again, with folds among them
    folds = asyncio.gather(*(_fold(client) for _ in range(5)))
    await asyncio.gather(*(client.delete(f"/v1/posts/{post}/like", headers=a) for a in auths[:20]),
                         *(client.put(f"/v1/posts/{post}/like", headers=a) for a in auths[20:]))
    await folds
    await _fold(client)
    assert await counter_writes.recount_reactions(world.db, post) == (20, 0)
    body = await (await client.get(f"/v1/posts/{post}")).json()
    assert body["counts"]["likes"] == 20
