"""/v1/admin: the admin token gate, accounts, tokens, classifier labels; and the section hooks
every such write calls inside its own transaction."""
from __future__ import annotations

import pytest

from service.app import create_app
from storage import section_updates


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(settings) -> dict[str, str]:
    return bearer(settings.admin_token)


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/admin/accounts"), ("GET", "/v1/admin/accounts/1"),
    ("PATCH", "/v1/admin/accounts/1"), ("POST", "/v1/admin/accounts/1/tokens"),
    ("DELETE", "/v1/admin/tokens/" + "0" * 64), ("PUT", "/v1/admin/posts/1/labels/spam"),
    ("DELETE", "/v1/admin/posts/1/labels/spam"),
])
@pytest.mark.parametrize("headers", [{}, bearer("wrong"), bearer("test-admin-token-")],
                         ids=["none", "wrong", "longer"])
async def test_no_or_wrong_admin_token_is_401(client, method, path, headers):
    resp = await client.request(method, path, headers=headers, json={})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_an_account_token_is_not_an_admin_token(client, world):
    token = await world.token(await world.account())
    resp = await client.post("/v1/admin/accounts", json={"handle": "nope"}, headers=bearer(token))
    assert resp.status == 401


async def test_admin_api_is_disabled_without_admin_token(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(admin_token="")))
    resp = await client.post("/v1/admin/accounts", json={"handle": "x"}, headers=bearer(""))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "admin_disabled"


async def test_create_get_and_change_an_account(client, admin):
    resp = await client.post("/v1/admin/accounts", headers=admin, json={
        "handle": "admin_made", "display_name": "Made", "verified": True})
    assert resp.status == 201
    account = await resp.json()
    assert {k: account[k] for k in ("handle", "display_name", "state", "protected", "has_avatar",
                                    "verified")} == {
        "handle": "admin_made", "display_name": "Made", "state": "active", "protected": False,
        "has_avatar": False, "verified": True}
    path = f"/v1/admin/accounts/{account['id']}"
    assert await (await client.get(path, headers=admin)).json() == account
    resp = await client.patch(path, headers=admin, json={"protected": True, "has_avatar": True})
    changed = await resp.json()
    assert resp.status == 200 and (changed["protected"], changed["has_avatar"]) == (True, True)
    assert (await (await client.patch(path, headers=admin, json={})).json()) == changed

    resp = await client.post("/v1/admin/accounts", headers=admin, json={"handle": "admin_made"})
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "handle_taken"


@pytest.mark.parametrize("body", [
    {}, {"handle": ""}, {"handle": "has space"}, {"handle": ".dot"}, {"handle": "x" * 64},
    {"handle": 12}, {"handle": "ok_1", "display_name": "bell\x07"},
    {"handle": "ok_2", "display_name": "x" * 101}, {"handle": "ok_3", "verified": "yes"},
    {"handle": "ok_4", "protected": None}, {"handle": "ok_5", "admin": True},
])
async def test_bad_account_bodies_are_400(client, admin, body):
    resp = await client.post("/v1/admin/accounts", headers=admin, json=body)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_field"


@pytest.mark.parametrize("body", [{"state": "banned"}, {"verified": 1}, {"id": "5"}])
async def test_bad_account_changes_are_400(client, admin, world, body):
    account = await world.account()
    resp = await client.patch(f"/v1/admin/accounts/{account}", headers=admin, json=body)
    assert resp.status == 400


async def test_unknown_account_is_404(client, admin):
    for resp in (await client.get("/v1/admin/accounts/999999999998", headers=admin),
                 await client.patch("/v1/admin/accounts/999999999998", headers=admin, json={}),
                 await client.post("/v1/admin/accounts/999999999998/tokens", headers=admin)):
        assert resp.status == 404
        assert await resp.json() == {"error": {"code": "not_found",
                                               "message": "account not found"}}


async def test_issue_use_and_revoke_a_token(client, admin, world):
    account = await world.account()
    resp = await client.post(f"/v1/admin/accounts/{account}/tokens", headers=admin,
                             json={"label": "phone"})
    assert resp.status == 201
    new = await resp.json()
    assert (new["account_id"], new["label"]) == (str(account), "phone")
    assert (await client.get("/v1/me/follows", headers=bearer(new["token"]))).status == 200

    path = f"/v1/admin/tokens/{new['token_id']}"
    assert (await client.delete(path, headers=admin)).status == 204
    assert (await client.delete(path, headers=admin)).status == 204  # again is fine
    # Cached a moment ago, refused now: the revoke dropped it from the cache.
    assert (await client.get("/v1/me/follows", headers=bearer(new["token"]))).status == 401
    assert (await client.delete("/v1/admin/tokens/" + "a" * 64, headers=admin)).status == 404
    assert (await client.delete("/v1/admin/tokens/xyz", headers=admin)).status == 400


