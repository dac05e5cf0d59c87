"""Writes over HTTP: POST /v1/posts and DELETE /v1/posts/{id}; validation, visibility (identical
404s), author-only deletes, Idempotency-Key replays, and counters under concurrent writes."""
from __future__ import annotations

import asyncio
import itertools

import asyncpg
import pytest

from storage import post_writes

_keys = itertools.count()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_key() -> str:
    return f"test-key-{next(_keys)}"


async def _signed_in(world) -> tuple[int, dict[str, str]]:
    me = await world.account()
    return me, bearer(await world.token(me))


async def _post(client, auth, key: str | None = None, **body):
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await client.post("/v1/posts", json=body, headers=headers)


async def _conversation(client, post_id, auth=None, **params):
    resp = await client.get(f"/v1/conversations/{post_id}", params=params, headers=auth or {})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _posts_by(db, author: int) -> int:
    return await db.fetchval("SELECT count(*) FROM posts WHERE author_id = $1", author)


async def _keys_of(db, account: int) -> int:
    return await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE account_id = $1",
                             account)


def _without_date(headers) -> dict[str, str]:
    # Date and X-Request-Id (random per request: independent of the post) aside
    return {k: v for k, v in headers.items() if k.lower() not in ("date", "x-request-id")}


@pytest.mark.parametrize("method, path", [("POST", "/v1/posts"), ("DELETE", "/v1/posts/1")])
async def test_anonymous_is_401(client, method, path):
    resp = await client.request(method, path, json={"text": "hi"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_root_reply_and_quote_appear_in_the_conversation(client, world):
    me, auth = await _signed_in(world)
    resp = await _post(client, auth, text="a root")
    assert resp.status == 201, await resp.text()
    root = await resp.json()
    assert root["type"] == "post" and root["text"] == "a root"
    assert root["author"]["id"] == str(me) and root["conversation_id"] == root["id"]
    assert root["in_reply_to_id"] is None and root["quote"] is None and root["replies"] is None
    assert root["counts"] == {"replies": 0, "likes": 0, "reposts": 0, "quotes": 0}

    reply = await (await _post(client, auth, text="a reply\non two lines",
                               in_reply_to_id=root["id"])).json()
    assert reply["in_reply_to_id"] == root["id"] and reply["conversation_id"] == root["id"]
    quote = await _post(client, auth, text="quoting the reply", quote_of_id=reply["id"],
                        in_reply_to_id=root["id"])
    assert quote.status == 201
    quote = await quote.json()
    assert quote["quote"]["state"] == "ok" and quote["quote"]["id"] == reply["id"]
    assert quote["quote"]["post"]["text"] == "a reply\non two lines"
    assert quote["quote"]["post"]["counts"]["quotes"] == 1

    view = await _conversation(client, root["id"], auth)
    assert view["focal"]["counts"]["replies"] == 2
    items = {n["id"]: n for n in view["focal"]["replies"]["items"]}
    assert set(items) == {reply["id"], quote["id"]}
    assert items[quote["id"]]["quote"]["id"] == reply["id"]
    assert items[reply["id"]]["counts"]["quotes"] == 1
    # The 201 body is the node a conversation shows (but for the replies it has since).
    focal = await _conversation(client, quote["id"], auth)
    assert focal["focal"] == quote


async def test_a_created_post_has_a_location_that_serves_it(client, world):
    _, auth = await _signed_in(world)
    for headers in ({}, {"Idempotency-Key": "location-1"}, {"Idempotency-Key": "location-1"}):
        resp = await client.post("/v1/posts", json={"text": "where am I"},
                                 headers={**auth, **headers})
        assert resp.status == 201  # the last one a replay: the same Location
        post = await resp.json()
        assert resp.headers["Location"] == f"/v1/conversations/{post['id']}"
        view = await client.get(resp.headers["Location"], headers=auth)
        assert view.status == 200 and (await view.json())["focal"] == post
    assert resp.headers["Idempotent-Replayed"] == "true"


async def test_text_of_exactly_max_post_length_is_accepted(client, world, settings):
    _, auth = await _signed_in(world)
    resp = await _post(client, auth, text="x" * settings.max_post_length)
    assert resp.status == 201


@pytest.mark.parametrize("body, code, says", [
    ({"text": ""}, "invalid_text", "empty"),
    ({"text": " \n\t\u3000 "}, "invalid_text", "whitespace"),
    ({"text": "x" * 501}, "invalid_text", "500"),
    ({"text": "bell\x07"}, "invalid_text", "control"),
    ({}, "invalid_field", "text is required"),
    ({"text": 5}, "invalid_field", "text must be a string"),
    ({"text": "hi", "in_reply_to_id": "12ab"}, "invalid_id", "in_reply_to_id"),
    ({"text": "hi", "quote_of_id": "0"}, "invalid_id", "quote_of_id"),
    ({"text": "hi", "in_reply_to_id": 12}, "invalid_field", "in_reply_to_id"),
    ({"text": "hi", "quote_of_id": None}, "invalid_field", "quote_of_id"),
    ({"text": "hi", "author_id": "1"}, "invalid_field", "author_id"),
])
async def test_bad_bodies_are_400s_that_name_the_problem(client, world, body, code, says):
    me, auth = await _signed_in(world)
    resp = await client.post("/v1/posts", json=body, headers=auth)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == code and says in error["message"], error
    assert await _posts_by(world.db, me) == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
async def test_a_body_that_is_not_a_json_object_is_400(client, world, raw):
    _, auth = await _signed_in(world)
    resp = await client.post("/v1/posts", data=raw,
                             headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("key", ["k" * 201, "caf\u00e9"])
async def test_a_malformed_idempotency_key_is_400(client, world, key):
    me, auth = await _signed_in(world)
    resp = await client.post("/v1/posts", json={"text": "hi"},
                             headers={**auth, "Idempotency-Key": key})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_idempotency_key"
    assert await _posts_by(world.db, me) == 0


async def test_missing_and_hidden_targets_give_the_same_404(client, world):
    me, auth = await _signed_in(world)
    blocker, protected, gone = await world.account(), await world.account(protected=True), \
        await world.account()
    await world.relate("blocks", blocker, me)
    by_blocker = await world.post(blocker, "you may not see this")
    by_protected = await world.post(protected, "followers only")
    deleted = await world.post(gone, "deleted")
    await world.delete(deleted)
    missing = (await _post(client, auth, text="hi", in_reply_to_id="8999999999999999999"))
    expected = (missing.status, _without_date(missing.headers), await missing.read())
    assert expected[0] == 404
    assert await missing.json() == {"error": {"code": "not_found", "message": "post not found"}}
    for target in (by_blocker, by_protected, deleted):
        for field in ("in_reply_to_id", "quote_of_id"):
            resp = await _post(client, auth, new_key(), text="hi", **{field: str(target)})
            assert (resp.status, _without_date(resp.headers), await resp.read()) == expected
    assert await _posts_by(world.db, me) == 0
    assert await _keys_of(world.db, me) == 0


async def test_delete_is_for_the_author_and_leaves_a_tombstone(client, world):
    me, auth = await _signed_in(world)
    other, other_auth = await _signed_in(world)
    root = await world.post(other, "root")
    mine = await (await _post(client, auth, text="mine", in_reply_to_id=str(root))).json()
    below = await world.post(other, "an answer to mine", reply_to=int(mine["id"]))
    leaf = await (await _post(client, auth, text="a leaf", in_reply_to_id=str(root))).json()

    resp = await client.delete(f"/v1/posts/{mine['id']}", headers=other_auth)
    assert resp.status == 403
    assert (await resp.json())["error"] == {"code": "forbidden",
                                            "message": "only the author can delete a post"}
    assert (await client.delete(f"/v1/posts/{mine['id']}", headers=auth)).status == 204
    assert (await client.delete(f"/v1/posts/{leaf['id']}", headers=auth)).status == 204

    view = await _conversation(client, root, auth)
    assert view["focal"]["counts"]["replies"] == 1  # the tombstone is listed, the leaf is not
    [node] = view["focal"]["replies"]["items"]
    assert node["type"] == "tombstone" and node["id"] == mine["id"]
    assert node["reason"] == "deleted"
    assert [n["id"] for n in node["replies"]["items"]] == [str(below)]

    again = await client.delete(f"/v1/posts/{mine['id']}", headers=auth)
    missing = await client.delete("/v1/posts/8999999999999999999", headers=auth)
    assert again.status == missing.status == 404
    assert await again.read() == await missing.read()


async def test_deleting_a_post_the_viewer_may_not_see_is_the_same_404(client, world):
    me, auth = await _signed_in(world)
    blocker = await world.account()
    await world.relate("blocks", blocker, me)
    hidden = await world.post(blocker, "hidden")
    resp = await client.delete(f"/v1/posts/{hidden}", headers=auth)
    missing = await client.delete("/v1/posts/8999999999999999999", headers=auth)
    assert resp.status == 404
    assert (_without_date(resp.headers), await resp.read()) == \
        (_without_date(missing.headers), await missing.read())


async def test_a_retried_post_is_replayed_and_written_once(client, world):
    me, auth = await _signed_in(world)
    key = new_key()
    first = await client.post("/v1/posts", data=b'{"text":"once"}',
                              headers={**auth, "Idempotency-Key": key,
                                       "Content-Type": "application/json"})
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    # The same request, spelled differently (spacing): the same canonical body.
    second = await client.post("/v1/posts", data=b'{ "text" : "once" }',
                               headers={**auth, "Idempotency-Key": key,
                                        "Content-Type": "application/json"})
    assert second.status == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await second.read() == await first.read()
    assert await _posts_by(world.db, me) == 1
    assert await _keys_of(world.db, me) == 1


async def test_a_key_is_per_account(client, world):
    one, auth_one = await _signed_in(world)
    two, auth_two = await _signed_in(world)
    key = new_key()
    assert (await _post(client, auth_one, key, text="same")).status == 201
    resp = await _post(client, auth_two, key, text="same")
    assert resp.status == 201 and "Idempotent-Replayed" not in resp.headers
    assert await _posts_by(world.db, one) == await _posts_by(world.db, two) == 1


async def test_the_same_key_for_another_request_is_422(client, world):
    me, auth = await _signed_in(world)
    key = new_key()
    created = await (await _post(client, auth, key, text="first")).json()
    resp = await _post(client, auth, key, text="second")
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "idempotency_key_reused"
    resp = await client.delete(f"/v1/posts/{created['id']}",
                               headers={**auth, "Idempotency-Key": key})
    assert resp.status == 422
    assert await _posts_by(world.db, me) == 1


async def test_a_retried_delete_is_replayed(client, world):
    me, auth = await _signed_in(world)
    post = await world.post(me, "to delete")
    headers = {**auth, "Idempotency-Key": new_key()}
    first = await client.delete(f"/v1/posts/{post}", headers=headers)
    second = await client.delete(f"/v1/posts/{post}", headers=headers)
    assert first.status == second.status == 204
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (await client.delete(f"/v1/posts/{post}", headers=auth)).status == 404


async def test_an_expired_key_is_a_new_request(client, world):
    me, auth = await _signed_in(world)
    key = new_key()
    assert (await _post(client, auth, key, text="old")).status == 201
    await world.db.execute("UPDATE idempotency_keys SET created_at = now() - interval '2 days' "
                           "WHERE account_id = $1", me)
    resp = await _post(client, auth, key, text="new")
    assert resp.status == 201 and "Idempotent-Replayed" not in resp.headers
    assert await _posts_by(world.db, me) == 2
    assert await _keys_of(world.db, me) == 1


async def test_keyed_writes_sweep_expired_keys(client, world):
    old, old_auth = await _signed_in(world)
    for i in range(3):
        assert (await _post(client, old_auth, new_key(), text=f"old {i}")).status == 201
    await world.db.execute("UPDATE idempotency_keys SET created_at = '2000-01-01' "
                           "WHERE account_id = $1", old)
    _, auth = await _signed_in(world)
    assert (await _post(client, auth, new_key(), text="sweeps")).status == 201
    assert await _keys_of(world.db, old) == 0


async def test_concurrent_retries_with_one_key_write_one_post(client, world):
    me, auth = await _signed_in(world)
    root = await world.post(await world.account(), "root")
    key = new_key()
    responses = await asyncio.gather(*(
        _post(client, auth, key, text="at most once", in_reply_to_id=str(root))
        for _ in range(10)))
    assert [r.status for r in responses] == [201] * 10
    bodies = {await r.read() for r in responses}
    assert len(bodies) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 9
    assert await _posts_by(world.db, me) == 1
    assert (await _conversation(client, root))["focal"]["counts"]["replies"] == 1


async def test_concurrent_replies_keep_the_parent_counter_exact(client, world, db):
    authors = await world.accounts(10)
    tokens = [bearer(await world.token(a)) for a in authors]
    parent = await world.post(await world.account(), "a popular post")
    responses = await asyncio.gather(*(
        _post(client, tokens[i % 10], text=f"reply number {i}", in_reply_to_id=str(parent))
        for i in range(200)))
    assert sorted({r.status for r in responses}) == [201], [await r.text() for r in responses
                                                             if r.status != 201][:3]
    counter = await db.fetchval(
        "SELECT replies_normal + replies_low_quality + replies_offensive FROM post_counts "
        "WHERE post_id = $1", parent)
    recount = await db.fetchval(
        "SELECT count(*) FROM posts WHERE in_reply_to_id = $1 AND listed", parent)
    assert counter == recount == 200
    view = await _conversation(client, parent, depth=1)
    assert view["focal"]["counts"]["replies"] == recount


async def test_a_failed_write_stores_no_key_and_can_be_retried(client, world, monkeypatch):
    me, auth = await _signed_in(world)
    real_insert = post_writes.insert_post_tx

    async def insert_then_lose_the_connection(tx, *args, **kwargs):
        await real_insert(tx, *args, **kwargs)
        raise ConnectionResetError("connection lost before commit")

    monkeypatch.setattr(post_writes, "insert_post_tx",
                        insert_then_lose_the_connection)
    key = new_key()
    resp = await _post(client, auth, key, text="lost")
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert await _keys_of(world.db, me) == 0
    assert await _posts_by(world.db, me) == 0

    monkeypatch.undo()
    resp = await _post(client, auth, key, text="lost")
    assert resp.status == 201 and "Idempotent-Replayed" not in resp.headers
    assert await _posts_by(world.db, me) == 1


async def test_a_parent_that_vanishes_before_the_insert_stores_no_key(client, world, monkeypatch):
    """The visibility check passes, then the insert finds no parent: a 404, and no key."""
    me, auth = await _signed_in(world)
    root = await world.post(me, "root")
    real_insert = post_writes.insert_post_tx

    # The check is given a post that exists; the insert is asked for one that does not.
    async def insert_under_a_vanished_parent(tx, author_id, text, **kwargs):
        return await real_insert(tx, author_id, text,
                                 **{**kwargs, "in_reply_to_id": 8999999999999999998})

    monkeypatch.setattr(post_writes, "insert_post_tx",
                        insert_under_a_vanished_parent)
    resp = await _post(client, auth, new_key(), text="orphan", in_reply_to_id=str(root))
    assert resp.status == 404
    assert await resp.json() == {"error": {"code": "not_found", "message": "post not found"}}
    assert await _keys_of(world.db, me) == 0
    assert await _posts_by(world.db, me) == 1  # the root only


async def test_a_deadlocked_write_is_run_again(client, world, monkeypatch):
    me, auth = await _signed_in(world)
    real_insert = post_writes.insert_post_tx
    failures = iter([True])

    async def deadlock_once(tx, *args, **kwargs):
        created = await real_insert(tx, *args, **kwargs)
        if next(failures, False):
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return created

    monkeypatch.setattr(post_writes, "insert_post_tx", deadlock_once)
    resp = await _post(client, auth, new_key(), text="second time lucky")
    assert resp.status == 201
    assert await _posts_by(world.db, me) == 1
    assert await _keys_of(world.db, me) == 1


async def test_a_write_that_keeps_conflicting_is_a_503(client, world, monkeypatch):
    me, auth = await _signed_in(world)

    async def always_conflicts(tx, *args, **kwargs):
        raise asyncpg.SerializationError("could not serialize access")

    monkeypatch.setattr(post_writes, "insert_post_tx", always_conflicts)
    resp = await _post(client, auth, new_key(), text="never")
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"]["code"] == "write_conflict"
    assert await _keys_of(world.db, me) == 0
