"""Seed presets: exact counters (checked against a SQL recount and against the real write path),
tree consistency, idempotency, and that the demo renders. viral/bench are too big to seed here;
they share the generator code exercised below."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import asyncpg
import pytest

from storage import post_writes, section_updates, seeding
from storage.seeding import Builder, Preset, build_conversation

from .helpers import iter_nodes

# Every post of a preset whose counters or derived columns disagree with a recount from rows.
_MISCOUNTED = """
    WITH s AS (SELECT p.* FROM posts p JOIN accounts a ON a.id = p.author_id
               WHERE starts_with(a.handle, $1))
    SELECT s.id FROM s LEFT JOIN post_counts pc ON pc.post_id = s.id
    WHERE pc.post_id IS NULL
       OR pc.conversation_id <> s.conversation_id
       OR pc.replies_normal <> (SELECT count(*) FROM posts c
                                WHERE c.in_reply_to_id = s.id AND c.listed AND c.section = 0)
       OR pc.replies_low_quality <> (SELECT count(*) FROM posts c
                                     WHERE c.in_reply_to_id = s.id AND c.listed AND c.section = 1)
       OR pc.replies_offensive <> (SELECT count(*) FROM posts c
                                   WHERE c.in_reply_to_id = s.id AND c.listed AND c.section = 2)
       OR pc.quotes <> (SELECT count(*) FROM posts q JOIN accounts qa ON qa.id = q.author_id
                        WHERE q.quote_of_id = s.id AND q.deleted_at IS NULL
                          AND qa.state = 'active' AND NOT qa.protected)
       OR s.listed <> (s.deleted_at IS NULL OR EXISTS (
                           SELECT 1 FROM posts c WHERE c.in_reply_to_id = s.id AND c.listed))"""

# Every post of a preset whose place in its tree is inconsistent.
_MISPLACED = """
    WITH s AS (SELECT p.* FROM posts p JOIN accounts a ON a.id = p.author_id
               WHERE starts_with(a.handle, $1))
    SELECT s.id FROM s
    LEFT JOIN posts parent ON parent.id = s.in_reply_to_id
    LEFT JOIN posts quoted ON quoted.id = s.quote_of_id
    WHERE (s.in_reply_to_id IS NULL AND (s.depth <> 0 OR s.conversation_id <> s.id))
       OR (s.in_reply_to_id IS NOT NULL AND (parent.id IS NULL
           OR s.conversation_id <> parent.conversation_id OR s.depth <> parent.depth + 1
           OR s.id <= parent.id OR s.created_at < parent.created_at))
       OR (s.quote_of_id IS NOT NULL AND (quoted.id IS NULL OR s.quote_of_id >= s.id))
       OR (s.deleted_at IS NOT NULL AND s.deleted_at < s.created_at)"""


async def _connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def _table_sizes(con) -> tuple[int, int, int, int]:
    row = await con.fetchrow("""SELECT (SELECT count(*) FROM posts),
                                       (SELECT count(*) FROM post_counts),
                                       (SELECT count(*) FROM accounts),
                                       (SELECT count(*) FROM seed_runs)""")
    return tuple(row)


async def _assert_consistent(con, preset: str, expected_posts: int) -> None:
    prefix = preset + "_"
    n = await con.fetchval("""SELECT count(*) FROM posts p JOIN accounts a ON a.id = p.author_id
                              WHERE starts_with(a.handle, $1)""", prefix)
    assert n == expected_posts
    assert await con.fetch(_MISCOUNTED, prefix) == []
    assert await con.fetch(_MISPLACED, prefix) == []


@pytest.fixture(scope="module")
async def demo(pg_dsn):
    con = await _connect(pg_dsn)
    try:
        report = await seeding.seed(con, "demo")
    finally:
        await con.close()
    return report


async def test_demo_report_shape(demo):
    assert demo["preset"] == "demo"
    assert 500 <= demo["posts"] <= 10_000
    for name in ("welcome", "deep_chain_root", "deep_chain_leaf", "quoted", "with_tombstone"):
        assert isinstance(demo["roots"][name], str) and int(demo["roots"][name]) > 0
    if not demo["skipped"]:
        assert demo["posts_per_second"] > 0


async def test_demo_counters_equal_a_recount(demo, pg_dsn):
    con = await _connect(pg_dsn)
    try:
        await _assert_consistent(con, "demo", demo["posts"])
        # the demo really has the cases the recount is meant to check
        stats = await con.fetchrow("""
            SELECT count(*) FILTER (WHERE p.deleted_at IS NOT NULL AND p.listed) AS tombstones,
                   count(*) FILTER (WHERE p.deleted_at IS NOT NULL AND NOT p.listed) AS gone,
                   count(*) FILTER (WHERE p.quote_of_id IS NOT NULL) AS quotes,
                   count(DISTINCT p.conversation_id) AS conversations,
                   count(DISTINCT p.author_id) AS authors
            FROM posts p JOIN accounts a ON a.id = p.author_id
            WHERE starts_with(a.handle, 'demo_')""")
        assert stats["tombstones"] >= 3 and stats["gone"] >= 3 and stats["quotes"] >= 5
        assert stats["conversations"] >= 10 and stats["authors"] >= 30
        quoted = int(demo["roots"]["quoted"])
        assert await con.fetchval("SELECT quotes FROM post_counts WHERE post_id = $1", quoted) >= 5
        assert await con.fetchval("SELECT count(*) FROM accounts "
                                  "WHERE starts_with(handle, 'demo_') AND protected") >= 1
    finally:
        await con.close()


class _Rollback(Exception):
    pass


async def test_demo_sections_are_what_the_write_path_computes(demo, db):
    """Seeds write section 0 everywhere: recomputing every demo reply's section with the write
    path's rules (no labels, old accounts, no duplicate texts) changes none of them."""
    ids = [r["id"] for r in await db.fetch(
        """SELECT p.id FROM posts p JOIN accounts a ON a.id = p.author_id
           WHERE starts_with(a.handle, 'demo_') AND p.in_reply_to_id IS NOT NULL""")]
    assert len(ids) > 1000
    assert await db.fetch(
        """SELECT p.conversation_id, p.text_hash FROM posts p JOIN accounts a ON a.id = p.author_id
           WHERE starts_with(a.handle, 'demo_') AND p.in_reply_to_id IS NOT NULL
           GROUP BY 1, 2 HAVING count(*) > 1""") == []
    changed = None
    try:
        async with db.transaction() as tx:
            changed = await section_updates.recompute(tx, ids)
            raise _Rollback
    except _Rollback:
        pass
    assert changed == 0


