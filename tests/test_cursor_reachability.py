"""Property: from a conversation view, following every cursor reaches every reply exactly once,
also when new replies arrive between page requests."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from .helpers import collect_all_replies

trees = st.integers(min_value=1, max_value=40).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=n, max_size=n),  # parent picks
    st.lists(st.integers(min_value=0, max_value=3), min_size=n, max_size=n),      # rank keys
    st.lists(st.booleans(), min_size=n, max_size=n),                              # deleted?
))
views = st.fixed_dictionaries({
    "depth": st.integers(min_value=0, max_value=4),
    "branching": st.integers(min_value=1, max_value=4),
    "max_nodes": st.integers(min_value=1, max_value=15),
    "sort": st.sampled_from(["ranked", "newest", "oldest"]),
})


async def build(world, tree):
    """Node 0 is the root; node i replies to a random earlier node. Returns ids and the set of
    replies an anonymous viewer must reach: the live ones, and deleted ones that still carry
    live replies below them (tombstones)."""
    n, picks, ranks, deleted = tree
    author = await world.account()
    ids = [await world.post(author, "root")]
    parent_of = [None]
    for i in range(1, n):
        parent = picks[i] % i
        parent_of.append(parent)
        ids.append(await world.post(author, f"r{i}", reply_to=ids[parent], rank_key=ranks[i]))
    for i in range(n - 1, 0, -1):  # leaves first, so counters ripple correctly
        if deleted[i]:
            await world.delete(ids[i])
    listed = [False] * n
    for i in range(n - 1, 0, -1):
        listed[i] = listed[i] or not deleted[i]
        if listed[i] and parent_of[i] is not None:
            listed[parent_of[i]] = True
    return author, ids, {str(ids[i]) for i in range(1, n) if listed[i]}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, view=views)
async def test_every_reply_reached_exactly_once(client, world, tree, view):
    _, ids, expected = await build(world, tree)
    resp = await client.get(f"/v1/conversations/{ids[0]}", params=view)
    assert resp.status == 200
    seen = await collect_all_replies(client, ids[0], await resp.json())
    assert len(seen) == len(set(seen)), "a reply was reached twice"
    assert set(seen) == expected


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, view=views, seed=st.integers(min_value=0, max_value=2**32))
async def test_reachability_while_replies_arrive(client, world, tree, view, seed):
    author, ids, expected = await build(world, tree)
    rng = random.Random(seed)
    known = list(ids)
    new_ids: set[str] = set()

    async def reply_somewhere():
        for _ in range(rng.randint(0, 3)):
            new = await world.post(author, "late", reply_to=rng.choice(known),
                                   rank_key=rng.randint(0, 3))
            known.append(new)
            new_ids.add(str(new))

    resp = await client.get(f"/v1/conversations/{ids[0]}", params=view)
    seen = await collect_all_replies(client, ids[0], await resp.json(), between=reply_somewhere)
    assert len(seen) == len(set(seen)), "a reply was reached twice"
    assert expected <= set(seen), f"replies lost: {expected - set(seen)}"
    # anything else reached arrived late, or is a deleted post that a late reply relisted
    assert set(seen) - expected <= new_ids | {str(i) for i in ids}
