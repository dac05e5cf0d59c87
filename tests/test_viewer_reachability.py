"""Property: for random trees, relations and labels, no post by an account the viewer blocks,
is blocked by, or mutes appears anywhere in any page or section, and every reply the viewer
may see is reached exactly once across the main list and the sections."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from storage import account_writes, label_writes

from .helpers import cursors_in, iter_nodes

AUTHORS = 6  # author 0 writes the root; author 1 is the viewer
trees = st.integers(min_value=1, max_value=30).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.integers(0, 10**6), min_size=n, max_size=n),          # parent picks
    st.lists(st.integers(0, AUTHORS - 1), min_size=n, max_size=n),    # authors
    st.lists(st.integers(0, 3), min_size=n, max_size=n),              # rank keys
    st.lists(st.sampled_from([None, None, None, "spam", "abusive"]), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),                  # deleted?
))
relations = st.fixed_dictionaries({
    "blocks": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "blocked_by": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "mutes": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "follows": st.sets(st.integers(0, AUTHORS - 1).filter(lambda a: a != 1), max_size=3),
    "protected": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "suspended": st.sets(st.integers(2, AUTHORS - 1), max_size=1),
})
views = st.fixed_dictionaries({
    "depth": st.integers(0, 3), "branching": st.integers(1, 4),
    "max_nodes": st.integers(1, 12), "sort": st.sampled_from(["ranked", "newest", "oldest"]),
})


async def walk(client, root, body, headers) -> list[dict]:
    """Every node reached from the view by following every cursor."""
    nodes = list(iter_nodes(body["focal"]["replies"]))
    queue = list(cursors_in(body["focal"]["replies"]))
    while queue:
        resp = await client.get(f"/v1/conversations/{root}/replies",
                                params={"cursor": queue.pop(0)}, headers=headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        nodes += list(iter_nodes(page))
        queue += list(cursors_in(page))
    return nodes


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, rel=relations, view=views)
async def test_hidden_authors_never_shown_and_visible_replies_reached_once(client, world, tree,
                                                                           rel, view):
    n, picks, author_of, ranks, labels, deleted = tree
    people = await world.accounts(AUTHORS)
    viewer = people[1]
    for kind in ("blocks", "mutes", "follows"):
        for i in rel[kind]:
            await world.relate(kind, viewer, people[i])
    for i in rel["blocked_by"]:
        await world.relate("blocks", people[i], viewer)
    for i in rel["protected"]:
        await account_writes.update_account(world.db, people[i], protected=True)

    ids = [await world.post(people[0], "root")]
    for i in range(1, n):
        ids.append(await world.post(people[author_of[i]], f"reply {i}",
                                    reply_to=ids[picks[i] % i], rank_key=ranks[i]))
        if labels[i]:
            await label_writes.upsert_label(world.db, ids[i], labels[i], 0.95)
    for i in range(n - 1, 0, -1):
        if deleted[i]:
            await world.delete(ids[i])
    for i in rel["suspended"]:
        await account_writes.update_account(world.db, people[i], state="suspended")

    hidden_authors = {people[i] for i in rel["blocks"] | rel["blocked_by"] | rel["mutes"]
                      | rel["suspended"]}
    hidden_authors |= {people[i] for i in rel["protected"] - rel["follows"]}
    if people[0] in hidden_authors:
        return  # the focal post itself is hidden: a 404, covered elsewhere
    visible = {str(ids[i]) for i in range(1, n)
               if not deleted[i] and people[author_of[i]] not in hidden_authors}

    headers = {"Authorization": f"Bearer {await world.token(viewer)}"}
    resp = await client.get(f"/v1/conversations/{ids[0]}", params=view, headers=headers)
    assert resp.status == 200, await resp.text()
    nodes = await walk(client, ids[0], await resp.json(), headers)
    posts = [node for node in nodes if node["type"] == "post"]
    shunned = {str(people[i]) for i in rel["blocks"] | rel["blocked_by"] | rel["mutes"]}
    assert not [p for p in posts if p["author"]["id"] in shunned]
    reached = [p["id"] for p in posts]
    assert len(reached) == len(set(reached)), "a reply was reached twice"
    assert set(reached) == visible
    tombstones = [t["id"] for t in nodes if t["type"] == "tombstone"]
    assert len(tombstones) == len(set(tombstones))