async def test_demo_has_a_thousand_level_chain(demo, pg_dsn):
    con = await _connect(pg_dsn)
    try:
        leaf, root = int(demo["roots"]["deep_chain_leaf"]), int(demo["roots"]["deep_chain_root"])
        rows = await con.fetch("""
            WITH RECURSIVE up (id, parent, depth) AS (
                SELECT id, in_reply_to_id, depth FROM posts WHERE id = $1
              UNION ALL
                SELECT p.id, p.in_reply_to_id, p.depth FROM up JOIN posts p ON p.id = up.parent)
            SELECT id, depth FROM up""", leaf)
        assert len(rows) == 1001
        assert rows[0]["depth"] == 1000 and rows[-1]["id"] == root and rows[-1]["depth"] == 0
        assert [r["depth"] for r in rows] == list(range(1000, -1, -1))
    finally:
        await con.close()


async def test_second_seed_is_skipped_and_writes_nothing(demo, pg_dsn):
    con = await _connect(pg_dsn)
    try:
        before = await _table_sizes(con)
        again = await seeding.seed(con, "demo")
        assert again["skipped"] is True
        assert again["posts"] == demo["posts"] and again["roots"] == demo["roots"]
        assert await _table_sizes(con) == before
    finally:
        await con.close()


async def test_demo_conversations_render(demo, client):
    for name in ("welcome", "quoted", "deep_chain_root", "deep_chain_leaf", "quote_of_deleted"):
        resp = await client.get(f"/v1/conversations/{demo['roots'][name]}")
        assert resp.status == 200, (name, await resp.text())
    resp = await client.get(f"/v1/conversations/{demo['roots']['welcome']}")
    body = await resp.json()
    assert body["focal"]["id"] == demo["roots"]["welcome"]
    assert len(list(iter_nodes(body["focal"]["replies"]))) >= 10
    resp = await client.get(f"/v1/conversations/{demo['roots']['with_tombstone']}")
    body = await resp.json()
    nodes = list(iter_nodes(body["focal"]["replies"]))
    assert any(n["type"] == "tombstone" and n["id"] == demo["roots"]["tombstone"] for n in nodes)
    resp = await client.get(f"/v1/conversations/{demo['roots']['deep_chain_leaf']}")
    body = await resp.json()
    assert body["ancestors"]["items"][0]["id"] == demo["roots"]["deep_chain_root"]


def test_generation_is_deterministic():
    a = seeding.generate(seeding.PRESETS["demo"])
    b = seeding.generate(seeding.PRESETS["demo"])
    assert a == b


def test_presets_cannot_collide():
    presets = list(seeding.PRESETS.values())
    assert len({p.worker for p in presets}) == len(presets)
    assert len({p.rng_seed for p in presets}) == len(presets)


