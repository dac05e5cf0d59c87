"""HTTP as clients and CDNs expect it, through the real app and PostgreSQL: compression
negotiated by Accept-Encoding (gzip, br, q-values) and done once per cached body, strong
ETags with 304s for If-None-Match (`*`, lists, weak form), Cache-Control and Vary per viewer,
RFC 8288 Link headers for next pages, and CORS (preflights answered before rate limits)."""
from __future__ import annotations

import gzip

import brotli
import pytest

from service.app import create_app
from service.http import representation


@pytest.fixture
async def cached(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=30,
                                                            stale_ttl_s=300)))


async def _thread(world, replies: int = 30) -> int:
    author = await world.account()
    root = await world.post(author, "a root with a long enough text to be worth compressing " * 3)
    await world.fan(author, root, replies)
    return root


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _raw(client, path, **headers):
    """(status, headers, body as sent: not decoded)"""
    resp = await client.get(path, headers=headers, auto_decompress=False)
    return resp.status, resp.headers, await resp.read()


async def test_gzip_and_brotli_decode_to_the_identity_body(cached, world):
    root = await _thread(world)
    path = f"/v1/conversations/{root}"
    status, h_id, identity = await _raw(cached, path, **{"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in h_id
    status, h_gz, gz = await _raw(cached, path, **{"Accept-Encoding": "gzip"})
    assert h_gz["Content-Encoding"] == "gzip" and gzip.decompress(gz) == identity
    assert len(gz) < len(identity) / 3
    status, h_br, br = await _raw(cached, path, **{"Accept-Encoding": "gzip, deflate, br"})
    assert h_br["Content-Encoding"] == "br" and brotli.decompress(br) == identity
    # q-values: gzip preferred over br here; br refused outright there
    _, h, _ = await _raw(cached, path, **{"Accept-Encoding": "br;q=0.4, gzip;q=0.9"})
    assert h["Content-Encoding"] == "gzip"
    _, h, _ = await _raw(cached, path, **{"Accept-Encoding": "*, br;q=0"})
    assert h["Content-Encoding"] == "gzip"
    _, h, _ = await _raw(cached, path, **{"Accept-Encoding": "gzip;q=0, br;q=0"})
    assert "Content-Encoding" not in h
    # each form has its own strong ETag
    assert len({h_id["ETag"], h_gz["ETag"], h_br["ETag"]}) == 3
    assert h_gz["Vary"] == "Authorization, Accept-Encoding"


async def test_small_bodies_go_uncompressed(cached, world):
    author = await world.account()
    root = await world.post(author, "tiny")
    _, h, _ = await _raw(cached, f"/v1/posts/{root}", **{"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in h and "ETag" in h


async def test_a_cached_body_is_compressed_once_per_coding(cached, world, monkeypatch):
    root = await _thread(world)
    calls = []
    real = representation.compress

    def counting(body, coding, **kw):
        calls.append(coding)
        return real(body, coding, **kw)
    monkeypatch.setattr(representation, "compress", counting)
    path = f"/v1/conversations/{root}"
    bodies = set()
    for _ in range(5):
        for coding in ("gzip", "br"):
            status, h, body = await _raw(cached, path, **{"Accept-Encoding": coding})
            assert status == 200 and h["Content-Encoding"] == coding
            bodies.add(body)
    assert sorted(calls) == ["br", "gzip"]
    assert len(bodies) == 2


def test_negotiation_rules():
    n = representation.negotiate
    assert n(None) is None and n("") is None and n("identity") is None
    assert n("gzip") == "gzip" and n("x-gzip") == "gzip" and n("br") == "br"
    assert n("gzip, br") == "br"  # a tie: the smaller
    assert n("gzip;q=1.0, br;q=0.99") == "gzip"
    assert n("*") == "br" and n("*;q=0") is None
    assert n("gzip;q=bogus") is None and n("gzip;q=2") is None
    assert n("deflate, compress") is None


async def test_etag_and_304(cached, world):
    root = await _thread(world, replies=3)
    path = f"/v1/conversations/{root}"
    identity = {"Accept-Encoding": "identity"}
    resp = await cached.get(path, headers=identity)
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    for inm in (etag, "*", f'"nope", {etag}', f"W/{etag}", etag[:-1] + '-gzip"'):
        again = await cached.get(path, headers={"If-None-Match": inm, **identity})
        assert again.status == 304, inm
        assert await again.read() == b""
        assert again.headers["ETag"] == etag
        assert again.headers["Cache-Control"].startswith("public")
    assert (await cached.get(path, headers={"If-None-Match": '"other"'})).status == 200
    gz = await cached.get(path, headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert gz.status == 304 and gz.headers["ETag"] == etag[:-1] + '-gzip"'
    assert gz.headers["Vary"] == "Authorization, Accept-Encoding"
    # a reply through the API changes the body, so the old ETag no longer matches
    me = await world.account()
    token = await world.token(me)
    created = await cached.post("/v1/posts", json={"text": "new", "in_reply_to_id": str(root)},
                                headers=bearer(token))
    assert created.status == 201
    fresh = await cached.get(path, headers={"If-None-Match": etag, **identity})
    assert fresh.status == 200 and fresh.headers["ETag"] != etag


async def test_etag_is_the_same_across_processes(cached, world, aiohttp_client, settings):
    """Derived from the bytes, not from process state: two apps agree (a CDN in front of
    several workers revalidates against any of them)."""
    root = await _thread(world, replies=2)
    other = await aiohttp_client(create_app(settings))
    a = await cached.get(f"/v1/conversations/{root}")
    b = await other.get(f"/v1/conversations/{root}")
    assert a.headers["ETag"] == b.headers["ETag"]


async def test_cache_control_and_vary_per_viewer(cached, world, settings):
    root = await _thread(world, replies=2)
    path = f"/v1/conversations/{root}"
    anon = await cached.get(path)
    assert anon.headers["Cache-Control"] == "public, max-age=30, stale-if-error=300"
    assert anon.headers["Vary"] == "Authorization, Accept-Encoding"
    me = await world.account()
    signed = await cached.get(path, headers=bearer(await world.token(me)))
    assert signed.status == 200
    assert signed.headers["Cache-Control"] == "private, no-cache"
    assert "ETag" in signed.headers
    # not a render-cache read: revalidate, never public
    me_resp = await cached.get("/v1/me", headers=bearer(await world.token(me)))
    assert me_resp.headers["Cache-Control"] == "private, no-cache"
    # errors carry none of it
    missing = await cached.get("/v1/conversations/999999999")
    assert missing.status == 404 and "ETag" not in missing.headers
    assert "Cache-Control" not in missing.headers


async def test_link_header_for_next_pages(cached, world):
    from urllib.parse import parse_qs, urlsplit
    root = await _thread(world, replies=8)
    resp = await cached.get(f"/v1/conversations/{root}", params={"branching": 3})
    body = await resp.json()
    link = resp.headers["Link"]
    assert link.endswith('; rel="next"') and link.startswith(f"</v1/conversations/{root}/replies?")
    url = link[1:link.index(">")]
    assert parse_qs(urlsplit(url).query)["cursor"] == [body["focal"]["replies"]["more"]["cursor"]]
    seen = [n["id"] for n in body["focal"]["replies"]["items"]]
    pages = 0
    while url is not None:  # follow the Link headers alone to the end of the list
        page = await cached.get(url)
        assert page.status == 200
        seen += [n["id"] for n in (await page.json())["items"]]
        link = page.headers.get("Link")
        url = link[1:link.index(">")] if link else None
        pages += 1
        assert pages < 10
    assert pages == 2 and len(seen) == len(set(seen)) == 8
    # other parameters are kept
    page = await cached.get(resp.headers["Link"][1:resp.headers["Link"].index(">")],
                            params={"max_nodes": 2})
    assert "max_nodes=2" in page.headers["Link"]


async def test_cors_reads_from_any_origin(cached, world):
    root = await _thread(world, replies=1)
    origin = {"Origin": "https://blog.example"}
    pre = await cached.options(f"/v1/conversations/{root}", headers={
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "If-None-Match"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    assert pre.headers["Access-Control-Allow-Headers"] == "if-none-match"
    assert int(pre.headers["Access-Control-Max-Age"]) > 0
    get = await cached.get(f"/v1/conversations/{root}", headers=origin)
    assert get.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in get.headers["Access-Control-Expose-Headers"]
    assert "Link" in get.headers["Access-Control-Expose-Headers"]
    # an error is readable too
    missing = await cached.get("/v1/conversations/999999999", headers=origin)
    assert missing.headers["Access-Control-Allow-Origin"] == "*"
    # no Origin: an anonymous read still says `*` (a CDN's copy serves browsers too), a
    # signed-in one says nothing; OPTIONS without a preflight is the router's 405
    assert (await cached.get(f"/v1/conversations/{root}")).headers[
        "Access-Control-Allow-Origin"] == "*"
    me = await world.account()
    signed = await cached.get(f"/v1/conversations/{root}",
                              headers=bearer(await world.token(me)))
    assert "Access-Control-Allow-Origin" not in signed.headers
    assert (await cached.options(f"/v1/conversations/{root}")).status == 405


async def test_cors_signed_in_and_writes_need_a_listed_origin(aiohttp_client, settings):
    default = await aiohttp_client(create_app(settings))
    pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    refused = await default.options("/v1/posts", headers=pre)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "cors_forbidden"
    listed = await aiohttp_client(create_app(settings.replace(
        http_cors_auth_origins="https://app.example, https://other.example",
        http_cors_origins="https://blog.example")))
    ok = await listed.options("/v1/posts", headers=pre)
    assert ok.status == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "Origin" in ok.headers["Vary"]
    # reads from an origin not listed get no Allow-Origin (the browser keeps the body away)
    resp = await listed.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" in resp.headers["Vary"]
    bad = await listed.options("/v1/posts", headers={**pre, "Access-Control-Request-Headers":
                                                     "x-custom"})
    assert bad.status == 403


async def test_preflights_are_not_rate_limited(aiohttp_client, settings):
    app = create_app(settings.replace(rate_limit_exempt="", rate_limit_read="2/minute",
                                      rate_limit_not_found="2/minute"))
    client = await aiohttp_client(app)
    headers = {"Origin": "https://blog.example", "Access-Control-Request-Method": "GET"}
    statuses = [(await client.options("/v1/conversations/1", headers=headers)).status
                for _ in range(10)]
    assert statuses == [204] * 10
    reads = [(await client.get("/v1/conversations/1")).status for _ in range(4)]
    assert 429 in reads  # the limit is real


async def test_link_on_quotes_pages_and_me_lists(cached, world):
    author = await world.account()
    quoted = await world.post(author, "quote me")
    for i in range(3):
        await world.post(author, f"quoting {i}", quote=quoted)
    first = await cached.get(f"/v1/posts/{quoted}/quotes", params={"limit": 2})
    link = first.headers["Link"]
    assert link.startswith(f"</v1/posts/{quoted}/quotes?limit=2&cursor=")
    last = await cached.get(link[1:link.index(">")])
    assert len((await last.json())["items"]) == 1 and "Link" not in last.headers
    me = await world.account()
    for other in await world.accounts(3):
        await world.relate("follows", me, other)
    auth = bearer(await world.token(me))
    page = await cached.get("/v1/me/follows", params={"limit": 2}, headers=auth)
    link = page.headers["Link"]
    assert link.startswith("</v1/me/follows?limit=2&cursor=") and link.endswith('rel="next"')
    rest = await cached.get(link[1:link.index(">")], headers=auth)
    assert len((await rest.json())["items"]) == 1 and "Link" not in rest.headers


async def test_head_answers_like_get_without_a_body(cached, world):
    root = await _thread(world, replies=2)
    get = await cached.get(f"/v1/conversations/{root}", headers={"Accept-Encoding": "gzip"})
    head = await cached.head(f"/v1/conversations/{root}", headers={"Accept-Encoding": "gzip"})
    assert head.status == 200 and await head.read() == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Encoding"] == "gzip"


async def test_compressed_forms_count_in_the_render_cache_bytes(cached, world):
    from service.http.keys import READS
    root = await _thread(world)
    cache = cached.server.app[READS].cache
    path = f"/v1/conversations/{root}"
    await _raw(cached, path, **{"Accept-Encoding": "identity"})
    before = cache.bytes
    _, _, gz = await _raw(cached, path, **{"Accept-Encoding": "gzip"})
    _, _, br = await _raw(cached, path, **{"Accept-Encoding": "br"})
    assert cache.bytes - before >= len(gz) + len(br)
