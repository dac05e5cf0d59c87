"""The Mastodon-compatible subset over HTTP (service/api/mastodon/): entity shapes, the
uniform 404 in Mastodon's words, context's depth-first order, bounds, cuts and Link header,
hidden posts' replies kept attached, posting (form and JSON, Idempotency-Key, quotes),
deleting, favourite and reblog (exact under concurrent likers)."""
from __future__ import annotations

import asyncio
import itertools
import re

import pytest
from multidict import MultiDict

from service.app import create_app
from storage import account_queries, counter_writes, reactions

_keys = itertools.count()
STATUS_KEYS = {"id", "created_at", "in_reply_to_id", "in_reply_to_account_id", "sensitive",
               "spoiler_text", "visibility", "language", "uri", "url", "replies_count",
               "reblogs_count", "favourites_count", "quotes_count", "edited_at", "content",
               "reblog", "account", "media_attachments", "mentions", "tags", "emojis", "card",
               "poll", "quote", "quote_approval"}
VIEWER_KEYS = {"favourited", "reblogged", "muted", "bookmarked", "filtered"}
ACCOUNT_KEYS = {"id", "username", "acct", "display_name", "locked", "bot", "created_at", "note",
                "url", "uri", "avatar", "avatar_static", "header", "header_static",
                "followers_count", "following_count", "statuses_count", "emojis", "fields"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _signed_in(world, handle: str | None = None) -> tuple[int, dict[str, str]]:
    me = await world.account(handle)
    return me, bearer(await world.token(me))


async def _get(client, path: str, headers=None, status: int = 200, **params):
    resp = await client.get(path, headers=headers or {}, params=params)
    assert resp.status == status, await resp.text()
    return await resp.json()


def _ids(statuses) -> list[str]:
    return [s["id"] for s in statuses]


def _without_date(headers) -> dict[str, str]:
    # Date and X-Request-Id (random per request: independent of the post) aside
    return {k: v for k, v in headers.items() if k.lower() not in ("date", "x-request-id")}


# -- instance and accounts -----------------------------------------------------------------

async def test_instance_reports_a_mastodon_version_and_arbor_limits(client, settings):
    for path in ("/api/v1/instance", "/api/v2/instance"):
        body = await _get(client, path)
        assert re.fullmatch(r"4\.5\.0 \(compatible; Arbor [0-9.]+\)", body["version"])
        assert body["configuration"]["statuses"]["max_characters"] == settings.max_post_length
    assert (await _get(client, "/api/v2/instance"))["api_versions"] == {"mastodon": 0}


async def test_verify_credentials_and_account(client, world):
    me, auth = await _signed_in(world, "masto_self")
    body = await _get(client, "/api/v1/accounts/verify_credentials", auth)
    assert ACCOUNT_KEYS <= set(body) and body["id"] == str(me)
    assert body["username"] == body["acct"] == "masto_self"
    assert body["source"]["privacy"] == "public"
    other = await _get(client, f"/api/v1/accounts/{me}")
    assert ACCOUNT_KEYS <= set(other) and "source" not in other
    resp = await client.get("/api/v1/accounts/verify_credentials")
    assert resp.status == 401
    assert isinstance((await resp.json())["error"], str)  # Mastodon's Error, not Arbor's
    resp = await client.get("/api/v1/accounts/verify_credentials",
                            headers=bearer("arb_not-a-token"))
    assert resp.status == 401 and isinstance((await resp.json())["error"], str)


async def test_an_unavailable_account_is_the_404_of_a_missing_one(client, world, db):
    gone = await world.account()
    await db.execute("UPDATE accounts SET state = 'suspended' WHERE id = $1", gone)
    answers = []
    for path in (f"/api/v1/accounts/{gone}", "/api/v1/accounts/999999999999",
                 "/api/v1/accounts/not-an-id"):
        resp = await client.get(path)
        answers.append((resp.status, await resp.read(), _without_date(resp.headers)))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][:2] == (404, b'{"error":"Record not found"}')
    assert answers[0][2]["Content-Length"] == str(len(answers[0][1]))


# -- statuses --------------------------------------------------------------------------------

