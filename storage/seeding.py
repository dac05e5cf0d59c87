"""Seed presets (`demo`, `viral`, `bench`): generated in Python, bulk-loaded with COPY.

    report = await seed(con, "demo")          # an asyncpg connection (the app's demo seeding)
    report = await seed_dsn(dsn, "bench")     # connects and applies migrations first (CLI)

Every preset is deterministic: its own fixed random seed, its own start time and its own
10-bit id worker number, so the three presets can share one database without colliding
(post ids are `id_at(start + i ms, worker << 12)` for the i-th generated post; account ids are
`worker << 32 | n`; handles are prefixed with the preset name).

Rows are generated as columns (one list per column, indexed by post number in creation order)
and the derived columns are computed in bulk at the end, with the same semantics as
storage/post_writes.py:

  * a post's parent, and any post it quotes, has a smaller index, hence a smaller id;
  * depth is the parent's depth + 1 (0 for a root), conversation_id is the root's id;
  * listed = not deleted, or has at least one listed reply (a tombstone);
  * post_counts.replies_normal = the number of listed direct replies (everything is section 0);
  * post_counts.quotes = the number of posts quoting the post that an anonymous viewer can
    see (not deleted, author active and not protected), as the write path counts them;
  * section 0 (normal) for every post, which is what storage/section_rules.py gives these rows:
    no labels, blocks or mutes; every account signed up 30 days before the preset's first post;
    and every generated text is unique (a "#n" suffix), so no reply is a duplicate;
  * rank_key = section_rules.rank_key(likes, reposts, quotes), likes and reposts power-law.

Idempotent: a row in `seed_runs` records each preset; a second run returns the stored report
with "skipped": true and writes nothing. Everything a preset writes (accounts, posts,
post_counts, seed_runs) is one transaction.

Speed (bench and viral: ~1M posts each, 60-100k posts/s on a 2-CPU box; the small demo is
dominated by fixed per-statement costs): one COPY per table; `synchronous_commit = off` for the
transaction; as superuser, `session_replication_role = replica` skips the per-row foreign-key
trigger on posts.author_id (every author is an account loaded just before); and when a preset
is big next to the table, the plain secondary indexes of posts are dropped and built again
from their catalog definitions in the same transaction (REBUILD_MIN_POSTS). The server's
per-row cost of maintaining eight indexes, not Python, is what bounds the plain COPY.
"""
from __future__ import annotations

import json
import logging
import random
import sys
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import accumulate, repeat
from typing import Any, Callable, Iterator, Sequence

import asyncpg
from tqdm import tqdm

from . import migrations
from .ids import id_at
from .section_rules import rank_key as _rank_key

log = logging.getLogger("arbor.seeding")

_ID_STEP = 1 << 22           # one millisecond in a post id: posts are 1 ms apart
_ONE_MS = timedelta(milliseconds=1)
_DELETED_AFTER = timedelta(minutes=7)
_CHUNK = 50_000              # the progress bar moves every _CHUNK rows
_MAX_LIKES = 50_000_000      # post_counts columns are int4

POST_COLUMNS = ("id", "conversation_id", "author_id", "in_reply_to_id", "quote_of_id", "text",
                "created_at", "deleted_at", "depth", "section", "rank_key", "listed")
COUNT_COLUMNS = ("post_id", "conversation_id", "replies_normal", "replies_low_quality",
                 "replies_offensive", "likes", "reposts", "quotes")
ACCOUNT_COLUMNS = ("id", "handle", "display_name", "state", "protected", "has_avatar", "verified",
                   "created_at")

