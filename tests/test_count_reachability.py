"""Property: every count a view shows (`more.count`, `sections.*.count`, in the view and in
every page) is what its cursor reaches for the viewer who sees it, when it says `exact`; and
when it does not, it is an upper bound that exceeds what is reached only by replies this
viewer's rules hide in that list (so no reply is counted twice, none lifted out is counted).

Random trees, authors, labels, deletions, relations (follows, blocks both ways, mutes, muted
words, protected and suspended authors), focal posts and view limits. Every cursor is walked
to the end of its chain of pages."""
from __future__ import annotations

from hypothesis import HealthCheck, event, given, note, settings, strategies as st

from storage import account_writes, label_writes

from .helpers import iter_nodes

AUTHORS = 6  # author 0 writes the root; author 1 is the viewer
SECTIONS = {"low_quality": 1, "offensive": 2}
trees = st.integers(min_value=5, max_value=30).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.integers(0, 10**6), min_size=n, max_size=n),          # parent picks
    st.lists(st.integers(0, AUTHORS - 1), min_size=n, max_size=n),    # authors
    st.lists(st.integers(0, 3), min_size=n, max_size=n),              # rank keys
    st.lists(st.sampled_from([None, None, "spam", "spam", "abusive"]), min_size=n, max_size=n),
    st.lists(st.sampled_from([False, False, False, True]), min_size=n, max_size=n),  # deleted?
    st.lists(st.sampled_from([False, False, False, True]), min_size=n, max_size=n),  # "spoiler"?
))
relations = st.fixed_dictionaries({
    "anonymous": st.sampled_from([False, False, False, True]),
    "blocks": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "blocked_by": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "mutes": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "follows": st.sets(st.integers(0, AUTHORS - 1).filter(lambda a: a != 1), max_size=3),
    "protected": st.sets(st.integers(2, AUTHORS - 1), max_size=2),
    "suspended": st.sets(st.integers(2, AUTHORS - 1), max_size=1),
    "muted_word": st.booleans(),
})
views = st.fixed_dictionaries({
    "depth": st.integers(0, 3), "branching": st.integers(1, 4),
    "max_nodes": st.integers(1, 12), "sort": st.sampled_from(["ranked", "newest", "oldest"]),
})


def count_refs(replies):
    """(ref, parent id, list) for every count shown in a Replies object and below; list is
    None for the parent's main list, else a section name."""
    if not replies:
        return
    if replies["more"]:
        yield replies["more"], None
    for name, ref in replies["sections"].items():
        if ref:
            yield ref, name
    for item in replies["items"]:
        sub = item.get("replies")
        for ref, section in count_refs(sub):
            yield ref, section