async def test_a_token_without_a_body_gets_an_empty_label(client, admin, world):
    resp = await client.post(f"/v1/admin/accounts/{await world.account()}/tokens", headers=admin)
    assert resp.status == 201 and (await resp.json())["label"] == ""


async def test_suspending_an_account_refuses_its_cached_token_at_once(client, admin, world):
    account = await world.account()
    token = await world.token(account)
    assert (await client.get("/v1/me/follows", headers=bearer(token))).status == 200
    resp = await client.patch(f"/v1/admin/accounts/{account}", headers=admin,
                              json={"state": "suspended"})
    assert resp.status == 200
    assert (await client.get("/v1/me/follows", headers=bearer(token))).status == 401
    await client.patch(f"/v1/admin/accounts/{account}", headers=admin, json={"state": "active"})
    assert (await client.get("/v1/me/follows", headers=bearer(token))).status == 200


async def test_labels_upsert_and_delete(client, admin, world, db):
    post = await world.post(await world.account())
    path = f"/v1/admin/posts/{post}/labels/spam"
    resp = await client.put(path, headers=admin, json={"score": 0.25})
    assert resp.status == 200
    assert await resp.json() == {"post_id": str(post), "label": "spam", "score": 0.25}
    assert (await client.put(path, headers=admin, json={"score": 1})).status == 200
    scores = await db.fetch("SELECT label, score FROM labels WHERE post_id = $1", post)
    assert [(r["label"], r["score"]) for r in scores] == [("spam", 1.0)]
    for _ in range(2):
        assert (await client.delete(path, headers=admin)).status == 204
    assert await db.fetchval("SELECT count(*) FROM labels WHERE post_id = $1", post) == 0


@pytest.mark.parametrize("label, body, code", [
    ("spam", {"score": 1.5}, "invalid_field"), ("spam", {"score": -0.1}, "invalid_field"),
    ("spam", {"score": True}, "invalid_field"), ("spam", {"score": "0.5"}, "invalid_field"),
    ("spam", {}, "invalid_field"), ("spam", {"score": 0.5, "why": "x"}, "invalid_field"),
    ("rude", {"score": 0.5}, "invalid_label"),
])
async def test_bad_labels_are_400(client, admin, world, label, body, code):
    post = await world.post(await world.account())
    resp = await client.put(f"/v1/admin/posts/{post}/labels/{label}", headers=admin, json=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code


async def test_a_label_on_an_unknown_post_is_404(client, admin):
    for resp in (await client.put("/v1/admin/posts/999999999997/labels/abusive", headers=admin,
                                  json={"score": 0.9}),
                 await client.delete("/v1/admin/posts/999999999997/labels/abusive",
                                     headers=admin)):
        assert resp.status == 404
        assert (await resp.json())["error"] == {"code": "not_found", "message": "post not found"}


@pytest.fixture
def hook_calls(monkeypatch):
    """Every section_updates hook call, with whether it ran inside a transaction."""
    calls: list[tuple] = []

    def record(name):
        async def hook(tx, *args):
            calls.append((name, *args, tx.raw.is_in_transaction()))
        return hook

    for name in ("on_label_changed", "on_account_changed", "on_relation_changed"):
        monkeypatch.setattr(section_updates, name, record(name))
    return calls


async def test_writes_that_can_move_replies_between_sections_call_the_hooks(
        client, admin, world, hook_calls):
    me = await world.account()
    auth = bearer(await world.token(me))
    other = await world.account()
    post = await world.post(other)
    await client.put(f"/v1/admin/posts/{post}/labels/abusive", headers=admin, json={"score": 0.9})
    await client.delete(f"/v1/admin/posts/{post}/labels/abusive", headers=admin)
    await client.delete(f"/v1/admin/posts/{post}/labels/abusive", headers=admin)  # no change
    await client.patch(f"/v1/admin/accounts/{other}", headers=admin, json={"verified": True})
    await client.patch(f"/v1/admin/accounts/{other}", headers=admin, json={"verified": True})
    for kind in ("blocks", "mutes"):
        await client.put(f"/v1/me/{kind}/{other}", headers=auth)
        await client.put(f"/v1/me/{kind}/{other}", headers=auth)  # no change
        await client.delete(f"/v1/me/{kind}/{other}", headers=auth)
    await client.put(f"/v1/me/follows/{other}", headers=auth)  # follows do not move sections
    assert hook_calls == [
        ("on_label_changed", post, True), ("on_label_changed", post, True),
        ("on_account_changed", other, True),
        ("on_relation_changed", me, other, True), ("on_relation_changed", me, other, True),
        ("on_relation_changed", me, other, True), ("on_relation_changed", me, other, True),
    ]
