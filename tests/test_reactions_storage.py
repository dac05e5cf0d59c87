"""storage/reactions.py against the real PostgreSQL: idempotent likes and reposts, the viewer's
state in one query, and the counters equal to a recount under concurrent likers and unlikers
(before and after folding, with folds running among the writers)."""
from __future__ import annotations

import asyncio
import random

from storage import counter_writes, reactions
from storage.section_rules import rank_key


async def _folded(db, post_id):
    return tuple(await db.fetchrow("SELECT likes, reposts FROM post_counts WHERE post_id = $1",
                                   post_id))


async def test_like_is_idempotent_and_counted(db, world):
    author, fan = await world.account(), await world.account()
    post = await world.post(author, "likeable")
    assert await reactions.like(db, post, fan) is True
    assert await reactions.like(db, post, fan) is False  # again: no change
    assert await reactions.repost(db, post, fan) is True
    assert await reactions.counts(db, [post]) == {post: (1, 1)}
    assert await reactions.viewer_state(db, fan, [post, 999]) == {post: (True, True)}
    assert await reactions.unlike(db, post, fan) is True
    assert await reactions.unlike(db, post, fan) is False
    assert await reactions.counts(db, [post]) == {post: (0, 1)}
    assert await reactions.viewer_state(db, fan, [post]) == {post: (False, True)}
    assert await counter_writes.recount_reactions(db, post) == (0, 1)


async def test_like_of_a_missing_post_changes_nothing(db, world):
    fan = await world.account()
    assert await reactions.like(db, 987654321, fan) is False
    assert await reactions.counts(db, [987654321]) == {}


async def test_fold_moves_deltas_and_updates_the_engagement_score(db, world):
    author = await world.account()
    post = await world.post(author, "to be folded")
    fans = await world.accounts(5)
    for f in fans:
        await reactions.like(db, post, f)
    await reactions.repost(db, post, fans[0])
    while await reactions.fold(db):
        pass
    assert await _folded(db, post) == (5, 1)
    assert await db.fetchval("SELECT count(*) FROM reaction_deltas WHERE post_id = $1", post) == 0
    assert await db.fetchval("SELECT rank_key FROM posts WHERE id = $1", post) == rank_key(5, 1, 0)


async def test_counters_equal_recount_under_concurrent_likes_and_unlikes(db, world):
    author = await world.account()
    post = await world.post(author, "viral")
    fans = await world.accounts(40)
    rng = random.Random(15)
    stop = asyncio.Event()

    async def flip(fan):
        for _ in range(12):
            op = rng.choice((reactions.like, reactions.unlike, reactions.repost,
                             reactions.unrepost))
            await op(db, post, fan, shards=4)

    async def folder():
        while not stop.is_set():
            await reactions.fold(db, limit=3)  # small batches: partial folds among writers
            await asyncio.sleep(0)

    folding = asyncio.create_task(folder())
    await asyncio.gather(*(flip(f) for f in fans))
    stop.set()
    await folding
    recount = await counter_writes.recount_reactions(db, post)
    assert await reactions.counts(db, [post]) == {post: recount}
    while await reactions.fold(db):
        pass
    assert await _folded(db, post) == recount
    likers = await db.fetchval(
        "SELECT count(*) FROM reactions WHERE post_id = $1 AND kind = 1", post)
    assert recount[0] == likers