def with_parents(replies, parent: str, section: int = 0):
    """(count object, the id of the node whose list it counts, that list's stored section) for
    every count in a Replies object and below; `section` is the list of `replies` itself."""
    if not replies:
        return
    if replies["more"]:
        yield replies["more"], parent, section
    for name, ref in replies["sections"].items():
        if ref:
            yield ref, parent, SECTIONS[name]
    for item in replies["items"]:
        yield from with_parents(item.get("replies"), item["id"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, rel=relations, view=views,
       focal_pick=st.one_of(st.just(0), st.just(0), st.integers(0, 10**6)))
async def test_every_shown_count_is_what_its_cursor_reaches(client, world, tree, rel, view,
                                                            focal_pick):
    note(f"tree={tree!r} rel={rel!r} view={view!r} focal_pick={focal_pick}")
    n, picks, author_of, ranks, labels, deleted, spoiler = tree
    people = await world.accounts(AUTHORS)
    viewer = people[1]
    for kind in ("blocks", "mutes", "follows"):
        for i in rel[kind]:
            await world.relate(kind, viewer, people[i])
    for i in rel["blocked_by"]:
        await world.relate("blocks", people[i], viewer)
    for i in rel["protected"]:
        await account_writes.update_account(world.db, people[i], protected=True)
    if rel["muted_word"]:
        await world.mute_word(viewer, "spoiler")

    ids = [await world.post(people[0], "root")]
    parent_of = [None]
    for i in range(1, n):
        parent_of.append(picks[i] % i)
        text = f"reply {i} spoiler" if spoiler[i] else f"reply {i}"
        ids.append(await world.post(people[author_of[i]], text, reply_to=ids[parent_of[i]],
                                    rank_key=ranks[i]))
        if labels[i]:
            await label_writes.upsert_label(world.db, ids[i], labels[i], 0.95)
    for i in range(n - 1, 0, -1):
        if deleted[i]:
            await world.delete(ids[i])
    for i in rel["suspended"]:
        await account_writes.update_account(world.db, people[i], state="suspended")

    anonymous = rel["anonymous"]
    hidden_authors = {people[i] for i in rel["suspended"]}
    if anonymous:
        hidden_authors |= {people[i] for i in rel["protected"]}
    else:
        hidden_authors |= {people[i] for i in rel["blocks"] | rel["blocked_by"] | rel["mutes"]}
        hidden_authors |= {people[i] for i in rel["protected"] - rel["follows"]}

    def visible(i: int) -> bool:
        author = people[author_of[i]] if i else people[0]
        if (i and deleted[i]) or author in hidden_authors:
            return False
        mutes_word = rel["muted_word"] and not anonymous and spoiler[i] and author != viewer
        return not mutes_word

    focal = focal_pick % n
    if not visible(focal):
        return  # a 404, covered elsewhere
    rows = await world.db.fetch(
        "SELECT id, in_reply_to_id, section, listed FROM posts WHERE conversation_id = $1",
        ids[0])
    index = {post_id: i for i, post_id in enumerate(ids)}
    # the viewer's hidden listed replies per (parent, stored section): all a bound may add
    hidden: dict[tuple[str, int], int] = {}
    for r in rows:
        if r["in_reply_to_id"] is not None and r["listed"] and not visible(index[r["id"]]):
            key = (str(r["in_reply_to_id"]), r["section"])
            hidden[key] = hidden.get(key, 0) + 1

    headers = {} if anonymous else {"Authorization": f"Bearer {await world.token(viewer)}"}
    resp = await client.get(f"/v1/conversations/{ids[focal]}", params=view, headers=headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()

    pages: dict[str, dict] = {}

    async def page(cursor: str) -> dict:
        if cursor not in pages:
            resp = await client.get(f"/v1/conversations/{ids[focal]}/replies",
                                    params={"cursor": cursor}, headers=headers)
            assert resp.status == 200, await resp.text()
            pages[cursor] = await resp.json()
        return pages[cursor]

    async def reached(cursor: str) -> tuple[int, int]:
        """(items, posts among them) across the chain of pages from `cursor`."""
        items = posts = 0
        while cursor is not None:
            got = await page(cursor)
            items += len(got["items"])
            posts += sum(1 for item in got["items"] if item["type"] == "post")
            cursor = got["more"]["cursor"] if got["more"] else None
        return items, posts

    # breadth first over every Replies object reached: the view's, then every page's
    queue = [(body["focal"]["replies"], str(ids[focal]), 0)]
    checked = 0
    while queue:
        replies, parent, list_section = queue.pop(0)
        for ref, owner, section in with_parents(replies, parent, list_section):
            items, posts = await reached(ref["cursor"])
            slack = hidden.get((owner, section), 0)
            where = f"list {section} of {owner}: count {ref['count']}, reached {items}"
            note(where)
            assert items > 0 or not ref["exact"], f"a cursor promising {where}"
            if ref["exact"]:
                assert ref["count"] == items, where
            else:
                assert items <= ref["count"] <= posts + slack, f"{where}, hidden {slack}"
            checked += 1
            event(f"exact={ref['exact']}")
            queue.append((await page(ref["cursor"]), owner, section))
    event(f"counts checked: {min(checked, 20) // 5 * 5}+")
    assert checked >= sum(1 for _ in count_refs(body["focal"]["replies"]))
