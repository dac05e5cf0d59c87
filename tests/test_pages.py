"""The HTML pages over HTTP (no browser): the same answers as the JSON API, presented;
escaping; the session cookie and its CSRF rules; the same 404 for missing and hidden posts.
The browser tests are tests/test_pages_browser.py."""
from __future__ import annotations

import re

from storage import account_writes, label_writes

from .helpers import iter_nodes

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned=2">',
    "' onmouseover='window.__pwned=3",
    "\u202eevil.exe\u202c txt",
    "x" * 5000,
    "</textarea></title></style><b>bold?</b>",
    "{{ 7*7 }} {% if 1 %}jinja{% endif %}",
]


def ids_in_html(html: str) -> list[str]:
    return re.findall(r'<article id="p(\d+)"', html)


async def test_conversation_page_shows_what_the_api_shows(client, world):
    a = await world.account()
    root = await world.post(a, "the root")
    replies = await world.fan(a, root, 5)
    for r in replies[:2]:
        await world.post(a, "grandchild", reply_to=r)
    api = await (await client.get(f"/v1/conversations/{root}", params={"branching": 3})).json()
    resp = await client.get(f"/conversations/{root}", params={"branching": 3})
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    api_ids = [str(root)] + [n["id"] for n in iter_nodes(api["focal"]["replies"])]
    assert ids_in_html(html) == api_ids
    cursor = api["focal"]["replies"]["more"]["cursor"]
    assert f'/conversations/{root}/replies?cursor={cursor}' in html.replace("%3D", "=")
    assert re.search(r"Show (up to )?2 more replies", html)


async def test_page_and_api_share_one_cache_entry(aiohttp_client, settings, world):
    from service.app import create_app
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=60)))
    a = await world.account()
    root = await world.post(a, "cached")
    first = await client.get(f"/v1/conversations/{root}")
    assert first.headers["Arbor-Cache"] == "miss"
    page = await client.get(f"/conversations/{root}")
    assert page.status == 200 and page.headers["Arbor-Cache"] == "hit"


async def test_cached_page_is_reused_until_its_body_changes(aiohttp_client, settings, world):
    from service.app import create_app
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=60)))
    a = await world.account()
    root = await world.post(a, "memo")
    token = await world.token(a)
    first = await client.get(f"/conversations/{root}")
    second = await client.get(f"/conversations/{root}")
    assert second.headers["Arbor-Cache"] == "hit"
    assert await first.read() == await second.read()
    assert second.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    # a write through this process invalidates the render cache: the page follows
    resp = await client.post("/v1/posts", json={"text": "a new reply", "in_reply_to_id": str(root)},
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 201
    third = await client.get(f"/conversations/{root}")
    assert third.headers["Arbor-Cache"] == "miss" and "a new reply" in await third.text()
    fourth = await client.get(f"/conversations/{root}")
    assert fourth.headers["Arbor-Cache"] == "hit" and "a new reply" in await fourth.text()


async def test_pages_follow_the_http_conventions(aiohttp_client, settings, world):
    """ETag/304, compression and Cache-Control come from service/http/conventions.py, as on
    the API; a session cookie makes a page private."""
    from service.app import create_app
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=60)))
    a = await world.account()
    root = await world.post(a, "conventions")
    await world.fan(a, root, 30)
    first = await client.get(f"/conversations/{root}", headers={"Accept-Encoding": "gzip"})
    second = await client.get(f"/conversations/{root}", headers={"Accept-Encoding": "gzip"})
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["Cache-Control"].startswith("public")
    assert "Cookie" in first.headers["Vary"]
    again = await client.get(f"/conversations/{root}", headers={
        "Accept-Encoding": "gzip", "If-None-Match": second.headers["ETag"]})
    assert again.status == 304
    token = await world.token(a)
    await client.post("/login", data={"token": token}, allow_redirects=False)
    mine = await client.get(f"/conversations/{root}")
    assert mine.headers["Cache-Control"] == "private, no-cache"


async def test_a_page_rendered_now_and_one_from_the_cached_body_are_the_same(
        aiohttp_client, settings, world):
    """A miss presents the rendered object (datetimes), a hit the parsed body (strings)."""
    from service.app import create_app
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=60,
                                                              pages_html_cache_bytes=0)))
    a = await world.account()
    quoted = await world.post(a, "quoted")
    root = await world.post(a, "same", quote=quoted)
    await world.fan(a, root, 4)
    miss = await client.get(f"/conversations/{root}")
    hit = await client.get(f"/conversations/{root}")
    assert (miss.headers["Arbor-Cache"], hit.headers["Arbor-Cache"]) == ("miss", "hit")
    body = await miss.read()
    assert body == await hit.read() and b" UTC</time>" in body