def test_finalize_follows_the_write_path_rules():
    """Hand-built tree, every deletion case: listed / counters as post_writes would leave them."""
    b = Builder(Preset("unit", 1, 300, datetime(2023, 1, 1, tzinfo=timezone.utc), lambda b: {}))
    a = b.account("a")
    root = b.post(a, "root")
    holder = b.post(a, reply_to=root)          # deleted with a live reply: tombstone
    kept = b.post(a, reply_to=holder)
    leaf = b.post(a, reply_to=root)            # deleted leaf: gone
    outer = b.post(a, reply_to=root)           # deleted, only reply deleted: both gone
    inner = b.post(a, reply_to=outer)
    top = b.post(a, reply_to=root)             # deleted above deleted above live: two tombstones
    mid = b.post(a, reply_to=top)
    live = b.post(a, reply_to=mid)
    q1 = b.post(a, "quote", quote=holder)
    q2 = b.post(a, "deleted quote", quote=holder)
    for i in (holder, leaf, outer, inner, top, mid, q2):
        b.delete(i)
    rows = b.finalize({"root": root})
    posts = {i: r for i, r in enumerate(rows.posts)}
    counts = {i: r for i, r in enumerate(rows.counts)}
    listed = {i: r[11] for i, r in posts.items()}
    assert listed == {root: True, holder: True, kept: True, leaf: False, outer: False,
                      inner: False, top: True, mid: True, live: True, q1: True, q2: False}
    replies = {i: r[2] for i, r in counts.items()}
    assert replies[root] == 2 and replies[holder] == 1 and replies[outer] == 0
    assert replies[top] == 1 and replies[mid] == 1
    assert counts[holder][7] == 1  # one non-deleted quote
    assert [r[8] for r in rows.posts[:9]] == [0, 1, 2, 1, 1, 2, 1, 2, 3]
    assert all(r[1] == rows.posts[root][0] for r in rows.posts[:9])
    assert rows.posts[q1][1] == rows.posts[q1][0]  # a quote post is its own root
    ids = [r[0] for r in rows.posts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def _tiny_build(b: Builder) -> dict[str, int]:
    people = b.accounts(12)
    roots = {}
    first = b.post(people[0], "first")
    made = build_conversation(b, first, authors=people, max_posts=120, fanout=4.0, min_fanout=5,
                              delete_rate=0.35)
    second = b.post(people[1], "second")
    build_conversation(b, second, authors=people, max_posts=80, fanout=3.0, min_fanout=4,
                       quote_pool=[first, *made], quote_rate=0.3, delete_rate=0.35)
    roots.update({"first": first, "second": second})
    roots.update(seeding.tombstone_conversation(b, people, "tombstones"))
    return roots


TINY = Preset("tinyseed", 0x7171, 200, datetime(2023, 6, 1, tzinfo=timezone.utc), _tiny_build)


async def test_small_custom_preset_counters_match_a_recount(pg_dsn):
    """Seeded with the index rebuild (the path big presets take): the indexes come back as
    they were, and the counters are exact."""
    con = await _connect(pg_dsn)
    try:
        indexes = await con.fetch(seeding.PLAIN_POST_INDEXES)
        assert len(indexes) >= 4
        report = await seeding.seed(con, TINY, rebuild_indexes=True)
        assert report["preset"] == "tinyseed" and not report["skipped"]
        assert await con.fetch(seeding.PLAIN_POST_INDEXES) == indexes
        assert await con.fetchval("""SELECT bool_and(indisvalid AND indisready) FROM pg_index
                                     WHERE indrelid = 'posts'::regclass""")
        await _assert_consistent(con, "tinyseed", report["posts"])
        deleted = await con.fetchrow("""
            SELECT count(*) FILTER (WHERE p.listed) AS tombstones,
                   count(*) FILTER (WHERE NOT p.listed) AS gone
            FROM posts p JOIN accounts a ON a.id = p.author_id
            WHERE starts_with(a.handle, 'tinyseed_') AND p.deleted_at IS NOT NULL""")
        assert deleted["tombstones"] >= 5 and deleted["gone"] >= 5
    finally:
        await con.close()


async def test_generated_counters_match_the_write_path(db, world):
    """Replay the tiny preset through post_writes (inserts in order, deletes in a shuffled
    order) and compare every post's listed flag and counters with the generated ones."""
    rows = seeding.generate(TINY)
    # Same authorship (the conversation-author rule), established accounts (the replay's
    # accounts are new, so the new-account rule would otherwise demote avatar-less ones).
    authors = {a[0]: await world.account() for a in rows.accounts}
    new_id: dict[int, int] = {}
    for r in rows.posts:
        post_id, _conv, author, parent, quote = r[:5]
        made = await post_writes.insert_post(
            db, authors[author], r[5], in_reply_to_id=new_id[parent] if parent else None,
            quote_of_id=new_id[quote] if quote else None, rank_key=r[10])
        new_id[post_id] = made.id
        assert made.depth == r[8]
    deleted = [r[0] for r in rows.posts if r[7] is not None]
    random.Random(5).shuffle(deleted)
    for post_id in deleted:
        assert await post_writes.delete_post(db, new_id[post_id])
    got = {r["id"]: r for r in await db.fetch(
        """SELECT p.id, p.listed, p.section, pc.replies_normal, pc.replies_low_quality,
                  pc.replies_offensive, pc.quotes FROM posts p
           JOIN post_counts pc ON pc.post_id = p.id WHERE p.id = ANY($1::bigint[])""",
        list(new_id.values()))}
    for post, counts in zip(rows.posts, rows.counts):
        replayed = got[new_id[post[0]]]
        assert (replayed["listed"], replayed["section"], replayed["replies_normal"],
                replayed["replies_low_quality"], replayed["replies_offensive"],
                replayed["quotes"]) == (post[11], post[9], *counts[2:5], counts[7]), post[0]
