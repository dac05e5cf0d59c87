"""The sharding plan (ops/scale-out.md) stays true: every reference to a table distributed by
conversation_id (posts, post_counts, pending_posts) in every statement a thread request
sends is keyed by conversation_id, or is one of the by-id lookups the plan routes.

How: render conversations (every sort, anonymous and as a viewer with relations, with
quotes, cut trees and their cursors, ancestors), page replies and quotes, and write a reply
with a quote and delete it through the API, recording every statement the service sends
(Database.query_log). Each reference `FROM|JOIN|UPDATE|INTO <table> [alias]` is classified
by reading the SQL (plans would depend on table statistics; the text does not):
  conversation  its alias's conversation_id is constrained (or, unaliased, conversation_id is
                in its scope; an INSERT names conversation_id): one shard;
  post id       by the post's id (`id = $1`, `id = ANY(...)`, `post_id = p.id`, `id =
                c.parent`): the entry points and the hydration of known ids, routed by
                post id -> conversation (ops/scale-out.md, "Routing by post id");
  quote         by quote_of_id: the quotes of a post, which live in other conversations
                (ops/scale-out.md, "Quotes across conversations");
  pending       pending_posts by in_reply_to_id: the parent may not exist yet, so its
                conversation is unknown (ops/scale-out.md, "Pending replies");
  per shard     the reaction fold's batch of reaction_deltas (SKIP LOCKED): a background
                job that runs on every shard for that shard's rows (ops/scale-out.md,
                "Reactions").
Anything else (by author, a count over a table, a scan) fails here: a query the plan does
not route; change the plan with it.
"""
from __future__ import annotations

import re

import pytest

from service.app import create_app
from service.http.keys import DB

from .helpers import cursors_in

DISTRIBUTED = ("posts", "post_counts", "pending_posts", "reactions", "reaction_deltas")
_KEYWORDS = {"where", "on", "set", "join", "left", "inner", "cross", "right", "full", "order",
             "group", "limit", "values", "using", "returning", "for", "union", "as", "and",
             "offset", "natural", "lateral", "window", "having"}
_REFERENCE = re.compile(r"\b(FROM|JOIN|UPDATE|INTO)\s+"
                        r"(posts|post_counts|pending_posts|reactions|reaction_deltas)\b"
                        r"(?:\s+(?:AS\s+)?([a-z_]\w*))?", re.I)


# what a conversation_id may be compared with to pick one shard: a parameter, or another
# reference's conversation (a co-located join), e.g. the chain's `c.conv`
_KEY = r"\$\d+|\w+\.(conversation_id|conv)\b|\(\$\d+"


def _scope(sql: str, at: int) -> str:
    """From `at` to the end of the (sub)query it is in (its closing parenthesis)."""
    depth = 0
    for i in range(at, len(sql)):
        if sql[i] == "(":
            depth += 1
        elif sql[i] == ")":
            depth -= 1
            if depth < 0:
                return sql[at:i]
    return sql[at:]


def classify(sql: str) -> list[tuple[str, str, str]]:
    """(table, alias, kind) of every reference to a distributed table; kind is one of
    conversation, post id, quote, pending, or "unrouted"."""
    sql = " ".join(sql.split())
    out = []
    for m in _REFERENCE.finditer(sql):
        verb, table, alias = m.group(1).upper(), m.group(2), m.group(3)
        if alias is None or alias.lower() in _KEYWORDS:
            alias = None
        scope = _scope(sql, m.end())
        name = re.escape(alias or table)
        own = rf"\b{name}\." if alias else r"(?<![\w.])"  # a column of this reference
        if verb == "INTO":
            columns = scope.split(")")[0]
            kind = "conversation" if "conversation_id" in columns else "unrouted"
        elif (re.search(rf"\b{name}\.conversation_id (=|IN) ({_KEY})|({_KEY}) = {name}\."
                        r"conversation_id\b", sql) if alias
              else re.search(rf"(?<![\w.])conversation_id (=|IN) ({_KEY})", scope)):
            kind = "conversation"
        elif re.search(rf"{own}id = \w+\.conversation_id\b", scope):
            kind = "conversation"  # the root: its id is the conversation's
        elif re.search(rf"{own}id = \w+\.quote_of_id\b", scope):
            kind = "quote"  # the quoted post, by its id: in another conversation
        elif re.search(rf"{own}(id|post_id) = (\$\d+|ANY ?\(|\w+\.(id|parent|want|post_id)\b)",
                       scope) or (alias and re.search(
                           rf"\b\w+\.(id|post_id|parent|want) = {name}\.(id|post_id)\b", sql)):
            kind = "post id"
        elif re.search(r"\bquote_of_id = ", scope):
            kind = "quote"
        elif table == "pending_posts" and re.search(r"\bin_reply_to_id = ", scope):
            kind = "pending"
        elif table == "reaction_deltas" and re.search(r"FOR UPDATE SKIP LOCKED", scope):
            kind = "per shard"  # the fold: a background job, run on each shard for its rows
        else:
            kind = "unrouted"
        out.append((table, alias or "", kind))
    return out


