"""sort=ranked: the focal author's replies, then the viewer's, then the followed accounts',
then the rest by engagement score (rank key), ties by id; cursors stay exact across tiers."""
from __future__ import annotations

from storage.section_rules import rank_key

from .helpers import collect_all_replies


async def view(client, post_id, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get(f"/v1/conversations/{post_id}", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def ids(replies):
    return [n["id"] for n in replies["items"]]


async def test_tiers_then_score_then_id(client, world):
    op, me, friend, x, y = await world.accounts(5)
    root = await world.post(op, "root")
    top = await world.post(x, "popular", reply_to=root, rank_key=900)
    tie_old = await world.post(y, "tie a", reply_to=root, rank_key=500)
    tie_new = await world.post(x, "tie b", reply_to=root, rank_key=500)
    by_friend = await world.post(friend, "friend's", reply_to=root, rank_key=1)
    by_me = await world.post(me, "mine", reply_to=root, rank_key=0)
    by_op = await world.post(op, "op's own", reply_to=root, rank_key=0)
    await world.relate("follows", me, friend)
    body = await view(client, root, await world.token(me))
    assert ids(body["focal"]["replies"]) == [str(i) for i in (
        by_op, by_me, by_friend, top, tie_new, tie_old)]
    anon = await view(client, root)
    assert ids(anon["focal"]["replies"]) == [str(i) for i in (
        by_op, top, tie_new, tie_old, by_friend, by_me)]


async def test_focal_author_chain_comes_first_at_every_level(client, world):
    op, x = await world.accounts(2)
    root = await world.post(op, "root")
    other = await world.post(x, "loud", reply_to=root, rank_key=10_000)
    chain = [await world.post(op, "1/3", reply_to=root)]
    await world.post(x, "interjection", reply_to=chain[0], rank_key=10_000)
    chain.append(await world.post(op, "2/3", reply_to=chain[0]))
    chain.append(await world.post(op, "3/3", reply_to=chain[1]))
    body = await view(client, root)
    node, got = body["focal"], []
    while node["replies"]:
        node = node["replies"]["items"][0]
        got.append(node["id"])
    assert got == [str(i) for i in chain]
    assert ids(body["focal"]["replies"]) == [str(chain[0]), str(other)]


async def test_head_longer_than_a_page_pages_exactly_once(client, world):
    op, me, x = await world.accounts(3)
    root = await world.post(op, "root")
    mine = [await world.post(me, f"mine {i}", reply_to=root, rank_key=i) for i in range(7)]
    rest = [await world.post(x, f"rest {i}", reply_to=root, rank_key=100 + i) for i in range(6)]
    token = await world.token(me)
    body = await view(client, root, token, branching=3)
    assert ids(body["focal"]["replies"]) == [str(i) for i in sorted(mine, reverse=True)[:3]]
    seen, pages = ids(body["focal"]["replies"]), 0
    cursor = body["focal"]["replies"]["more"]["cursor"]
    while cursor:
        resp = await client.get(f"/v1/conversations/{root}/replies", params={"cursor": cursor},
                                headers={"Authorization": f"Bearer {token}"})
        page = await resp.json()
        seen += ids(page)
        cursor = page["more"]["cursor"] if page["more"] else None
        pages += 1
    assert seen == [str(i) for i in sorted(mine, reverse=True) + sorted(rest, reverse=True)]


def test_rank_key_formula():
    assert rank_key(0, 0, 0) == 0
    assert rank_key(1, 0, 0) == 693                      # 1000 * ln 2
    assert rank_key(0, 1, 0) == rank_key(2, 0, 0)         # a repost weighs two likes
    assert rank_key(0, 0, 1) == rank_key(3, 0, 0)         # a quote weighs three
    assert rank_key(1000, 0, 0) < 2 * rank_key(40, 0, 0)  # logarithmic


async def test_newest_sort_keeps_chronology_but_lifts_the_viewers_demoted_replies(client, world):
    from storage import label_writes
    op, me, x = await world.accounts(3)
    root = await world.post(op, "root")
    a = await world.post(x, "a", reply_to=root)
    spam_mine = await world.post(me, "my spam", reply_to=root)
    await label_writes.upsert_label(world.db, spam_mine, "spam", 0.99)
    b = await world.post(x, "b", reply_to=root)
    token = await world.token(me)
    body = await view(client, root, token, sort="newest")
    assert ids(body["focal"]["replies"]) == [str(spam_mine), str(b), str(a)]