_SENTENCES = (
    "Hard agree.", "This is the way.", "Source?", "Could not have said it better.",
    "I have questions.", "Bookmarking this thread.", "Counterpoint: no.",
    "Wait, is this real?", "Underrated take.", "The replies here are wild.",
    "Came here to say this.", "Thanks for writing this up.", "Respectfully, I disagree.",
    "This aged well.", "Adding some context below.", "Big if true.",
    "Saving for later.", "Okay but what about the edge cases?", "Love this.",
    "Finally someone said it.", "Not sure that follows.", "Great thread, thank you.",
    "Which version is this?", "Same thing happened to me last week.",
    "Can confirm.", "Interesting, tell me more.", "Ratio.", "Fair point.",
    "The benchmark numbers look off to me.", "Does this hold for large trees?",
    "Reading this on the train, so good.", "Following.",
)
_FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "xena",
    "yusuf", "zoe", "amara", "bruno", "chen", "dmitri", "elif", "farah", "gus", "hana",
    "imani", "jonas", "kofi", "lena", "mateo", "noor", "oskar", "priya", "quinn", "rosa",
    "sven", "tomas", "uma", "vera", "wen", "ximena", "yara", "zeke", "arbor", "moss",
)


# --------------------------------------------------------------------------------------------
# Generation (pure Python, no I/O)

@dataclass(frozen=True)
class Preset:
    name: str
    rng_seed: int
    worker: int                                  # 1..1023: high bits of ids, keeps presets apart
    start: datetime                              # created_at of post 0; +1 ms per post
    build: Callable[["Builder"], dict[str, int]] = field(repr=False)  # -> named post indexes


@dataclass
class Rows:
    """What a builder produces: rows ready for COPY, plus the named roots as ids."""
    accounts: list[tuple]
    posts: list[tuple]
    counts: list[tuple]
    roots: dict[str, int]