async def _exercise(client, world) -> None:
    author, viewer, other = [await world.account() for _ in range(3)]
    auth = {"Authorization": f"Bearer {await world.token(viewer)}"}
    await world.relate("follows", viewer, author)
    await world.relate("blocks", viewer, other)
    await world.mute_word(viewer, "noise")
    elsewhere = await world.post(author, "another conversation")
    chain = await world.chain(author, 4)
    root, focal = chain[0], chain[-1]
    for parent in await world.fan(author, focal, 12, rank=lambda i: i):
        await world.fan(other, parent, 3)
    await world.post(author, "a quote", reply_to=focal, quote=elsewhere)
    for sort in ("ranked", "newest", "oldest"):
        for headers in ({}, auth):
            r = await client.get(f"/v1/conversations/{focal}",
                                 params={"sort": sort, "branching": "4", "depth": "3",
                                         "ancestors": "2"}, headers=headers)
            assert r.status == 200, await r.text()
            body = await r.json()
            for cursor in list(cursors_in(body["focal"]["replies"]))[:3]:
                page = await client.get(f"/v1/conversations/{focal}/replies",
                                        params={"cursor": cursor}, headers=headers)
                assert page.status == 200, await page.text()
            if body["ancestors"]["cursor"]:
                up = await client.get(f"/v1/conversations/{focal}/ancestors",
                                      params={"cursor": body["ancestors"]["cursor"]},
                                      headers=headers)
                assert up.status == 200, await up.text()
    assert (await client.get(f"/v1/posts/{elsewhere}/quotes", headers=auth)).status == 200
    assert (await client.get(f"/v1/posts/{focal}", headers=auth)).status == 200
    for kind in ("like", "repost"):
        assert (await client.put(f"/v1/posts/{focal}/{kind}", headers=auth)).status in (200, 204)
    assert (await client.delete(f"/v1/posts/{focal}/like", headers=auth)).status in (200, 204)
    made = await client.post("/v1/posts", headers=auth,
                             json={"text": "mine", "in_reply_to_id": str(focal),
                                   "quote_of_id": str(root)})
    assert made.status == 201, await made.text()
    new_id = (await made.json())["id"]
    assert (await client.delete(f"/v1/posts/{new_id}", headers=auth)).status == 204


_SKIP = re.compile(r"^\s*(WITH RECURSIVE typeinfo_tree|SELECT current_setting|SELECT set_config)")


async def test_every_thread_statement_is_routable_by_conversation(aiohttp_client, settings,
                                                                  world):
    client = await aiohttp_client(create_app(settings))
    log: list[str] = []
    client.server.app[DB].query_log = log
    await _exercise(client, world)
    statements = sorted({q for q in log if not _SKIP.match(q)})
    kinds: dict[str, int] = {}
    unrouted = []
    for sql in statements:
        for table, alias, kind in classify(sql):
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "unrouted":
                unrouted.append(f"{table} {alias}: {' '.join(sql.split())[:400]}")
    # the exercise reached the thread queries, by conversation, and the by-id lookups
    assert kinds.get("conversation", 0) >= 10 and kinds.get("post id", 0) >= 5, kinds
    assert not unrouted, ("statements on distributed tables that ops/scale-out.md does not "
                          "route:\n" + "\n".join(unrouted))


@pytest.mark.parametrize("sql, kinds", [
    ("SELECT p.id FROM posts p WHERE p.conversation_id = $1 AND p.in_reply_to_id = $2",
     ["conversation"]),
    ("SELECT 1 FROM posts WHERE conversation_id = $1 AND author_id = $2", ["conversation"]),
    ("SELECT * FROM posts WHERE id = $1", ["post id"]),
    ("SELECT * FROM posts p JOIN post_counts pc ON pc.post_id = p.id WHERE p.id = ANY($1)",
     ["post id", "post id"]),
    ("SELECT id FROM posts WHERE quote_of_id = $1", ["quote"]),
    ("SELECT 1 FROM posts p LEFT JOIN posts root ON root.id = p.conversation_id "
     "WHERE p.author_id = $1", ["unrouted", "conversation"]),
    ("SELECT 1 FROM posts d WHERE d.conversation_id = p.conversation_id", ["conversation"]),
    ("INSERT INTO posts (id, conversation_id, text) VALUES ($1, $2, $3)", ["conversation"]),
    ("INSERT INTO post_counts (post_id, likes) VALUES ($1, 0)", ["unrouted"]),
    ("SELECT * FROM posts WHERE author_id = $1", ["unrouted"]),
    ("SELECT count(*) FROM post_counts", ["unrouted"]),
    ("SELECT * FROM accounts a JOIN posts p ON p.author_id = a.id WHERE a.id = $1",
     ["unrouted"]),
])
def test_the_classifier_on_known_statements(sql, kinds):
    assert [k for _, _, k in classify(sql)] == kinds
