"""`arbor repair`: rows broken on purpose with raw SQL are found and fixed (conversation and
depth, pending replies whose parent arrived, listed flags, counters), the conversation renders
as before, a second run finds nothing; data written through the write path is left alone; and
a repair racing 50 concurrent replies to one parent loses none of them.

Runs against the shared test database, which holds other tests' data: repairs run over the
whole database and the assertions look at this module's posts (a whole-database run may also
fix what other modules left, which must then be nothing but known seed-preset differences)."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import asyncpg

from service.app import create_app
from service.cli.arbor import main as arbor
from storage import account_writes, label_writes, post_writes, repair
from storage.ids import IdGenerator, id_at
from storage.ingestion import ImportedPost, ingest_one

_ids = IdGenerator()
KINDS = repair.KINDS

# Every listed problem of the given posts, from first principles (children by in_reply_to_id,
# not through the index the repair uses; the quotes rule of post_writes._QUOTES_OF).
_PROBLEMS = """
    SELECT s.id, array_remove(ARRAY[
        CASE WHEN pc.post_id IS NULL THEN 'no counts' END,
        CASE WHEN s.in_reply_to_id IS NULL AND (s.conversation_id <> s.id OR s.depth <> 0)
             THEN 'root place' END,
        CASE WHEN s.in_reply_to_id IS NOT NULL AND (parent.id IS NULL
                  OR parent.conversation_id <> s.conversation_id OR parent.depth + 1 <> s.depth)
             THEN 'place' END,
        CASE WHEN pc.conversation_id <> s.conversation_id THEN 'counts conversation' END,
        CASE WHEN (pc.replies_normal, pc.replies_low_quality, pc.replies_offensive) <> (
                  SELECT count(*) FILTER (WHERE c.section = 0), count(*) FILTER (WHERE c.section = 1),
                         count(*) FILTER (WHERE c.section = 2)
                  FROM posts c WHERE c.in_reply_to_id = s.id AND c.listed) THEN 'replies' END,
        CASE WHEN pc.quotes <> (SELECT count(*) FROM posts q JOIN accounts a ON a.id = q.author_id
                                WHERE q.quote_of_id = s.id AND q.deleted_at IS NULL
                                  AND a.state = 'active' AND NOT a.protected) THEN 'quotes' END,
        CASE WHEN s.listed <> (s.deleted_at IS NULL OR EXISTS (
                  SELECT 1 FROM posts c WHERE c.in_reply_to_id = s.id AND c.listed))
             THEN 'listed' END], NULL) AS problems
    FROM posts s
    LEFT JOIN posts parent ON parent.id = s.in_reply_to_id
    LEFT JOIN post_counts pc ON pc.post_id = s.id
    WHERE s.id = ANY($1::bigint[])"""


async def problems(db, ids) -> dict[int, list[str]]:
    rows = await db.fetch(_PROBLEMS, list(ids))
    assert len(rows) == len(set(ids)), "some posts are missing"
    return {r["id"]: list(r["problems"]) for r in rows if r["problems"]}


def normalized(body):
    """A rendered view with its cursors (signed, time-stamped) replaced by a marker."""
    def strip(o):
        if isinstance(o, dict):
            return {k: ("<cursor>" if k == "cursor" and v else strip(v)) for k, v in o.items()}
        return [strip(x) for x in o] if isinstance(o, list) else o
    return strip(body)


async def render(aiohttp_client, settings, post_id: int):
    """A view from a new app, so that nothing cached by an earlier render can answer."""
    client = await aiohttp_client(create_app(settings))
    resp = await client.get(f"/v1/conversations/{post_id}?depth=10&branching=50")
    assert resp.status == 200, await resp.text()
    return normalized(await resp.json())


def assert_none_found(report):
    assert {k: report[k]["found"] for k in KINDS} == dict.fromkeys(KINDS, 0), report


async def build(world):
    """A conversation with every case the counters know: nested replies, a deleted leaf (left
    out), a deleted post with a reply (a tombstone), quotes by a visible and a protected author."""
    a, b = await world.account(), await world.account()
    hidden = await world.account(protected=True)
    p = {}
    p["root"] = await world.post(a, "root")
    p["r1"] = await world.post(b, "first answer", reply_to=p["root"])
    p["r11"] = await world.post(a, "nested one", reply_to=p["r1"])
    p["r12"] = await world.post(b, "nested two", reply_to=p["r1"])
    p["r111"] = await world.post(b, "deeper", reply_to=p["r11"])
    p["r2"] = await world.post(a, "second answer", reply_to=p["root"])
    p["gone"] = await world.post(b, "soon deleted", reply_to=p["root"])
    p["tomb"] = await world.post(b, "deleted but answered", reply_to=p["root"])
    p["t1"] = await world.post(a, "answer to the tombstone", reply_to=p["tomb"])
    await world.delete(p["gone"])
    await world.delete(p["tomb"])
    p["quote"] = await world.post(b, "look at this", quote=p["root"])
    p["quote_hidden"] = await world.post(hidden, "psst", quote=p["root"])
    return p


async def test_repair_fixes_what_was_broken(world, aiohttp_client, settings):
    db = world.db
    p = await build(world)
    ids = list(p.values())
    assert await problems(db, ids) == {}
    before = await render(aiohttp_client, settings, p["root"])
    assert before["focal"]["counts"]["replies"] == 3 and before["focal"]["counts"]["quotes"] == 1

    # a subtree moved to another conversation, with one wrong depth and a wrong counter row
    await db.execute("UPDATE posts SET conversation_id = $2 WHERE id = ANY($1::bigint[])",
                     [p["r1"], p["r11"], p["r12"], p["r111"]], p["quote"])
    await db.execute("UPDATE posts SET depth = 7 WHERE id = $1", p["r12"])
    await db.execute("UPDATE post_counts SET conversation_id = $2 WHERE post_id = $1",
                     p["r11"], p["quote"])
    # drifted counters, and a lost counter row
    await db.execute("UPDATE post_counts SET replies_normal = 99, quotes = 5 WHERE post_id = $1",
                     p["root"])
    await db.execute("UPDATE post_counts SET replies_low_quality = 3 WHERE post_id = $1", p["r11"])
    await db.execute("DELETE FROM post_counts WHERE post_id = $1", p["r2"])
    # listed flags: a deleted leaf listed, a tombstone with a reply unlisted, a live reply unlisted
    await db.execute("UPDATE posts SET listed = true WHERE id = $1", p["gone"])
    await db.execute("UPDATE posts SET listed = false WHERE id = ANY($1::bigint[])",
                     [p["tomb"], p["t1"]])
    broken = await problems(db, ids)
    assert set(broken) >= {p["root"], p["r1"], p["r11"], p["r12"], p["r111"], p["r2"],
                           p["gone"], p["tomb"], p["t1"]}

    report = await repair.repair(db, examples=10_000)
    found = {k: {int(i) for i in report[k]["examples"]} for k in KINDS}
    assert {p["r1"], p["r11"], p["r12"], p["r111"]} <= found["conversation"]
    # the tombstone's flag agrees with its (wrongly unlisted) reply: it is fixed when the
    # reply's is, by the ripple up to the parent
    assert {p["gone"], p["t1"]} <= found["listed"] and p["tomb"] not in found["listed"]
    assert report["listed"]["fixed"] >= report["listed"]["found"] + 1
    assert {p["root"], p["r11"], p["r2"]} <= found["counters"]
    # found: what the lock-free check saw; fixed: rows changed. The tombstone's counter looked
    # wrong while its reply was unlisted, and is right once the reply's flag is fixed.
    assert report["conversation"]["fixed"] >= report["conversation"]["found"] > 0, report
    assert report["counters"]["found"] > 0 and report["counters"]["fixed"] > 0, report
    assert report["failed_chunks"] == 0 and report["posts_scanned"] >= len(ids)

    assert await problems(db, ids) == {}
    assert await render(aiohttp_client, settings, p["root"]) == before
    assert_none_found(await repair.repair(db))


async def test_pending_replies_whose_parent_arrived_are_attached(world, aiohttp_client, settings):
    db = world.db
    a = await world.account()
    root = await world.post(a, "root")
    child = await world.post(a, "child", reply_to=root)
    # a reply (and its own reply) left waiting although the parent is there: an attach that
    # never ran, or stopped at ingestion.MAX_ATTACH
    waiting, below = _ids.next(), _ids.next()
    now = datetime.now(timezone.utc)
    for post_id, parent, text in ((waiting, child, "late"), (below, waiting, "later")):
        await db.execute("""INSERT INTO pending_posts (id, author_id, in_reply_to_id, text, created_at)
                            VALUES ($1, $2, $3, $4, $5)""", post_id, a, parent, text, now)
    dry = await repair.repair(db, dry_run=True, examples=10_000)
    assert waiting in {int(i) for i in dry["pending"]["examples"]}
    assert await db.fetchval("SELECT count(*) FROM pending_posts WHERE id = ANY($1::bigint[])",
                             [waiting, below]) == 2            # a dry run changes nothing

    report = await repair.repair(db, examples=10_000)
    assert waiting in {int(i) for i in report["pending"]["examples"]}
    assert report["pending"]["fixed"] >= 2                     # the reply and its reply
    assert await db.fetchval("SELECT count(*) FROM pending_posts WHERE id = ANY($1::bigint[])",
                             [waiting, below]) == 0
    rows = await db.fetch("SELECT id, conversation_id, depth FROM posts WHERE id = ANY($1::bigint[])"
                          " ORDER BY depth", [waiting, below])
    assert [(r["id"], r["conversation_id"], r["depth"]) for r in rows] == [
        (waiting, root, 2), (below, root, 3)]
    assert await problems(db, [root, child, waiting, below]) == {}
    view = await render(aiohttp_client, settings, root)
    [c] = view["focal"]["replies"]["items"]
    [w] = c["replies"]["items"]
    assert (w["id"], w["counts"]["replies"]) == (str(waiting), 1)
    assert w["replies"]["items"][0]["id"] == str(below)
    assert_none_found(await repair.repair(db))


async def test_children_with_smaller_ids_than_their_parent(world):
    """Imported posts keep their own ids: a child may sort before its parent, across chunks.
    The walk repeats until the whole subtree is in place."""
    db = world.db
    a = await world.account()
    base = _ids.next()
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    # root, then a chain whose ids go down: each reply's id is smaller than its parent's
    root = ImportedPost(base + 100, a, "root", t0)
    chain = [root]
    for i in range(1, 6):
        chain.append(ImportedPost(base + 100 - i * 10, a, f"level {i}", t0 + timedelta(minutes=i),
                                  in_reply_to_id=chain[-1].id))
    for post in reversed(chain):          # leaves first: they wait, and attach with the root
        await ingest_one(db, post)
    ids = [post.id for post in chain]
    assert await problems(db, ids) == {}
    other = await world.post(a, "another root")
    await db.execute("UPDATE posts SET conversation_id = $2 WHERE id = ANY($1::bigint[])",
                     ids[1:], other)
    await db.execute("UPDATE posts SET depth = 0 WHERE id = ANY($1::bigint[])", ids[1:])
    report = await repair.repair(db, chunk=2, id_range=(min(ids), max(ids)))
    assert report["conversation"]["found"] >= 5 and report["passes"]["conversation"] > 1
    assert await problems(db, ids) == {}
    rows = await db.fetch("SELECT depth FROM posts WHERE id = ANY($1::bigint[]) ORDER BY id DESC",
                          ids)
    assert [r["depth"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert_none_found(await repair.repair(db, chunk=2, id_range=(min(ids), max(ids))))


async def test_cli_repair(world, pg_dsn, capsys):
    db = world.db
    p = await build(world)
    await db.execute("UPDATE post_counts SET replies_normal = replies_normal + 4, quotes = 0 "
                     "WHERE post_id = $1", p["root"])
    await db.execute("UPDATE posts SET listed = true WHERE id = $1", p["gone"])
    await db.execute("UPDATE posts SET conversation_id = $2 WHERE id = $1", p["r111"], p["r2"])
    setting = ["--setting", f"database_url={pg_dsn}"]

    # the CLI runs its own event loop: give it a thread
    assert await asyncio.to_thread(arbor, ["repair", "--dry-run", "--chunk", "7", *setting]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["chunk"] == 7
    assert all(dry[k]["fixed"] == 0 for k in KINDS)
    assert dry["conversation"]["found"] >= 1 and dry["listed"]["found"] >= 1
    assert str(p["root"]) in dry["counters"]["examples"] or dry["counters"]["found"] > 20
    assert set(await problems(db, p.values())) >= {p["root"], p["gone"], p["r111"]}

    assert await asyncio.to_thread(arbor, ["repair", "--chunk", "7", *setting]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["conversation"]["fixed"] >= 1 and report["listed"]["fixed"] >= 1
    assert report["counters"]["fixed"] >= 1
    assert report["posts_scanned"] > 0 and report["seconds"] >= 0
    assert await problems(db, p.values()) == {}

    assert await asyncio.to_thread(arbor, ["repair", *setting]) == 0
    assert_none_found(json.loads(capsys.readouterr().out))


async def test_repair_leaves_correct_data_alone(world):
    """Everything the write path can do, then a repair over these posts finds nothing; and
    over the whole database, nothing outside the seed presets (whose quote counters count
    protected authors' quotes: a known difference from post_writes._QUOTES_OF)."""
    db = world.db
    start = id_at(int(time.time() * 1000))          # every id from this millisecond on
    p = await build(world)
    a, b, c = await world.accounts(3)
    fan = await world.fan(a, p["r2"], 30)
    await world.delete(fan[3])
    await world.delete(p["t1"])                     # the tombstone's only reply: both go
    chain = await world.chain(b, 12)
    await world.delete(chain[-1])
    await world.delete(chain[-2])
    await world.post(c, "quote in a chain", reply_to=chain[3], quote=chain[5])
    await label_writes.upsert_label(db, fan[5], "spam", 0.99)
    await label_writes.upsert_label(db, fan[6], "abusive", 0.99)
    await world.post(c, "same text", reply_to=p["root"])
    await world.post(a, "same text", reply_to=p["root"])      # a duplicate: low quality
    await account_writes.update_account(db, c, state="suspended")
    await world.relate("blocks", a, b)
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    late_parent, late_child = _ids.next(), _ids.next()
    await ingest_one(db, ImportedPost(late_child, a, "child first", t0, in_reply_to_id=late_parent))
    await ingest_one(db, ImportedPost(late_parent, b, "parent", t0, in_reply_to_id=p["r1"]))
    end = id_at(int(time.time() * 1000) + 1)

    report = await repair.repair(db, chunk=7, id_range=(start, end))
    assert_none_found(report)
    assert report["posts_scanned"] >= 58
    assert all(report[k]["fixed"] == 0 for k in KINDS)

    everything = await repair.repair(db, dry_run=True, examples=1_000_000)
    found = [int(i) for k in KINDS for i in everything[k]["examples"]]
    if found:
        handles = await db.fetch(
            """SELECT DISTINCT a.handle FROM posts p JOIN accounts a ON a.id = p.author_id
               WHERE p.id = ANY($1::bigint[])
               UNION SELECT a.handle FROM pending_posts p JOIN accounts a ON a.id = p.author_id
               WHERE p.id = ANY($1::bigint[])""", found)
        presets = ("demo_", "viral_", "bench_", "unit_", "tiny_")
        assert all(h["handle"].startswith(presets) for h in handles), (everything, handles)


async def test_repair_racing_concurrent_replies_loses_none(world):
    """50 replies to one parent arrive while repairs lock, recount and rewrite its counter:
    the counter ends equal to a recount, with no repair after the last reply."""
    db = world.db
    authors = await world.accounts(10)
    parent = await world.post(authors[0], "popular")
    await world.fan(authors[1], parent, 5)
    await db.execute("UPDATE post_counts SET replies_normal = replies_normal + 100 WHERE post_id = $1",
                     parent)
    depth = await db.fetchval("SELECT depth FROM posts WHERE id = $1", parent)
    done = asyncio.Event()

    async def reply(i: int) -> None:
        await world.post(authors[i % len(authors)], f"concurrent reply {i}", reply_to=parent)

    async def inserts() -> None:
        try:
            await asyncio.gather(*(reply(i) for i in range(50)))
        finally:
            done.set()

    async def settle_loop() -> int:
        """settle() the parent over and over, so that a lock or recount in the wrong order
        would write a stale count over an increment."""
        rounds = 0
        while not done.is_set():
            try:
                async with db.transaction() as tx:
                    await repair.settle(tx, [(parent, depth)])
            except asyncpg.exceptions.DeadlockDetectedError:
                pass
            rounds += 1
        return rounds

    async def repairs() -> int:
        runs = 0
        while not done.is_set() or runs == 0:
            await repair.repair(db, chunk=50, wait_for_lock=True)
            runs += 1
        return runs

    _, rounds, runs = await asyncio.gather(inserts(), settle_loop(), repairs())
    assert rounds > 1 and runs >= 1
    assert await db.fetchval("SELECT count(*) FROM posts WHERE in_reply_to_id = $1", parent) == 55
    assert await db.fetchval("SELECT replies_normal FROM post_counts WHERE post_id = $1",
                             parent) == 55
    assert await problems(db, [parent]) == {}
    assert_none_found(await repair.repair(db, id_range=(parent, parent)))


async def test_fix_waits_for_a_reply_in_flight(world):
    """The interleaving the lock order exists for: a reply has been inserted and its parent's
    counter incremented, not yet committed, when a repair finds the (drifted) counter. The
    repair must count after that reply commits, not write its earlier count over the
    increment."""
    db = world.db
    a = await world.account()
    parent = await world.post(a, "parent")
    await world.fan(a, parent, 3)
    for fix in ("settle", "repair"):
        await db.execute("UPDATE post_counts SET replies_normal = replies_normal + 100 "
                         "WHERE post_id = $1", parent)
        inserted, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as tx:
                await post_writes.insert_post_tx(tx, a, f"in flight ({fix})", in_reply_to_id=parent)
                inserted.set()
                await release.wait()

        async def fixer() -> None:
            await inserted.wait()
            if fix == "settle":
                async with db.transaction() as tx:
                    await repair.settle(tx, [(parent, 0)])
            else:
                await repair.repair(db, id_range=(parent, parent), wait_for_lock=True)

        writing, fixing = asyncio.create_task(writer()), asyncio.create_task(fixer())
        await inserted.wait()
        await asyncio.sleep(0.3)            # the fix is now waiting for the counter row
        assert not fixing.done()
        release.set()
        await asyncio.gather(writing, fixing)
        assert await problems(db, [parent]) == {}, fix
