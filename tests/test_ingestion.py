"""Out-of-order ingestion: every arrival order of a small tree with quotes converges to the same
conversation; pending replies attach when their parent arrives; the admin endpoint and CLI."""
from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from service.cli.arbor import main as arbor
from storage.ingestion import ImportedPost, ingest_one

ADMIN = {"Authorization": "Bearer test-admin-token"}
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
_ids = itertools.count(5_000_000_000_000)

# label: (author index, reply to, quote of, deleted?)
TREE = {
    "root": (0, None, None, False),
    "r1": (1, "root", None, True),       # deleted, keeps r2 below it: a tombstone
    "r2": (0, "r1", None, False),
    "r3": (2, "root", "r2", False),     # quotes r2
    "r4": (1, "r2", None, True),        # a deleted leaf: left out
    "q": (2, None, "root", False),      # another conversation quoting the root
}


def make_posts(authors: list[int]) -> dict[str, ImportedPost]:
    base = next(_ids) * 10
    ids = {label: base + i for i, label in enumerate(TREE)}
    return {label: ImportedPost(
        ids[label], authors[a], f"text of {label}", T0 + timedelta(minutes=i),
        ids.get(parent), ids.get(quote), T0 + timedelta(hours=1) if deleted else None)
        for i, (label, (a, parent, quote, deleted)) in enumerate(TREE.items())}


def normalized(body, labels: dict[str, str]):
    """The view with ids replaced by labels and cursors (opaque, time-stamped) by a marker."""
    text = json.dumps(body)
    for post_id, label in labels.items():
        text = text.replace(post_id, label)
    def strip(o):
        if isinstance(o, dict):
            return {k: ("<cursor>" if k == "cursor" and v else strip(v)) for k, v in o.items()}
        return [strip(x) for x in o] if isinstance(o, list) else o
    return strip(json.loads(text))


async def render(client, posts):
    labels = {str(p.id): label for label, p in posts.items()}
    resp = await client.get(f"/v1/conversations/{posts['root'].id}")
    assert resp.status == 200, await resp.text()
    quotes = await client.get(f"/v1/conversations/{posts['q'].id}")
    return normalized(await resp.json(), labels), normalized(await quotes.json(), labels)


async def test_in_order_reference(client, world):
    posts = make_posts(await world.accounts(3))
    for post in posts.values():
        assert await ingest_one(world.db, post) == "imported"
    view, quoting = await render(client, posts)
    [tomb, r3] = sorted(view["focal"]["replies"]["items"], key=lambda n: n["id"])
    assert tomb["type"] == "tombstone" and tomb["id"] == "r1"
    assert [n["id"] for n in tomb["replies"]["items"]] == ["r2"]
    assert tomb["replies"]["items"][0]["replies"] is None      # r4: a deleted leaf
    assert r3["quote"]["state"] == "ok" and r3["quote"]["post"]["id"] == "r2"
    assert view["focal"]["counts"]["quotes"] == 1
    assert quoting["focal"]["quote"]["post"]["id"] == "root"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(order=st.permutations(list(TREE)))
async def test_every_arrival_order_converges(client, world, order):
    authors = await world.accounts(3)
    reference = make_posts(authors)
    for post in reference.values():
        await ingest_one(world.db, post)
    expected = await render(client, reference)
    shuffled = make_posts(authors)
    for label in order:
        assert await ingest_one(world.db, shuffled[label]) in ("imported", "pending")
    assert await world.db.fetchval(
        "SELECT count(*) FROM pending_posts WHERE id = ANY($1::bigint[])",
        [p.id for p in shuffled.values()]) == 0
    assert await render(client, shuffled) == expected


