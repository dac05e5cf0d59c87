"""Quality sections: what demotes a reply, exact counts, paging a section, staying current
when labels, account flags and relations change, and who is never demoted."""
from __future__ import annotations

from storage import account_writes, label_writes

from .helpers import collect_all_replies, iter_nodes


async def view(client, post_id, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get(f"/v1/conversations/{post_id}", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def sections(body):
    s = body["focal"]["replies"]["sections"] if body["focal"]["replies"] else {}
    return {k: (v["count"] if v else 0) for k, v in s.items()}


def main_ids(body):
    return [n["id"] for n in body["focal"]["replies"]["items"]] if body["focal"]["replies"] else []


async def section_page(client, root, body, name):
    cursor = body["focal"]["replies"]["sections"][name]["cursor"]
    resp = await client.get(f"/v1/conversations/{root}/replies", params={"cursor": cursor})
    assert resp.status == 200
    return [n["id"] for n in iter_nodes(await resp.json())]


async def test_spam_label_moves_a_reply_to_low_quality_and_back(client, world):
    op, other = await world.accounts(2)
    root = await world.post(op, "root")
    keep = await world.post(other, "fine", reply_to=root)
    spam = await world.post(other, "buy now", reply_to=root)
    await label_writes.upsert_label(world.db, spam, "spam", 0.9)
    body = await view(client, root)
    assert main_ids(body) == [str(keep)]
    assert sections(body) == {"low_quality": 1, "offensive": 0}
    assert body["focal"]["counts"]["replies"] == 2
    assert await section_page(client, root, body, "low_quality") == [str(spam)]
    await label_writes.upsert_label(world.db, spam, "spam", 0.2)  # under the threshold
    body = await view(client, root)
    assert sorted(main_ids(body)) == sorted([str(keep), str(spam)])
    assert sections(body) == {"low_quality": 0, "offensive": 0}


async def test_abusive_label_is_offensive_and_outranks_spam(client, world):
    op, other = await world.accounts(2)
    root = await world.post(op, "root")
    bad = await world.post(other, "rude", reply_to=root)
    await label_writes.upsert_label(world.db, bad, "spam", 0.95)
    await label_writes.upsert_label(world.db, bad, "abusive", 0.85)
    body = await view(client, root)
    assert sections(body) == {"low_quality": 0, "offensive": 1}
    assert await section_page(client, root, body, "offensive") == [str(bad)]
    await label_writes.delete_label(world.db, bad, "abusive")
    assert sections(await view(client, root)) == {"low_quality": 1, "offensive": 0}


async def test_duplicate_text_is_low_quality(client, world):
    op, a, b = await world.accounts(3)
    root = await world.post(op, "root")
    first = await world.post(a, "Great point!", reply_to=root)
    copy = await world.post(b, "great   POINT", reply_to=root)
    body = await view(client, root)
    assert main_ids(body) == [str(first)]
    assert await section_page(client, root, body, "low_quality") == [str(copy)]


async def test_thin_new_account_is_low_quality_until_it_gets_an_avatar(client, world):
    op = await world.account()
    thin = await world.account(has_avatar=False)
    verified = await world.account(has_avatar=False, verified=True)
    root = await world.post(op, "root")
    t = await world.post(thin, "hi from a new account", reply_to=root)
    v = await world.post(verified, "hi, verified", reply_to=root)
    body = await view(client, root)
    assert main_ids(body) == [str(v)] and sections(body)["low_quality"] == 1
    await account_writes.update_account(world.db, thin, has_avatar=True)
    assert sorted(main_ids(await view(client, root))) == sorted([str(t), str(v)])


async def test_author_shunned_by_participants_is_low_quality(client, world):
    op, troll = await world.accounts(2)
    participants = await world.accounts(3)
    root = await world.post(op, "root")
    for p in participants:
        await world.post(p, f"hello from {p}", reply_to=root)
    jab = await world.post(troll, "a jab", reply_to=root)
    await world.relate("blocks", participants[0], troll)
    await world.relate("mutes", participants[1], troll)
    assert str(jab) in main_ids(await view(client, root))      # two are not enough
    await world.relate("blocks", participants[2], troll)
    body = await view(client, root)
    assert str(jab) not in main_ids(body) and sections(body)["low_quality"] == 1
    from storage import relation_writes
    await relation_writes.remove_relation(world.db, "blocks", participants[2], troll)
    assert str(jab) in main_ids(await view(client, root))


async def test_blocks_by_non_participants_do_not_count(client, world):
    op, troll = await world.accounts(2)
    outsiders = await world.accounts(3)
    root = await world.post(op, "root")
    jab = await world.post(troll, "a jab", reply_to=root)
    for o in outsiders:
        await world.relate("blocks", o, troll)
    assert str(jab) in main_ids(await view(client, root))


async def test_a_blocker_joining_the_conversation_counts(client, world):
    op, troll = await world.accounts(2)
    later = await world.accounts(3)
    root = await world.post(op, "root")
    jab = await world.post(troll, "a jab", reply_to=root)
    for p in later:
        await world.relate("blocks", p, troll)
    for p in later:  # they block first, take part afterwards
        await world.post(p, f"joining {p}", reply_to=root)
    assert str(jab) not in main_ids(await view(client, root))


async def test_never_demoted_for_focal_author_viewer_and_follows(client, world):
    op, me, friend, stranger = await world.accounts(4)
    root = await world.post(op, "root")
    replies = {}
    for who, name in ((op, "op"), (me, "me"), (friend, "friend"), (stranger, "stranger")):
        replies[name] = await world.post(who, f"spammy reply by {name}", reply_to=root)
        await label_writes.upsert_label(world.db, replies[name], "spam", 0.99)
    await world.relate("follows", me, friend)
    anon = await view(client, root)
    assert main_ids(anon) == [str(replies["op"])]      # the focal author is never demoted
    assert sections(anon)["low_quality"] == 3
    token = await world.token(me)
    mine = await view(client, root, token)
    assert main_ids(mine) == [str(replies[n]) for n in ("op", "me", "friend")]
    assert sections(mine)["low_quality"] == 1          # exact: the promoted ones left it
    cursor = mine["focal"]["replies"]["sections"]["low_quality"]["cursor"]
    resp = await client.get(f"/v1/conversations/{root}/replies", params={"cursor": cursor},
                            headers={"Authorization": f"Bearer {token}"})
    assert [n["id"] for n in (await resp.json())["items"]] == [str(replies["stranger"])]


async def test_every_reply_reached_once_across_main_list_and_sections(client, world):
    op, a, b = await world.accounts(3)
    root = await world.post(op, "root")
    ids = []
    for i in range(30):
        post = await world.post(a if i % 2 else b, f"reply number {i}", reply_to=root)
        ids.append(str(post))
        if i % 3 == 0:
            await label_writes.upsert_label(world.db, post, "spam", 0.9)
        if i % 7 == 0:
            await label_writes.upsert_label(world.db, post, "abusive", 0.9)
    body = await view(client, root, branching=4)
    seen = await collect_all_replies(client, root, body)
    assert sorted(seen) == sorted(ids)