class Builder:
    """Posts as columns indexed by creation order. Use `post` for single posts and `replies`
    for bulk fan-out (no per-row Python beyond list extends and the random draws)."""

    def __init__(self, preset: Preset):
        self.preset = preset
        self.rng = random.Random(preset.rng_seed)
        self.account_rows: list[tuple] = []
        self.parent: list[int] = []     # index of the parent, -1 for a root
        self.root: list[int] = []       # index of the conversation root
        self.depth: list[int] = []
        self.quote: list[int] = []      # index of the quoted post, -1 for none
        self.author: list[int] = []
        self.text: list[str] = []
        self.likes: list[int] = []
        self.reposts: list[int] = []
        self.deleted: set[int] = set()

    def __len__(self) -> int:
        return len(self.parent)

    # -- accounts ----------------------------------------------------------------------
    def account(self, name: str, display_name: str = "", *, state: str = "active",
                protected: bool = False, has_avatar: bool = False, verified: bool = False) -> int:
        account_id = (self.preset.worker << 32) | (len(self.account_rows) + 1)
        self.account_rows.append((account_id, f"{self.preset.name}_{name}",
                                  display_name or name.title(), state, protected, has_avatar,
                                  verified, self.preset.start - timedelta(days=30)))
        return account_id

    def accounts(self, n: int, prefix: str = "user", *, protected: float = 0.03) -> list[int]:
        """n accounts; a `protected` fraction of them protected."""
        rng = self.rng
        return [self.account(f"{prefix}{i}", f"{prefix.title()} {i}",
                             has_avatar=rng.random() < 0.6, verified=rng.random() < 0.02,
                             protected=rng.random() < protected)
                for i in range(n)]

    # -- posts -------------------------------------------------------------------------
    def post(self, author: int, text: str | None = None, *, reply_to: int | None = None,
             quote: int | None = None, likes: int | None = None) -> int:
        i = len(self.parent)
        if reply_to is None:
            self.parent.append(-1)
            self.root.append(i)
            self.depth.append(0)
        else:
            self.parent.append(reply_to)
            self.root.append(self.root[reply_to])
            self.depth.append(self.depth[reply_to] + 1)
        self.quote.append(-1 if quote is None else quote)
        self.author.append(author)
        self.text.append(text if text is not None else f"{self.rng.choice(_SENTENCES)} #{i}")
        n_likes = self._likes(1)[0] if likes is None else likes
        self.likes.append(n_likes)
        self.reposts.append(int(n_likes * self.rng.random() * 0.3))
        return i

    def replies(self, parent: int, n: int, authors: Sequence[int], *,
                likes_scale: float = 1.0, likes_cap: int = _MAX_LIKES) -> range:
        """n direct replies to `parent` in one go; returns their indexes."""
        start = len(self.parent)
        rng = self.rng
        self.parent.extend(repeat(parent, n))
        self.root.extend(repeat(self.root[parent], n))
        self.depth.extend(repeat(self.depth[parent] + 1, n))
        self.quote.extend(repeat(-1, n))
        self.author.extend(rng.choices(authors, k=n))
        self.text.extend([f"{t} #{i}" for i, t in
                          zip(range(start, start + n), rng.choices(_SENTENCES, k=n))])
        likes = self._likes(n, likes_scale, likes_cap)
        r = rng.random
        self.likes.extend(likes)
        self.reposts.extend([int(x * r() * 0.3) for x in likes])
        return range(start, start + n)

    def chain(self, authors: Sequence[int], levels: int,
              text: str = "A very deep thread") -> list[int]:
        """A root and `levels` replies, each answering the previous one (leaf depth = levels)."""
        ids = [self.post(authors[0], f"{text} (level 0)")]
        for level in range(1, levels + 1):
            ids.append(self.post(authors[level % len(authors)], f"{text} (level {level})",
                                 reply_to=ids[-1]))
        return ids

    def delete(self, i: int) -> None:
        self.deleted.add(i)

    def set_likes(self, i: int, likes: int) -> None:
        """Give a post a chosen engagement (and so its rank among its siblings)."""
        self.likes[i] = likes
        self.reposts[i] = likes // 10

    def _likes(self, n: int, scale: float = 1.0, cap: int = _MAX_LIKES) -> list[int]:
        """Power-law (Pareto, alpha 1.2) like counts: most posts a few, a few posts very many."""
        r = self.rng.random
        return [min(cap, int(scale * ((1.0 - r()) ** -0.8333 - 1.0))) for _ in range(n)]

    # -- derived columns ---------------------------------------------------------------
    def finalize(self, roots: dict[str, int]) -> Rows:
        """Ids, timestamps and exact counters (post_writes semantics) for every post."""
        n = len(self.parent)
        start_ms = int(self.preset.start.timestamp() * 1000)
        id0 = id_at(start_ms, self.preset.worker << 12)
        ids = range(id0, id0 + n * _ID_STEP, _ID_STEP)
        created = list(accumulate(repeat(_ONE_MS, n - 1), initial=self.preset.start)) if n else []
        parent, deleted = self.parent, self.deleted

        # Listed direct replies: every non-deleted reply counts; then deleted posts from the
        # newest back (children before parents) count iff they hold listed replies.
        replies_of = Counter(parent)
        for i in deleted:
            replies_of[parent[i]] -= 1
        listed = [True] * n
        for i in sorted(deleted, reverse=True):
            if replies_of.get(i, 0) > 0:
                if parent[i] >= 0:
                    replies_of[parent[i]] += 1
            else:
                listed[i] = False
        replies = [0] * n
        for i, count in replies_of.items():
            if i >= 0:
                replies[i] = count

        # The write path's rule (counter_writes.QUOTES_OF): quotes an anonymous viewer can see,
        # not deleted, by an active, unprotected author.
        state = ACCOUNT_COLUMNS.index("state")
        hidden_authors = {a[0] for a in self.account_rows
                          if a[state] != "active" or a[ACCOUNT_COLUMNS.index("protected")]}
        gone = set(deleted)
        quotes_of = Counter(q for i, q in enumerate(self.quote)
                            if i not in gone and self.author[i] not in hidden_authors)
        quotes = [0] * n
        for i, count in quotes_of.items():
            if i >= 0:
                quotes[i] = count

        deleted_at: list[datetime | None] = [None] * n
        for i in deleted:
            deleted_at[i] = created[i] + _DELETED_AFTER
        rank_key = list(map(_rank_key, self.likes, self.reposts, quotes))
        parent_id = [None if p < 0 else ids[p] for p in parent]
        quote_id = [None if q < 0 else ids[q] for q in self.quote]
        conversation_id = [ids[r] for r in self.root]

        posts = list(zip(ids, conversation_id, self.author, parent_id, quote_id, self.text,
                         created, deleted_at, self.depth, repeat(0), rank_key, listed))
        counts = list(zip(ids, conversation_id, replies, repeat(0), repeat(0), self.likes,
                          self.reposts, quotes))
        return Rows(self.account_rows, posts, counts, {k: ids[v] for k, v in roots.items()})