async def test_status_has_mastodon_shape_and_escaped_content(client, world):
    author, auth = await _signed_in(world)
    root = await world.post(author, "a <b>bold</b> & \"quoted\"\n\nsecond line")
    reply = await world.post(author, "reply", reply_to=root)
    anonymous = await _get(client, f"/api/v1/statuses/{reply}")
    assert STATUS_KEYS <= set(anonymous) and not VIEWER_KEYS & set(anonymous)
    assert anonymous["in_reply_to_id"] == str(root)
    assert anonymous["in_reply_to_account_id"] == str(author)
    assert anonymous["account"]["id"] == str(author)
    signed = await _get(client, f"/api/v1/statuses/{root}", auth)
    assert VIEWER_KEYS <= set(signed) and signed["favourited"] is False
    assert signed["content"] == ("<p>a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;</p>"
                                 "<p>second line</p>")
    assert signed["replies_count"] == 1 and signed["in_reply_to_id"] is None


async def test_hidden_statuses_are_the_404_of_missing_ones_in_bytes(client, world):
    """Deleted, by a blocked account, protected and not followed, muted word, missing, and not
    an id at all: the same status, body and headers on every route that names a status."""
    viewer, auth = await _signed_in(world)
    author = await world.account()
    blocked = await world.account()
    locked = await world.account(protected=True)
    await world.relate("blocks", viewer, blocked)
    await world.mute_word(viewer, "forbiddenword")
    deleted = await world.post(author, "to delete")
    await world.delete(deleted)
    hidden = [deleted, await world.post(blocked, "blocked"), await world.post(locked, "locked"),
              await world.post(author, "has a forbiddenword"), 999_999_999_999_999, "nope"]
    for template, method in (("/api/v1/statuses/{}", "GET"),
                             ("/api/v1/statuses/{}/context", "GET"),
                             ("/api/v1/statuses/{}/favourite", "POST"),
                             ("/api/v1/statuses/{}/reblog", "POST"),
                             ("/api/v1/statuses/{}", "DELETE")):
        answers = set()
        for post_id in hidden:
            resp = await client.request(method, template.format(post_id), headers=auth)
            answers.add((resp.status, await resp.read(),
                         tuple(sorted(_without_date(resp.headers).items()))))
        assert len(answers) == 1, (template, answers)
        status, body, _ = answers.pop()
        assert (status, body) == (404, b'{"error":"Record not found"}')
    for post_id in hidden[:4]:  # replying to or quoting one: the same 404
        for field in ("in_reply_to_id", "quoted_status_id"):
            resp = await client.post("/api/v1/statuses", headers=auth,
                                     data={"status": "x", field: str(post_id)})
            assert (resp.status, await resp.read()) == (404, b'{"error":"Record not found"}')


# -- context ---------------------------------------------------------------------------------