async def test_reply_waits_for_its_parent(client, world):
    posts = make_posts(await world.accounts(3))
    assert await ingest_one(world.db, posts["r2"]) == "pending"
    assert await ingest_one(world.db, posts["r2"]) == "duplicate"
    resp = await client.get(f"/v1/conversations/{posts['r2'].id}")
    assert resp.status == 404                      # stored, but not attached yet
    assert await ingest_one(world.db, posts["root"]) == "imported"
    assert await ingest_one(world.db, posts["r1"]) == "imported"   # attaches r2
    row = await world.db.fetchrow("SELECT conversation_id, depth FROM posts WHERE id = $1",
                                  posts["r2"].id)
    assert (row["conversation_id"], row["depth"]) == (posts["root"].id, 2)
    counts = await world.db.fetchrow("SELECT replies_normal FROM post_counts WHERE post_id = $1",
                                     posts["r1"].id)
    assert counts["replies_normal"] == 1


async def test_admin_import_endpoint(client, world):
    a = await world.account()
    base = next(_ids) * 10
    items = [
        {"id": str(base + 2), "author_id": str(a), "text": "child", "in_reply_to_id": str(base + 1),
         "created_at": "2025-01-01T00:01:00Z"},
        {"id": str(base + 1), "author_id": str(a), "text": "root", "created_at": "2025-01-01T00:00:00Z"},
        {"id": str(base + 1), "author_id": str(a), "text": "root", "created_at": "2025-01-01T00:00:00Z"},
        {"id": "x", "author_id": str(a), "text": "bad", "created_at": "2025-01-01T00:00:00Z"},
        {"id": str(base + 3), "author_id": "1", "text": "who?", "created_at": "2025-01-01T00:00:00Z"},
        {"id": str(base + 4), "author_id": str(a), "text": "no time"},
    ]
    resp = await client.post("/v1/admin/posts/import", json={"posts": items}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["imported"], report["pending"], report["duplicate"]) == (1, 1, 1)
    assert [(e["index"], e["code"]) for e in report["errors"]] == [
        (3, "invalid_id"), (4, "unknown_author"), (5, "invalid_item")]
    view = await (await client.get(f"/v1/conversations/{base + 1}")).json()
    assert [n["text"] for n in view["focal"]["replies"]["items"]] == ["child"]


async def test_admin_import_needs_the_admin_token(client):
    resp = await client.post("/v1/admin/posts/import", json={"posts": []})
    assert resp.status == 401
    resp = await client.post("/v1/admin/posts/import", data=b"{nope", headers=ADMIN)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_json"


async def test_cli_import(world, pg_dsn, tmp_path, capsys):
    a = await world.account()
    base = next(_ids) * 10
    lines = [json.dumps({"id": str(base + 2), "author_id": str(a), "text": "late child",
                         "in_reply_to_id": str(base + 1), "created_at": "2025-01-01T00:01:00Z"}),
             json.dumps({"id": str(base + 1), "author_id": str(a), "text": "root",
                         "created_at": "2025-01-01T00:00:00Z"}),
             "{not json"]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # the CLI runs its own event loop: give it a thread
    assert await asyncio.to_thread(
        arbor, ["import", str(path), "--setting", f"database_url={pg_dsn}"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["imported"], report["pending"], report["errors"]) == (1, 1, 1)
    assert report["first_errors"][0]["line"] == 3
    assert await world.db.fetchval("SELECT in_reply_to_id FROM posts WHERE id = $1",
                                   base + 2) == base + 1


SMALL = ("root", "r1", "r2", "r3", "q")  # a tombstone holding r2, a quote of r2, a quote of root


async def test_all_120_arrival_orders_of_a_small_tree_converge(client, world):
    """Exhaustive over a five-post tree (the property above samples the six-post one)."""
    authors = await world.accounts(3)
    reference = make_posts(authors)
    for label in SMALL:
        await ingest_one(world.db, reference[label])
    expected = await _render_small(client, reference)
    for order in itertools.permutations(SMALL):
        posts = make_posts(authors)
        for label in order:
            await ingest_one(world.db, posts[label])
        assert await _render_small(client, posts) == expected, order


async def _render_small(client, posts):
    labels = {str(p.id): label for label, p in posts.items()}
    views = [await client.get(f"/v1/conversations/{posts[label].id}") for label in ("root", "q")]
    return [normalized(await v.json(), labels) for v in views]