def build_conversation(b: Builder, parent: int, *, authors: Sequence[int], max_posts: int,
                       fanout: float = 3.0, alpha: float = 1.3, decay: float = 0.6,
                       min_fanout: int = 2, max_fanout: int = 400, max_depth: int = 12,
                       quote_pool: Sequence[int] = (), quote_rate: float = 0.0,
                       delete_rate: float = 0.0) -> list[int]:
    """Grow a reply tree below post `parent`, breadth first: each node at level L gets
    int(fanout * decay**L * (Pareto(alpha) - 1)) replies (at least `min_fanout` at level 0),
    until `max_posts` replies exist or the tree dies out. A reply quotes a random post of
    `quote_pool` with probability `quote_rate`; then each new reply is deleted with
    probability `delete_rate` (leaves vanish, posts with replies become tombstones)."""
    rng = b.rng
    made: list[int] = []
    frontier = deque([(parent, 0)])
    inv_alpha = 1.0 / alpha
    while frontier and len(made) < max_posts:
        node, level = frontier.popleft()
        if level >= max_depth:
            continue
        k = int(fanout * decay ** level * ((1.0 - rng.random()) ** -inv_alpha - 1.0))
        if level == 0:
            k = max(k, min_fanout)
        k = min(k, max_fanout, max_posts - len(made))
        for _ in range(k):
            quote = rng.choice(quote_pool) if quote_pool and rng.random() < quote_rate else None
            child = b.post(rng.choice(authors), reply_to=node, quote=quote)
            made.append(child)
            frontier.append((child, level + 1))
    if delete_rate:
        for i in made:
            if rng.random() < delete_rate:
                b.delete(i)
    return made


def tombstone_conversation(b: Builder, authors: Sequence[int], title: str) -> dict[str, int]:
    """Every deletion case post_writes handles, in one small conversation."""
    a = authors
    root = b.post(a[0], title)
    holder = b.post(a[1], "I will delete this, but the replies stay", reply_to=root)
    b.post(a[2], "reply kept under a tombstone", reply_to=holder)
    b.post(a[3], "another reply kept under a tombstone", reply_to=holder)
    b.delete(holder)                                   # tombstone: listed, counted by root
    gone = b.post(a[4], "deleted leaf", reply_to=root)
    b.delete(gone)                                     # unlisted, not counted
    outer = b.post(a[5], "deleted, and its only reply too", reply_to=root)
    inner = b.post(a[6], "deleted leaf under a deleted post", reply_to=outer)
    b.delete(outer)
    b.delete(inner)                                    # both unlisted (the ripple)
    top = b.post(a[7], "deleted above a deleted post that keeps a live reply", reply_to=root)
    mid = b.post(a[8], "deleted middle", reply_to=top)
    b.post(a[9], "still here, two tombstones up", reply_to=mid)
    b.delete(top)
    b.delete(mid)                                      # both tombstones
    b.post(a[10], "a normal reply", reply_to=root)
    return {"with_tombstone": root, "tombstone": holder}


# --------------------------------------------------------------------------------------------
# Presets