async def test_context_is_depth_first_with_the_root_kept(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    x = await world.post(a, "x", reply_to=root)
    x1 = await world.post(a, "x1", reply_to=x)
    x1a = await world.post(a, "x1a", reply_to=x1)
    x2 = await world.post(a, "x2", reply_to=x)
    y = await world.post(a, "y", reply_to=root)
    y1 = await world.post(a, "y1", reply_to=y)
    ctx = await _get(client, f"/api/v1/statuses/{root}/context", sort="oldest")
    assert ctx["ancestors"] == []
    assert _ids(ctx["descendants"]) == [str(i) for i in (x, x1, x1a, x2, y, y1)]
    assert ctx["more"] == [] and ctx["partial"] is False and ctx["degraded"] == []
    parents = {s["id"]: s["in_reply_to_id"] for s in ctx["descendants"]}
    assert parents[str(x1a)] == str(x1) and parents[str(y)] == str(root)
    focal = await _get(client, f"/api/v1/statuses/{x1a}/context")
    assert _ids(focal["ancestors"]) == [str(root), str(x), str(x1)]  # root first
    assert focal["descendants"] == []


async def test_context_keeps_the_root_and_links_the_ancestors_gap(client, world):
    a = await world.account()
    chain = await world.chain(a, 12)
    resp = await client.get(f"/api/v1/statuses/{chain[-1]}/context", params={"ancestors": 4})
    assert resp.status == 200
    ctx = await resp.json()
    shown = _ids(ctx["ancestors"])
    assert shown[0] == str(chain[0]) and len(shown) == 4  # the root, then the nearest three
    assert shown[1:] == [str(i) for i in chain[-4:-1]]
    gap = [c for c in ctx["more"] if c["kind"] == "ancestors"]
    assert len(gap) == 1 and gap[0]["count"] == 11 - 4 + 1 - 1
    assert f'<{gap[0]["href"]}>; rel="up"' in resp.headers["Link"]
    rest = []
    href = gap[0]["href"]
    while href:
        page = await _get(client, href)
        assert page["descendants"] == []
        rest = _ids(page["ancestors"]) + rest  # each page is root-most first
        href = next((c["href"] for c in page["more"] if c["kind"] == "ancestors"), None)
    assert rest + shown[1:] == [str(i) for i in chain[1:-1]]


async def test_context_keeps_hidden_posts_replies_attached(client, world):
    viewer, auth = await _signed_in(world)
    a, blocked = await world.account(), await world.account()
    await world.relate("blocks", viewer, blocked)
    root = await world.post(a, "root")
    deleted = await world.post(a, "deleted later", reply_to=root)
    under_deleted = await world.post(a, "under the deleted one", reply_to=deleted)
    by_blocked = await world.post(blocked, "by a blocked account", reply_to=root)
    under_blocked = await world.post(a, "under the blocked one", reply_to=by_blocked)
    leaf_deleted = await world.post(a, "a deleted leaf", reply_to=root)
    await world.delete(deleted)
    await world.delete(leaf_deleted)
    ctx = await _get(client, f"/api/v1/statuses/{root}/context", auth, sort="oldest")
    assert _ids(ctx["descendants"]) == [str(under_deleted), str(under_blocked)]
    by_id = {s["id"]: s for s in ctx["descendants"]}
    # attached to the hidden post, whose author is not named
    assert by_id[str(under_deleted)]["in_reply_to_id"] == str(deleted)
    assert by_id[str(under_blocked)]["in_reply_to_id"] == str(by_blocked)
    assert by_id[str(under_blocked)]["in_reply_to_account_id"] is None
    anonymous = await _get(client, f"/api/v1/statuses/{root}/context", sort="oldest")
    assert _ids(anonymous["descendants"]) == [str(under_deleted), str(by_blocked),
                                              str(under_blocked)]


async def test_context_is_bounded_and_every_cut_reaches_the_rest(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    fan = await world.fan(a, root, 23)
    deep = await world.fan(a, fan[0], 7)
    resp = await client.get(f"/api/v1/statuses/{root}/context",
                            params={"branching": 5, "depth": 2, "sort": "oldest"})
    ctx = await resp.json()
    assert len(ctx["descendants"]) == 5 + 5  # five replies, five under the first
    cuts = {(c["kind"], c["status_id"]): c for c in ctx["more"]}
    assert cuts[("replies", str(root))]["count"] == 18
    assert cuts[("replies", str(fan[0]))]["count"] == 2
    links = resp.headers["Link"]
    for cut in ctx["more"]:
        assert (f'<{cut["href"]}>; rel="replies"; anchor="/api/v1/statuses/{cut["status_id"]}"; '
                f'section="normal"') in links
    seen = _ids(ctx["descendants"])
    todo = [c["href"] for c in ctx["more"]]
    while todo:
        page = await _get(client, todo.pop())
        assert page["ancestors"] == []
        seen += _ids(page["descendants"])
        todo += [c["href"] for c in page["more"]]
    assert sorted(seen) == sorted(str(i) for i in fan + deep)
    assert len(seen) == len(set(seen))


async def test_context_link_header_is_bounded_by_the_setting(aiohttp_client, settings, world):
    client = await aiohttp_client(create_app(settings.replace(mastodon_context_max_links=2)))
    a = await world.account()
    root = await world.post(a, "root")
    for parent in await world.fan(a, root, 4):
        await world.fan(a, parent, 3)
    resp = await client.get(f"/api/v1/statuses/{root}/context",
                            params={"branching": 2, "depth": 2})
    ctx = await resp.json()
    assert len(ctx["more"]) == 3  # the root's list, and the lists of its two shown replies
    assert resp.headers["Link"].count("rel=") == 2


async def test_context_from_the_render_cache_keeps_its_link_header(aiohttp_client, settings,
                                                                  world):
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=60)))
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, 4)
    answers = []
    for _ in range(2):
        resp = await client.get(f"/api/v1/statuses/{root}/context", params={"branching": 2})
        answers.append((resp.headers["Arbor-Cache"], resp.headers.get("Link"),
                        await resp.read()))
    assert [a[0] for a in answers] == ["miss", "hit"]
    assert answers[0][1] and answers[0][1:] == answers[1][1:]


