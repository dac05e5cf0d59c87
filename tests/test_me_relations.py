"""/v1/me: the viewer's follows, blocks, mutes and muted words; paging, idempotency, limits,
and the viewer cache dropping what the viewer's own writes change."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from service.app import create_app
from service.http.keys import VIEWERS
from service.http.auth import viewer_for_token

KINDS = ("follows", "blocks", "mutes")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _signed_in(world) -> tuple[int, dict[str, str]]:
    me = await world.account()
    return me, bearer(await world.token(me))


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/me/follows"), ("GET", "/v1/me/blocks"), ("GET", "/v1/me/mutes"),
    ("PUT", "/v1/me/follows/1"), ("DELETE", "/v1/me/blocks/1"), ("PUT", "/v1/me/mutes/1"),
    ("GET", "/v1/me/muted_words"), ("POST", "/v1/me/muted_words"),
    ("DELETE", "/v1/me/muted_words/x"),
])
async def test_anonymous_is_401(client, method, path):
    resp = await client.request(method, path)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("kind", KINDS)
async def test_paging_reaches_every_account_exactly_once(client, world, kind):
    me, auth = await _signed_in(world)
    others = [await world.account() for _ in range(7)]
    for other in reversed(others):
        assert (await client.put(f"/v1/me/{kind}/{other}", headers=auth)).status == 204
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        resp = await client.get(f"/v1/me/{kind}", params=params, headers=auth)
        assert resp.status == 200
        page = await resp.json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == [str(o) for o in sorted(others)]
    assert pages == 3
    first = (await (await client.get(f"/v1/me/{kind}", headers=auth)).json())["items"][0]
    assert set(first) == {"id", "handle", "display_name"}


async def test_a_full_last_page_ends_with_a_null_cursor(client, world):
    me, auth = await _signed_in(world)
    for _ in range(4):
        await client.put(f"/v1/me/follows/{await world.account()}", headers=auth)
    page = await (await client.get("/v1/me/follows", params={"limit": "4"}, headers=auth)).json()
    assert len(page["items"]) == 4 and page["cursor"] is None


@pytest.mark.parametrize("kind", KINDS)
async def test_adding_and_removing_are_idempotent(client, world, db, kind):
    me, auth = await _signed_in(world)
    other = await world.account()
    for _ in range(2):
        assert (await client.put(f"/v1/me/{kind}/{other}", headers=auth)).status == 204
    page = await (await client.get(f"/v1/me/{kind}", headers=auth)).json()
    assert [item["id"] for item in page["items"]] == [str(other)]
    for _ in range(2):
        assert (await client.delete(f"/v1/me/{kind}/{other}", headers=auth)).status == 204
    page = await (await client.get(f"/v1/me/{kind}", headers=auth)).json()
    assert page == {"items": [], "cursor": None}


@pytest.mark.parametrize("kind", KINDS)
async def test_self_unknown_and_malformed_targets(client, world, kind):
    me, auth = await _signed_in(world)
    resp = await client.put(f"/v1/me/{kind}/{me}", headers=auth)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "self_relation"
    resp = await client.put(f"/v1/me/{kind}/999999999999", headers=auth)
    assert resp.status == 404
    assert await resp.json() == {"error": {"code": "not_found", "message": "account not found"}}
    assert (await client.delete(f"/v1/me/{kind}/999999999999", headers=auth)).status == 404
    for bad in ("abc", "0", "-1", "007", "99999999999999999999"):
        resp = await client.put(f"/v1/me/{kind}/{bad}", headers=auth)
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_id", bad


@pytest.mark.parametrize("query, code", [
    ({"limit": "0"}, "invalid_parameter"), ({"limit": "101"}, "invalid_parameter"),
    ({"limit": "x"}, "invalid_parameter"), ({"cursor": "abc"}, "invalid_cursor"),
    ({"page": "2"}, "invalid_parameter"),
])
async def test_bad_page_parameters_are_400(client, world, query, code):
    _, auth = await _signed_in(world)
    resp = await client.get("/v1/me/follows", params=query, headers=auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code


async def test_muted_words_are_normalized_and_idempotent(client, world):
    _, auth = await _signed_in(world)
    resp = await client.post("/v1/me/muted_words", json={"word": "  Spoiler   ALERT "},
                             headers=auth)
    assert resp.status == 200 and await resp.json() == {"word": "spoiler alert"}
    resp = await client.post("/v1/me/muted_words", json={"word": "spoiler alert"}, headers=auth)
    assert resp.status == 200
    page = await (await client.get("/v1/me/muted_words", headers=auth)).json()
    assert page == {"items": [{"word": "spoiler alert"}], "cursor": None}
    resp = await client.delete("/v1/me/muted_words/" + quote(" SPOILER alert", safe=""),
                               headers=auth)
    assert resp.status == 204
    assert (await (await client.get("/v1/me/muted_words", headers=auth)).json())["items"] == []


async def test_a_muted_phrase_with_a_slash_can_be_removed(client, world):
    _, auth = await _signed_in(world)
    await client.post("/v1/me/muted_words", json={"word": "a/b c"}, headers=auth)
    resp = await client.delete("/v1/me/muted_words/" + quote("a/b c", safe=""), headers=auth)
    assert resp.status == 204
    assert (await (await client.get("/v1/me/muted_words", headers=auth)).json())["items"] == []


@pytest.mark.parametrize("word", ["{spoiler}", "}{", "a{b}/c"])
async def test_a_muted_word_with_braces_can_be_removed(client, world, word):
    """aiohttp's default pattern for a path parameter excludes { and }: such a word could be
    added but not removed (a 404 "no such endpoint")."""
    _, auth = await _signed_in(world)
    resp = await client.post("/v1/me/muted_words", json={"word": word}, headers=auth)
    assert resp.status == 200
    resp = await client.delete("/v1/me/muted_words/" + quote(word, safe=""), headers=auth)
    assert resp.status == 204, await resp.text()
    assert (await (await client.get("/v1/me/muted_words", headers=auth)).json())["items"] == []


async def test_muted_words_page_by_word(client, world):
    _, auth = await _signed_in(world)
    words = [f"word {i:02d}" for i in range(9)]
    for word in words:
        await client.post("/v1/me/muted_words", json={"word": word}, headers=auth)
    seen, cursor = [], None
    while True:
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/v1/me/muted_words", params=params, headers=auth)).json()
        seen += [item["word"] for item in page["items"]]
        if (cursor := page["cursor"]) is None:
            break
    assert seen == words


@pytest.mark.parametrize("body, code", [
    ({"word": ""}, "invalid_field"),
    ({"word": "    "}, "invalid_field"),
    ({"word": "x" * 101}, "invalid_field"),
    ({"word": "tab\there"}, "invalid_field"),
    ({"word": "nul\x00"}, "invalid_field"),
    ({"word": 5}, "invalid_field"),
    ({}, "invalid_field"),
    ({"word": "ok", "extra": 1}, "invalid_field"),
    (["word"], "invalid_json"),
])
async def test_bad_muted_words_are_400(client, world, body, code):
    _, auth = await _signed_in(world)
    resp = await client.post("/v1/me/muted_words", json=body, headers=auth)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == code


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"word": "a"} x'])
async def test_a_body_that_is_not_json_is_400_invalid_json(client, world, raw):
    _, auth = await _signed_in(world)
    resp = await client.post("/v1/me/muted_words", data=raw,
                             headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_json"


async def test_a_word_of_the_longest_length_is_accepted(client, world):
    _, auth = await _signed_in(world)
    resp = await client.post("/v1/me/muted_words", json={"word": "y" * 100}, headers=auth)
    assert resp.status == 200


async def test_too_many_muted_words_is_400(aiohttp_client, settings, world):
    client = await aiohttp_client(create_app(settings.replace(max_muted_words=2)))
    _, auth = await _signed_in(world)
    for word in ("one", "two"):
        assert (await client.post("/v1/me/muted_words", json={"word": word},
                                  headers=auth)).status == 200
    resp = await client.post("/v1/me/muted_words", json={"word": "three"}, headers=auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "too_many_muted_words"
    # Muting one already muted is still fine at the limit.
    assert (await client.post("/v1/me/muted_words", json={"word": "ONE"},
                              headers=auth)).status == 200


async def test_the_viewers_own_write_refreshes_its_cached_viewer(client, world):
    me, auth = await _signed_in(world)
    token = auth["Authorization"].removeprefix("Bearer ")
    followed, followed_behind_the_cache = await world.account(), await world.account()
    assert (await client.get("/v1/me/follows", headers=auth)).status == 200  # resolves and caches
    assert (await viewer_for_token(client.app, token)).follows == frozenset()

    # A write that bypasses this process is not seen while the viewer is cached...
    await world.relate("follows", me, followed_behind_the_cache)
    assert (await viewer_for_token(client.app, token)).follows == frozenset()

    # ...but the viewer's own write through the API drops the cached viewer at once.
    assert (await client.put(f"/v1/me/follows/{followed}", headers=auth)).status == 204
    assert me not in client.app[VIEWERS].viewers
    viewer = await viewer_for_token(client.app, token)
    assert viewer.follows == {followed, followed_behind_the_cache}

    await client.post("/v1/me/muted_words", json={"word": "Cached"}, headers=auth)
    assert (await viewer_for_token(client.app, token)).muted_words == ("cached",)


async def test_a_block_refreshes_the_blocked_viewer_too(client, world):
    me, auth = await _signed_in(world)
    other = await world.account()
    other_token = await world.token(other)
    assert (await viewer_for_token(client.app, other_token)).blocked_by == frozenset()
    assert (await client.put(f"/v1/me/blocks/{other}", headers=auth)).status == 204
    assert (await viewer_for_token(client.app, other_token)).blocked_by == {me}
    assert (await client.delete(f"/v1/me/blocks/{other}", headers=auth)).status == 204
    assert (await viewer_for_token(client.app, other_token)).blocked_by == frozenset()


async def test_without_a_cache_every_request_reads_the_database(aiohttp_client, settings, world):
    client = await aiohttp_client(create_app(settings.replace(viewer_cache_ttl_s=0)))
    me = await world.account()
    token, other = await world.token(me), await world.account()
    assert (await viewer_for_token(client.app, token)).follows == frozenset()
    await world.relate("follows", me, other)
    assert (await viewer_for_token(client.app, token)).follows == {other}
    assert len(client.app[VIEWERS].viewers) == 0