def _build_demo(b: Builder) -> dict[str, int]:
    rng = b.rng
    people = []
    for i, name in enumerate(_FIRST_NAMES):
        people.append(b.account(name, name.title() + (" Moss" if i % 7 == 0 else ""),
                                protected=i in (11, 23, 37), has_avatar=i % 3 != 2,
                                verified=i in (0, 5, 17)))
    public = [p for i, p in enumerate(people) if i not in (11, 23, 37)]
    roots: dict[str, int] = {}

    welcome = b.post(people[0], "Welcome to Arbor! Reply threads rendered as bounded trees.",
                     likes=1200)
    build_conversation(b, welcome, authors=people, max_posts=500, fanout=6.0, min_fanout=12,
                       delete_rate=0.03)
    roots["welcome"] = welcome

    quoted = b.post(people[5], "Hot take: every thread view should be bounded.", likes=800)
    build_conversation(b, quoted, authors=people, max_posts=250, fanout=4.0, min_fanout=6,
                       delete_rate=0.03)
    roots["quoted"] = quoted

    earlier = [welcome, quoted]
    topics = ("What are you reading this week?", "Post your desk setup.",
              "Tabs or spaces, final answer.", "Show me your favourite small tool.",
              "Which database would you pick today, and why?",
              "Unpopular opinions about pagination.", "Share a bug that took you a week.")
    sizes = (300, 220, 160, 120, 80, 50, 30)
    for k, (topic, size) in enumerate(zip(topics, sizes)):
        root = b.post(public[(k * 5 + 3) % len(public)], topic)
        made = build_conversation(b, root, authors=people, max_posts=size, fanout=3.0 + k % 3,
                                  min_fanout=4, quote_pool=earlier, quote_rate=0.02,
                                  delete_rate=0.04)
        earlier.extend(made[:20])
        roots[f"topic_{k + 1}"] = root
    # Quotes of "quoted" from other conversations, one of them deleted (not counted), and a
    # quote of a deleted post (renders as a deleted quote).
    for k in range(6):
        q = b.post(rng.choice(public), f"Quoting this one ({k + 1})", quote=quoted)
        if k == 5:
            b.delete(q)
    gone = b.post(people[8], "This post will be deleted after it is quoted")
    b.delete(gone)
    roots["quote_of_deleted"] = b.post(people[9], "Quoting a post that is gone now", quote=gone)

    roots.update(tombstone_conversation(b, public, "Deleted replies leave tombstones"))

    chain = b.chain(public[:4], 1000, "Deep chain")
    roots["deep_chain_root"], roots["deep_chain_leaf"] = chain[0], chain[-1]
    roots["deep_chain_middle"] = chain[500]
    return roots