async def test_context_continuation_cursors_are_checked(client, world):
    viewer, auth = await _signed_in(world)
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, 4)
    ctx = await _get(client, f"/api/v1/statuses/{root}/context", auth, branching=2)
    href = ctx["more"][0]["href"]
    resp = await client.get(href)  # issued to the viewer: not for the anonymous one
    assert resp.status == 400 and "another viewer" in (await resp.json())["error"]
    resp = await client.get(href.replace("replies_cursor=", "replies_cursor=x"), headers=auth)
    assert resp.status == 400 and isinstance((await resp.json())["error"], str)
    resp = await client.get(f"/api/v1/statuses/{root}/context",
                            params={"replies_cursor": "a.b", "ancestors_cursor": "a.b"})
    assert resp.status == 400
    # what Mastodon would ignore is ignored (a widget's cache buster)
    await _get(client, f"/api/v1/statuses/{root}/context", _="12345")


# -- writes ----------------------------------------------------------------------------------

async def test_post_a_reply_as_a_form_and_as_json_with_idempotency(client, world, db):
    me, auth = await _signed_in(world)
    root = await world.post(await world.account(), "root")
    key = f"masto-key-{next(_keys)}"
    form = {"status": "a reply", "in_reply_to_id": str(root), "sensitive": "0"}
    first = await client.post("/api/v1/statuses", data=form,
                              headers={**auth, "Idempotency-Key": key})
    assert first.status == 200, await first.text()
    status = await first.json()
    assert status["in_reply_to_id"] == str(root) and status["content"] == "<p>a reply</p>"
    assert status["account"]["id"] == str(me) and status["favourited"] is False
    again = await client.post("/api/v1/statuses", data=form,
                              headers={**auth, "Idempotency-Key": key})
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == status
    assert await db.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", me) == 1
    reused = await client.post("/api/v1/statuses", data={**form, "status": "other"},
                               headers={**auth, "Idempotency-Key": key})
    assert reused.status == 422 and isinstance((await reused.json())["error"], str)
    as_json = await client.post("/api/v1/statuses", headers=auth,
                                json={"status": "json", "in_reply_to_id": int(status["id"])})
    assert as_json.status == 200 and (await as_json.json())["in_reply_to_id"] == status["id"]
    ctx = await _get(client, f"/api/v1/statuses/{root}/context")
    assert _ids(ctx["descendants"]) == [status["id"], (await as_json.json())["id"]]


@pytest.mark.parametrize("params, says", [
    ({}, "Text can't be blank"),
    ({"status": "   "}, "empty"),
    ({"status": "x" * 501}, "at most 500"),
    ({"status": "hi", "visibility": "private"}, "only public"),
    ({"status": "hi", "spoiler_text": "cw"}, "content warnings"),
    ({"status": "hi", "media_ids[]": "1"}, "media"),
    ({"status": "hi", "poll[options][]": "a"}, "polls"),
    ({"status": "hi", "quote_approval_policy": "nobody"}, "quote"),
])
async def test_what_arbor_cannot_post_is_a_422(client, world, params, says):
    _, auth = await _signed_in(world)
    resp = await client.post("/api/v1/statuses", data=params, headers=auth)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error.startswith("Validation failed: ") and says in error


async def test_anonymous_writes_are_401(client):
    for method, path in (("POST", "/api/v1/statuses"), ("DELETE", "/api/v1/statuses/1"),
                         ("POST", "/api/v1/statuses/1/favourite")):
        resp = await client.request(method, path, data={"status": "x"})
        assert resp.status == 401 and "WWW-Authenticate" in resp.headers
        assert isinstance((await resp.json())["error"], str)


async def test_quote_a_status(client, world):
    _, auth = await _signed_in(world)
    author = await world.account()
    quoted = await world.post(author, "quoted")
    resp = await client.post("/api/v1/statuses", headers=auth,
                             data={"status": "look", "quoted_status_id": str(quoted)})
    status = await resp.json()
    assert status["quote"]["state"] == "accepted"
    assert status["quote"]["quoted_status"]["id"] == str(quoted)
    assert (await _get(client, f"/api/v1/statuses/{quoted}"))["quotes_count"] == 1
    await world.delete(quoted)
    again = await _get(client, f"/api/v1/statuses/{status['id']}")
    assert again["quote"] == {"state": "deleted", "quoted_status": None}


