"""What a load test needs to know about a seeded preset, without psql: post ids per
conversation, the huge conversation, accounts with fresh bearer tokens, and a few labelled
replies so that section cursors exist (`arbor seed --preset bench --export loadtest/data.json`).

    data = await export(db, "bench", accounts=40, sample=60, labels=10)

Cost: bounded by its arguments, never by the size of a conversation. Per conversation, one
ranked top-K query per tree level (`posts_children_ranked`, at most `_LEVELS` levels of at
most `_FANOUT` parents), the labelled replies per section (under a `LIMIT`), and
`labels` label writes; one query for the accounts (by the preset's id range, the primary key);
one INSERT per token. Which conversation is huge comes from its root's stored counters.

Idempotent but for tokens: the sample is the same on every run (ranked order of seeded rows);
labels are topped up to `labels` per section and conversation (a second export labels
nothing); each export mints new tokens (label `loadtest`), the older ones stay valid.
"""
from __future__ import annotations

import json
from typing import Any

from . import account_tokens, label_writes
from .seeding import PRESETS
from .db import Database
from .section_rules import LOW_QUALITY, NORMAL, OFFENSIVE

TOKEN_LABEL = "loadtest"
_LEVELS = 3          # direct replies, their replies, and one level more (ancestors cursors)
_FANOUT = 8          # parents expanded per level


class PresetNotSeeded(LookupError):
    pass


async def _children(db: Database, conversation_id: int, parents: list[int], k: int,
                    section: int = NORMAL, *, lowest: bool = False,
                    not_by: int = 0) -> list[tuple[int, int]]:
    """(parent, child) of the top (or bottom) k children of each parent in one section, among
    those every viewer may see (not deleted; author active and not protected): a load test's
    anonymous reader opening one must get a 200."""
    order = "ASC" if lowest else "DESC"
    # The section is written into the statement (an int of section_rules, never input), as
    # in thread_queries: the pool plans generically, and with `section = $n` PostgreSQL
    # picks another index of (conversation_id, in_reply_to_id) and filters a million rows.
    rows = await db.fetch(
        f"""SELECT parent, c.id FROM unnest($2::bigint[]) AS parent,
                LATERAL (SELECT p.id FROM posts p JOIN accounts a ON a.id = p.author_id
                         WHERE p.conversation_id = $1 AND p.in_reply_to_id = parent
                           AND p.section = {int(section)} AND p.listed
                           AND p.deleted_at IS NULL
                           AND a.state = 'active' AND NOT a.protected
                           AND p.author_id <> $4
                         ORDER BY p.rank_key {order}, p.id {order} LIMIT $3) c""",
        conversation_id, parents, k, not_by)
    return [(r["parent"], r["id"]) for r in rows]


async def _labelled(db: Database, conversation_id: int, root: int, section: int,
                    up_to: int) -> int:
    """How many of the root's direct replies are in `section`, counting no further than up_to
    (rows fetched under a LIMIT: a command, not a request, but bounded all the same)."""
    rows = await db.fetch(
        f"""SELECT id FROM posts WHERE conversation_id = $1 AND in_reply_to_id = $2
               AND section = {int(section)} AND listed LIMIT $3""", conversation_id, root, up_to)
    return len(rows)


async def _label_bottom(db: Database, root: int, labels: int) -> dict[str, int]:
    """Top up the root's low_quality and offensive sections to `labels` replies each, with
    its lowest-ranked normal replies (spam 0.99, abusive 0.99: over any sane threshold), not
    the root author's (never demoted). A conversation with fewer than 4 * labels direct
    replies is left as it is: labels would empty its normal list."""
    row = await db.fetchrow(
        """SELECT p.author_id, c.replies_normal FROM posts p
           JOIN post_counts c ON c.post_id = p.id WHERE p.id = $1""", root)
    added = {"spam": 0, "abusive": 0}
    if row is None or row["replies_normal"] < 4 * labels:
        return added
    for label, section in (("spam", LOW_QUALITY), ("abusive", OFFENSIVE)):
        missing = labels - await _labelled(db, root, root, section, labels)
        targets = await _children(db, root, [root], missing, lowest=True,
                                  not_by=row["author_id"]) if missing > 0 else []
        for _, post_id in targets:
            await label_writes.upsert_label(db, post_id, label, 0.99)
        added[label] = len(targets)
    return added


async def _conversation(db: Database, name: str, root: int, sample: int) -> dict[str, Any]:
    """The root, a ranked sample of its tree by level, and its stored reply count."""
    replies = await db.fetchval(
        """SELECT replies_normal + replies_low_quality + replies_offensive
           FROM post_counts WHERE post_id = $1""", root) or 0
    row = await db.fetchrow("SELECT conversation_id FROM posts WHERE id = $1", root)
    conversation_id = row["conversation_id"] if row else root
    levels: list[list[str]] = []
    parents = [root]
    for depth in range(_LEVELS):
        k = sample if depth == 0 else max(2, sample // (_FANOUT * 2))
        found = await _children(db, conversation_id, parents, k)
        if not found:
            break
        levels.append([str(child) for _, child in found])
        # the next level under the best-ranked parents (they carry the seeded subtrees)
        parents = [child for _, child in found][:_FANOUT]
    return {"name": name, "root": str(root), "conversation_id": str(conversation_id),
            "replies": replies, "levels": levels}


async def export(db: Database, preset: str, *, accounts: int = 40, sample: int = 60,
                 labels: int = 10) -> dict[str, Any]:
    """The load-test data of a seeded preset (see the module's docstring). PresetNotSeeded
    when `arbor seed --preset NAME` has not run on this database."""
    done = await db.fetchrow("SELECT roots FROM seed_runs WHERE preset = $1", preset)
    if done is None:
        raise PresetNotSeeded(preset)
    roots = done["roots"]
    roots = json.loads(roots) if isinstance(roots, str) else roots
    conversation_roots: dict[int, str] = {}
    for name, post_id in roots.items():
        row = await db.fetchrow("SELECT conversation_id FROM posts WHERE id = $1",
                                int(post_id))
        if row is not None and row["conversation_id"] == int(post_id):
            conversation_roots.setdefault(int(post_id), name)   # roots only, not inner posts
    labelled = {}
    if labels > 0:
        for root in conversation_roots:
            labelled[str(root)] = await _label_bottom(db, root, labels)
    conversations = [await _conversation(db, name, root, sample)
                     for root, name in conversation_roots.items()]
    conversations = [c for c in conversations if c["levels"]]
    huge = max(conversations, key=lambda c: c["replies"])["root"] if conversations else None

    worker = PRESETS[preset].worker
    rows = await db.fetch(
        """SELECT id, handle FROM accounts WHERE id BETWEEN $1 AND $2 AND state = 'active'
           AND NOT protected ORDER BY id LIMIT $3""",
        worker << 32, ((worker + 1) << 32) - 1, accounts)
    minted = []
    for r in rows:
        token = await account_tokens.create_token(db, r["id"], TOKEN_LABEL)
        minted.append({"id": str(r["id"]), "handle": r["handle"], "token": token.token})
    return {"preset": preset, "conversations": conversations, "huge_conversation": huge,
            "accounts": minted, "labelled": labelled}