def _build_viral(b: Builder) -> dict[str, int]:
    rng = b.rng
    star = b.account("star", "Very Famous Person", has_avatar=True, verified=True)
    authors = b.accounts(5000)
    roots: dict[str, int] = {}
    viral = b.post(star, "This post went viral.", likes=2_000_000)
    roots["viral"] = viral
    direct = b.replies(viral, 1_000_000, authors)
    # The first 1,000 replies get power-law subtrees, and enough likes to rank near the top.
    pool = [viral]
    for k, top in enumerate(direct[:1000]):
        b.set_likes(top, 2_000_000 // (k + 1))
        made = build_conversation(b, top, authors=authors, max_posts=2000, fanout=2.0,
                                  min_fanout=1, decay=0.55, quote_pool=pool, quote_rate=0.01,
                                  delete_rate=0.02)
        if len(made) > 50 and len(pool) < 50:
            pool.append(top)
    roots["viral_top_reply"] = direct[0]
    # 1% of the bulk replies deleted: mostly leaves (vanish), some of the top ones (tombstones).
    for i in rng.sample(direct, 10_000):
        b.delete(i)
    b.delete(direct[3])
    roots["with_tombstone"] = direct[3]
    roots.update({f"small_{k}": v for k, v in
                  tombstone_conversation(b, authors, "Deleted replies leave tombstones").items()})
    for k in range(200):
        q = b.post(rng.choice(authors), f"Quote {k} of the viral post", quote=viral)
        if k % 20 == 0:
            b.delete(q)
    roots["quote_of_viral"] = q
    chain = b.chain(authors[:4], 1000, "Deep chain")
    roots["deep_chain_root"], roots["deep_chain_leaf"] = chain[0], chain[-1]
    return roots


def _build_bench(b: Builder) -> dict[str, int]:
    # The roots' author never replies (the focal author's replies are ranked first), and no
    # author is protected (hidden from anonymous viewers): the two renders must not differ.
    host = b.account("host", "Benchmark Host", has_avatar=True)
    authors = b.accounts(1000, protected=0.0)
    roots: dict[str, int] = {}
    for name, n in (("replies_1k", 1_000), ("replies_1m", 1_000_000)):
        root = b.post(host, f"Benchmark conversation with {n:,} direct replies", likes=5000)
        roots[name] = root
        direct = b.replies(root, n, authors, likes_cap=100_000)
        # Identical shape under the 50 top-ranked replies in both conversations, so a render at
        # default limits (depth 6, branching 10, max_nodes 300) does the same work in both.
        for k, top in enumerate(direct[:50]):
            b.set_likes(top, 10_000_000 - k * 100_000)   # ranks above every capped reply
            for kid in b.replies(top, 20, authors):
                b.replies(kid, 5, authors)
    return roots


PRESETS: dict[str, Preset] = {
    "demo": Preset("demo", 0xDE30_0001, 101, datetime(2024, 1, 1, tzinfo=timezone.utc),
                   _build_demo),
    "viral": Preset("viral", 0x1A1_0002, 102, datetime(2024, 2, 1, tzinfo=timezone.utc),
                    _build_viral),
    "bench": Preset("bench", 0xBE7C_0003, 103, datetime(2024, 3, 1, tzinfo=timezone.utc),
                    _build_bench),
}


def generate(preset: Preset) -> Rows:
    """The rows of a preset (deterministic)."""
    b = Builder(preset)
    roots = preset.build(b)
    return b.finalize(roots)


# --------------------------------------------------------------------------------------------
# Loading

def _progress(total: int, desc: str):
    # disable=None: no bar when stderr is not a terminal (logs, CI, tests)
    return tqdm(total=total, desc=desc, unit="posts", unit_scale=True, file=sys.stderr,
                disable=None, leave=False)


def _counting(rows: list[tuple], bar, size: int = _CHUNK) -> Iterator[tuple]:
    """The rows, moving the progress bar every `size` rows."""
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        yield from chunk
        bar.update(len(chunk))


# Rebuild the secondary indexes of posts rather than maintain them row by row when a preset
# adds at least this many posts and the table holds at most REBUILD_MAX_EXISTING times as many
# already: one sorted build per index is several times cheaper than a million random
# insertions into each of eight indexes.
REBUILD_MIN_POSTS = 50_000
REBUILD_MAX_EXISTING = 2
# ANALYZE after loading unless the preset is under a tenth of what the tables held already
# (then it cannot move the statistics; autovacuum's analyze will do).
ANALYZE_MAX_EXISTING = 10

PLAIN_POST_INDEXES = """
    SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = 'posts'::regclass
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
    ORDER BY c.relname"""


async def _existing_posts(con: Any, up_to: int) -> int:
    """How many posts the table holds, counting no further than `up_to`."""
    return await con.fetchval("SELECT count(*) FROM (SELECT 1 FROM posts LIMIT $1) s", up_to)


def _lock_key(name: str) -> int:
    return 0x5EED_0000_0000 | zlib.crc32(name.encode())


async def seed(con: Any, preset: str | Preset, *, rebuild_indexes: bool | None = None) -> dict:
    """Load a preset through an asyncpg connection, once: a preset that already ran returns its
    stored report with "skipped": true and writes nothing.

    rebuild_indexes: drop the plain secondary indexes of posts before the COPY and create them
    again after it, in the same transaction (None: when the preset is big next to the table;
    see REBUILD_MIN_POSTS). The definitions come from the catalog, so they are exactly the
    migrations' indexes. While the transaction runs, posts is locked against readers."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    started = time.perf_counter()
    async with con.transaction():
        await con.execute("SET LOCAL synchronous_commit = off; SET LOCAL statement_timeout = 0")
        await con.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(p.name))
        done = await con.fetchrow("SELECT posts, roots FROM seed_runs WHERE preset = $1", p.name)
        if done is not None:
            roots = done["roots"]
            roots = json.loads(roots) if isinstance(roots, str) else roots
            log.info("seed %s: already loaded (%s posts); skipped", p.name, done["posts"])
            return {"preset": p.name, "posts": done["posts"],
                    "roots": {k: str(v) for k, v in roots.items()},
                    "seconds": round(time.perf_counter() - started, 3),
                    "posts_per_second": None, "skipped": True}

        rows = generate(p)
        generated = time.perf_counter()
        if await con.fetchval("SELECT current_setting('is_superuser') = 'on'"):
            # Skip the per-row foreign-key triggers (posts.author_id): every author is one of
            # the accounts loaded just before, by construction. Superuser only; else keep them.
            await con.execute("SET LOCAL session_replication_role = replica")
        new = len(rows.posts)
        existing = await _existing_posts(
            con, max(REBUILD_MAX_EXISTING, ANALYZE_MAX_EXISTING) * new + 1)
        if rebuild_indexes is None:
            rebuild_indexes = new >= REBUILD_MIN_POSTS and existing <= REBUILD_MAX_EXISTING * new
        indexes = await con.fetch(PLAIN_POST_INDEXES) if rebuild_indexes else []
        for index in indexes:
            await con.execute(f'DROP INDEX "{index["name"]}"')
        await con.copy_records_to_table("accounts", records=rows.accounts, columns=ACCOUNT_COLUMNS)
        with _progress(2 * new, f"seed {p.name}") as bar:
            # One COPY per table, fed by a generator: asyncpg encodes the next rows while the
            # server is still inserting the previous ones.
            await con.copy_records_to_table("posts", records=_counting(rows.posts, bar),
                                            columns=POST_COLUMNS)
            await con.copy_records_to_table("post_counts", records=_counting(rows.counts, bar),
                                            columns=COUNT_COLUMNS)
        loaded = time.perf_counter()
        if indexes:
            await con.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for index in indexes:
                await con.execute(index["definition"])
        await con.execute("INSERT INTO seed_runs (preset, posts, roots) VALUES ($1, $2, $3)",
                          p.name, new, json.dumps(rows.roots))
    committed = time.perf_counter()
    analyze = existing <= ANALYZE_MAX_EXISTING * new
    if analyze:
        await con.execute("ANALYZE accounts, posts, post_counts")
    seconds = time.perf_counter() - started
    rate = new / seconds if seconds > 0 else None
    log.info("seed %s: %d posts, %d accounts in %.2fs (generate %.2fs, copy %.2fs, %s %.2fs, %s "
             "%.2fs): %.0f posts/s", p.name, new, len(rows.accounts), seconds,
             generated - started, loaded - generated,
             f"rebuild {len(indexes)} indexes, commit" if indexes else "commit",
             committed - loaded, "analyze" if analyze else "no analyze (small next to the table)",
             seconds - (committed - started), rate or 0)
    return {"preset": p.name, "posts": new,
            "roots": {k: str(v) for k, v in rows.roots.items()},
            "seconds": round(seconds, 3),
            "posts_per_second": round(rate) if rate else None, "skipped": False}


async def seed_dsn(dsn: str, preset: str | Preset) -> dict:
    """Connect, apply pending migrations, seed, disconnect."""
    con = await asyncpg.connect(dsn)
    try:
        await migrations.apply(con)
        return await seed(con, preset)
    finally:
        await con.close()


async def seeded_roots(db: Any) -> dict[str, dict[str, int]]:
    """{preset: {name: post id}} of every preset loaded in this database (the home page's
    demo links). One round trip over seed_runs (a row per preset)."""
    rows = await db.fetch("SELECT preset, roots FROM seed_runs ORDER BY preset")
    out = {}
    for row in rows:
        roots = row["roots"]
        roots = json.loads(roots) if isinstance(roots, str) else roots
        out[row["preset"]] = {name: int(i) for name, i in (roots or {}).items()}
    return out