async def test_delete_own_status_only(client, world):
    me, auth = await _signed_in(world)
    _, other_auth = await _signed_in(world)
    resp = await client.post("/api/v1/statuses", headers=auth, data={"status": "mine"})
    mine = (await resp.json())["id"]
    resp = await client.delete(f"/api/v1/statuses/{mine}", headers=other_auth)
    assert (resp.status, await resp.read()) == (404, b'{"error":"Record not found"}')
    resp = await client.delete(f"/api/v1/statuses/{mine}", headers=auth)
    assert resp.status == 200
    deleted = await resp.json()
    assert deleted["id"] == mine and deleted["text"] == "mine"
    await _get(client, f"/api/v1/statuses/{mine}", status=404)
    resp = await client.delete(f"/api/v1/statuses/{mine}", headers=auth)
    assert resp.status == 404


async def test_favourite_and_reblog_are_idempotent_and_shown(client, world):
    _, auth = await _signed_in(world)
    root = await world.post(await world.account(), "root")
    reply = await world.post(await world.account(), "reply", reply_to=root)
    for path, field, count in (("favourite", "favourited", "favourites_count"),
                               ("reblog", "reblogged", "reblogs_count")):
        for _ in range(2):  # again: no change
            resp = await client.post(f"/api/v1/statuses/{reply}/{path}", headers=auth)
            body = await resp.json()
            assert resp.status == 200 and body[field] is True and body[count] == 1
    ctx = await _get(client, f"/api/v1/statuses/{root}/context", auth)
    assert ctx["descendants"][0]["favourited"] is True
    assert ctx["descendants"][0]["reblogged"] is True
    single = await _get(client, f"/api/v1/statuses/{reply}", auth)
    assert single["favourited"] is True and single["reblogged"] is True
    for path, field, count in (("unfavourite", "favourited", "favourites_count"),
                               ("unreblog", "reblogged", "reblogs_count")):
        for _ in range(2):
            body = await (await client.post(f"/api/v1/statuses/{reply}/{path}",
                                            headers=auth)).json()
            assert body[field] is False and body[count] == 0
    ctx = await _get(client, f"/api/v1/statuses/{root}/context", auth)
    assert ctx["descendants"][0]["favourited"] is False


async def test_concurrent_favourites_are_counted_exactly(client, world, db):
    post = await world.post(await world.account(), "popular")
    likers = [bearer(await world.token(a)) for a in await world.accounts(24)]

    async def like_twice(auth):
        for path in ("favourite", "favourite"):
            resp = await client.post(f"/api/v1/statuses/{post}/{path}", headers=auth)
            assert resp.status == 200, await resp.text()

    await asyncio.gather(*(like_twice(auth) for auth in likers))
    await asyncio.gather(*(client.post(f"/api/v1/statuses/{post}/unfavourite", headers=auth)
                           for auth in likers[:5]))
    assert (await reactions.counts(db, [post]))[post] == (19, 0)
    assert await counter_writes.recount_reactions(db, post) == (19, 0)
    while await reactions.fold(db):
        pass
    assert (await _get(client, f"/api/v1/statuses/{post}"))["favourites_count"] == 19


async def test_mastodon_errors_keep_their_status_and_headers(aiohttp_client, settings, world):
    client = await aiohttp_client(create_app(settings.replace(
        rate_limit_read="2/5minutes", rate_limit_exempt="")))
    answers = [await client.get("/api/v1/instance") for _ in range(3)]
    assert answers[0].status == 200 and answers[-1].status == 429
    assert "Retry-After" in answers[-1].headers and "RateLimit" in answers[-1].headers
    assert isinstance((await answers[-1].json())["error"], str)


async def test_accounts_batch_reads_each_account_once(db, world):
    ids = await world.accounts(3)
    found = await account_queries.accounts_by_id(db, [*ids, ids[0], 123])
    assert sorted(found) == sorted(ids)
    assert await account_queries.accounts_by_id(db, []) == {}


def test_multidict_form_repeats_are_refused():
    from service.core.errors import ApiError
    from service.inputs.mastodon import parse_new_status
    with pytest.raises(ApiError) as e:
        parse_new_status(MultiDict([("status", "a"), ("status", "b")]), 500)
    assert e.value.status == 422


def test_a_context_costs_what_a_conversation_costs():
    from service.resilience.rate_limit_rules import read_cost
    for path in ("/api/v1/statuses/1/context", "/v1/conversations/1"):
        assert read_cost(path, 200, "miss", 7, 2) == 7
    assert read_cost("/api/v1/statuses/1", 200, "miss", 7, 2) == 2


@pytest.mark.parametrize("text, html", [
    ("one", "<p>one</p>"),
    ("a\nb", "<p>a<br />b</p>"),
    ("a\r\n\r\nb", "<p>a</p><p>b</p>"),
    ("\n\nlead\n\n\n\ntrail\n", "<p>lead</p><p>trail</p>"),
    ("<script>alert('x')</script>", "<p>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</p>"),
])
def test_content_is_escaped_html(text, html):
    from service.pipeline.mastodon_entities import content_html
    assert content_html(text) == html