async def test_hostile_text_is_escaped(client, world):
    a = await world.account(handle="h<script>x</script>")
    root = await world.post(a, HOSTILE[0])
    for text in HOSTILE[1:]:
        await world.post(a, text, reply_to=root, quote=root)
    html = await (await client.get(f"/conversations/{root}")).text()
    body = html.split("<main", 1)[1].split("</main>", 1)[0]
    assert "<script" not in body and "<img" not in body and "<b>" not in body
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in body
    assert "onerror=&#34;" in body or "onerror=&quot;" in body
    assert "{{ 7*7 }}" in body  # printed, not evaluated
    # one script on the page, the page's own (allowed by its hash)
    assert html.count("<script") == 1


async def test_404_is_the_same_for_missing_and_hidden(client, world):
    a = await world.account()
    hidden = await world.post(a, "soon gone")
    await account_writes.update_account(world.db, a, state="suspended")
    missing = hidden + 1_000_000
    r1 = await client.get(f"/conversations/{hidden}")
    r2 = await client.get(f"/conversations/{missing}")
    assert r1.status == r2.status == 404
    assert await r1.read() == await r2.read()
    assert r1.content_type == "text/html"


async def test_bad_input_is_a_400_page_naming_it(client, world):
    a = await world.account()
    root = await world.post(a, "x")
    for url in (f"/conversations/{root}?depth=999", f"/conversations/{root}?bogus=1",
                f"/conversations/{root}/replies?cursor=tampered", f"/conversations/{root}/replies",
                "/conversations/0", "/conversations/abc"):
        resp = await client.get(url)
        assert resp.status in (400, 404), url
        assert resp.content_type == "text/html"
        if resp.status == 400:
            assert "class=\"error\"" in await resp.text()


async def test_sections_and_tombstones_have_their_words(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    other = await world.account()
    spam = await world.post(other, "buy now", reply_to=root)
    bad = await world.post(other, "you are awful", reply_to=root)
    await label_writes.upsert_label(world.db, spam, "spam", 0.99)
    await label_writes.upsert_label(world.db, bad, "abusive", 0.99)
    gone = await world.post(other, "deleted later", reply_to=root)
    await world.post(a, "under the deleted one", reply_to=gone)
    await world.delete(gone)
    html = await (await client.get(f"/conversations/{root}")).text()
    assert "Show more replies (up to 1)" in html
    assert ("Show additional replies, including those that may contain offensive content"
            in html)
    assert "This post was deleted." in html


async def test_login_sets_a_safe_cookie_and_renders_for_the_viewer(client, world):
    a = await world.account()
    viewer = await world.account()
    root = await world.post(a, "root")
    blocked = await world.account()
    await world.post(blocked, "from someone blocked", reply_to=root)
    await world.relate("blocks", viewer, blocked)
    token = await world.token(viewer)
    resp = await client.post(f"/login?next=/conversations/{root}", data={"token": token},
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/conversations/{root}"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    signed = await (await client.get(f"/conversations/{root}")).text()
    assert "from someone blocked" not in signed and "Signed in" in signed
    out = await client.post("/logout", allow_redirects=False)
    assert out.status == 303
    anonymous = await (await client.get(f"/conversations/{root}")).text()
    assert "from someone blocked" in anonymous


async def test_login_refuses_bad_tokens_other_sites_and_open_redirects(client, world):
    bad = await client.post("/login", data={"token": "arb_not-a-real-token"})
    assert bad.status == 401 and "That token is not valid." in await bad.text()
    junk = await client.post("/login", data={"token": "<script>"})
    assert junk.status == 400
    token = await world.token(await world.account())
    cross = await client.post("/login", data={"token": token},
                              headers={"Origin": "https://evil.example"},
                              allow_redirects=False)
    assert cross.status == 403 and "Set-Cookie" not in cross.headers
    fetch_meta = await client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"},
                                   allow_redirects=False)
    assert fetch_meta.status == 403
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        resp = await client.post("/login", params={"next": target}, data={"token": token},
                                 allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/", target


async def test_a_session_whose_token_fails_is_asked_to_sign_in_again(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    client.session.cookie_jar.update_cookies({"arbor-session": "arb_revoked-or-never-valid"})
    resp = await client.get(f"/conversations/{root}")
    assert resp.status == 401 and "Sign in again" in await resp.text()
    assert 'arbor-session=""' in resp.headers["Set-Cookie"]  # removed
    # a cookie that is not even a token is the anonymous view
    client.session.cookie_jar.update_cookies({"arbor-session": "<not a token>"})
    assert (await client.get(f"/conversations/{root}")).status == 200


async def test_home_lists_the_demo_conversations(client):
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assert 'href="/openapi.json"' in html and 'href="/readyz"' in html


def test_pages_get_the_api_reads_priorities_and_costs():
    from aiohttp.test_utils import make_mocked_request

    from service.http.admission_middleware import classify
    from service.resilience.admission import Priority
    from service.resilience.rate_limit_rules import is_first_page
    for path, priority, first in (("/conversations/1", Priority.HIGH, True),
                                  ("/conversations/1/replies", Priority.LOW, False),
                                  ("/v1/conversations/1", Priority.HIGH, True)):
        assert classify(make_mocked_request("GET", path)) == priority, path
        assert is_first_page(path) is first, path
