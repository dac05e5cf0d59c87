"""A view is as full as its caps allow, in display order: the node budget goes breadth first,
each level's parents in the order they are shown, each up to `branching` replies; a node
within `depth` is cut with `items: []` only when the budget is spent."""
from __future__ import annotations

import random
import re

import pytest

from .helpers import iter_nodes


async def power_law_tree(world, size: int, seed: int):
    """`size` replies below a root, grown breadth first with power-law fan-outs (like the demo
    data), one node with 120 replies (more than the largest branching) and a chain deeper than
    the largest depth. The root's author never replies, and every rank key is 0, so the order
    under a parent is by id, newest first. Returns (root, {post: [replies, oldest first]})."""
    rng = random.Random(seed)
    host = await world.account()
    authors = await world.accounts(8)
    root = await world.post(host, "root")
    children: dict[int, list[int]] = {root: []}
    made = 0

    async def reply(parent: int) -> int:
        nonlocal made
        child = await world.post(rng.choice(authors), f"r{made}", reply_to=parent)
        children[parent].append(child)
        children[child] = []
        made += 1
        return child

    chain = root
    for _ in range(26):  # deeper than depth=20
        chain = await reply(chain)
    wide = await reply(root)
    for _ in range(120):
        await reply(wide)
    frontier = [(root, 0)]
    while frontier and made < size:
        node, level = frontier.pop(0)
        k = int(6.0 * 0.8 ** level * ((1.0 - rng.random()) ** -(1 / 1.3) - 1.0))
        k = max(k, 12) if level == 0 else k
        for _ in range(min(k, size - made)):
            frontier.append((await reply(node), level + 1))
    return root, children


def expected_view(root: int, children: dict[int, list[int]], depth: int, branching: int,
                  max_nodes: int) -> dict[int, list[int]]:
    """The rule: breadth first, parents in display order, each up to `branching` of its
    replies (newest first here), until `max_nodes` nodes are shown."""
    shown: dict[int, list[int]] = {}
    budget, level, frontier = max_nodes, 0, [root]
    while frontier and level < depth and budget > 0:
        nxt = []
        for parent in frontier:
            take = sorted(children[parent], reverse=True)[:min(branching, budget)]
            budget -= len(take)
            if take:
                shown[parent] = take
            nxt += take
        frontier, level = nxt, level + 1
    return shown


def shown_tree(replies, parent: str, out: dict[str, list[str]], cut: list[str], level: int,
               depth: int) -> None:
    if not replies:
        return
    if replies["items"]:
        out[parent] = [item["id"] for item in replies["items"]]
    elif replies["more"] and level < depth:
        cut.append(parent)
    for item in replies["items"]:
        shown_tree(item["replies"], item["id"], out, cut, level + 1, depth)


@pytest.fixture(scope="module")
async def tree(world):
    return await power_law_tree(world, 648, seed=12)


@pytest.mark.parametrize("depth,branching,max_nodes", [
    (20, 100, 1000),   # the view: the caps allow more than the tree holds
    (20, 100, 300),    # the budget runs out inside a level
    (6, 10, 300),      # the defaults
    (3, 5, 40),
])
async def test_view_fills_to_its_caps_breadth_first(client, tree, depth, branching, max_nodes):
    root, children = tree
    resp = await client.get(f"/v1/conversations/{root}", params={
        "depth": depth, "branching": branching, "max_nodes": max_nodes})
    assert resp.status == 200
    body = await resp.json()
    assert body["partial"] is False
    # still one query per tree level (no refill rounds: nothing is hidden from this viewer)
    trips = int(re.search(r"round_trips=(\d+)", resp.headers["Server-Timing"]).group(1))
    assert trips <= depth + 3
    got: dict[str, list[str]] = {}
    cut: list[str] = []
    shown_tree(body["focal"]["replies"], str(root), got, cut, 0, depth)
    want = expected_view(root, children, depth, branching, max_nodes)
    assert got == {str(k): [str(i) for i in v] for k, v in want.items()}
    nodes = sum(1 for _ in iter_nodes(body["focal"]["replies"]))
    assert nodes == min(max_nodes, sum(len(v) for v in want.values()))
    if nodes < max_nodes:
        assert cut == [], "nodes within depth cut while the budget was not spent"


async def test_viewer_whose_rules_hide_rows_still_fills(client, world, tree):
    """Blocked authors' replies are hidden: the budget they leave goes to the next parents."""
    root, children = tree
    viewer = await world.account()
    rows = await world.db.fetch(
        "SELECT id, author_id FROM posts WHERE conversation_id = $1", root)
    author_of = {r["id"]: r["author_id"] for r in rows}
    blocked = sorted({a for p, a in author_of.items() if a != author_of[root]})[:2]
    for author in blocked:
        await world.relate("blocks", viewer, author)
    token = await world.token(viewer)
    resp = await client.get(f"/v1/conversations/{root}",
                            params={"depth": 20, "branching": 100, "max_nodes": 1000},
                            headers={"Authorization": f"Bearer {token}"})
    body = await resp.json()
    got: dict[str, list[str]] = {}
    cut: list[str] = []
    shown_tree(body["focal"]["replies"], str(root), got, cut, 0, 20)
    assert body["partial"] is False and cut == []
    shown = {i for ids in got.values() for i in ids}
    # every visible post within depth 20 whose ancestors are all shown (posts or tombstones),
    # unless its parent shows `branching` replies already
    parent_of = {c: p for p, cs in children.items() for c in cs}

    def ancestors(post: int) -> list[int]:
        out = []
        while parent_of.get(post, root) != root:
            post = parent_of[post]
            out.append(post)
        return out

    reachable = {str(p) for p, a in author_of.items()
                 if p != root and a not in blocked and len(ancestors(p)) < 20
                 and all(str(x) in shown for x in ancestors(p))
                 and len(got.get(str(parent_of[p]), ())) < 100}
    assert reachable <= shown
    assert len(shown) < 1000