def test_link_header_relations():
    from service.pipeline.mastodon_entities import link_header
    more = [{"kind": "ancestors", "status_id": "9", "href": "/a"},
            {"kind": "replies", "status_id": "5", "href": "/r"},
            {"kind": "offensive", "status_id": "5", "href": "/o"}]
    assert link_header(more, 3) == ('</a>; rel="up", '
                                    '</r>; rel="replies"; anchor="/api/v1/statuses/5"; '
                                    'section="normal", '
                                    '</o>; rel="replies"; anchor="/api/v1/statuses/5"; '
                                    'section="offensive"')
    assert link_header(more, 1) == '</a>; rel="up"'
    assert link_header([], 5) is None


async def test_demoted_replies_are_left_out_but_linked(client, world):
    from storage import label_writes
    a = await world.account()
    root = await world.post(a, "root")
    fine = await world.post(await world.account(), "fine", reply_to=root)
    spam = await world.post(await world.account(), "spam", reply_to=root)
    abusive = await world.post(await world.account(), "abusive", reply_to=root)
    await label_writes.upsert_label(world.db, spam, "spam", 0.99)
    await label_writes.upsert_label(world.db, abusive, "abusive", 0.99)
    resp = await client.get(f"/api/v1/statuses/{root}/context")
    ctx = await resp.json()
    assert _ids(ctx["descendants"]) == [str(fine)]
    by_kind = {c["kind"]: c for c in ctx["more"]}
    assert set(by_kind) == {"low_quality", "offensive"}
    for kind, post in (("low_quality", spam), ("offensive", abusive)):
        assert f'section="{kind}"' in resp.headers["Link"]
        page = await _get(client, by_kind[kind]["href"])
        assert _ids(page["descendants"]) == [str(post)]


async def test_a_form_that_cannot_be_read_is_a_400(client, world):
    _, auth = await _signed_in(world)
    for content_type, body in (("multipart/form-data", b"status=x"),
                               ("application/json", b"{not json"),
                               ("application/json", b"[1]")):
        resp = await client.post("/api/v1/statuses", data=body,
                                 headers={**auth, "Content-Type": content_type})
        assert resp.status == 400, await resp.text()
        assert isinstance((await resp.json())["error"], str)


async def test_a_comment_widget_on_another_origin_reads_context_and_revalidates(client, world):
    """The most common public use of Mastodon's context: a blog's comment widget (CORS, the
    Link header exposed to it, ETag and 304 with the Link kept)."""
    a = await world.account()
    root = await world.post(a, "a blog post's thread")
    await world.fan(a, root, 4)
    origin = {"Origin": "https://blog.example"}
    resp = await client.get(f"/api/v1/statuses/{root}/context", params={"branching": 2},
                            headers=origin)
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Link" in resp.headers["Access-Control-Expose-Headers"]
    link, etag = resp.headers["Link"], resp.headers["ETag"]
    again = await client.get(f"/api/v1/statuses/{root}/context", params={"branching": 2},
                             headers={**origin, "If-None-Match": etag})
    assert again.status == 304 and again.headers["Link"] == link
    assert await again.read() == b""


async def test_context_round_trips_do_not_grow_with_the_conversation(client, world):
    """Bounded work: the same view of a conversation ten times larger costs the same round
    trips (Server-Timing), signed in or not."""
    _, auth = await _signed_in(world)
    await _get(client, "/api/v1/accounts/verify_credentials", auth)  # the token, resolved
    trips = {}
    for size in (12, 120):
        a = await world.account()
        root = await world.post(a, "root")
        fan = await world.fan(a, root, size)
        for parent in fan[:3] + fan[-3:]:  # shown or not, replies under some of them
            await world.fan(a, parent, 3)
        for who, headers in (("anonymous", {}), ("signed in", auth)):
            resp = await client.get(f"/api/v1/statuses/{root}/context", headers=headers,
                                    params={"branching": 10, "depth": 2})
            assert resp.status == 200
            trips[(size, who)] = int(re.search(r"round_trips=(\d+)",
                                               resp.headers["Server-Timing"]).group(1))
    assert trips[(12, "anonymous")] == trips[(120, "anonymous")]
    assert trips[(12, "signed in")] == trips[(120, "signed in")]
