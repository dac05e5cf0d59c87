"""SREs change live settings through the admin API; the next request follows them."""
from __future__ import annotations

import pytest

ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_list_shows_values_sources_and_live_flags(client):
    resp = await client.get("/v1/admin/settings", headers=ADMIN)
    assert resp.status == 200
    rows = {r["name"]: r for r in (await resp.json())["settings"]}
    assert rows["default_depth"]["live"] is True and rows["db_pool_max"]["live"] is False
    assert rows["cursor_secret"]["value"] == "***" and rows["admin_token"]["value"] == "***"


async def test_a_change_applies_to_the_next_request(client, world):
    a = await world.account()
    chain = await world.chain(a, 6)
    depth_of = lambda body: _depth(body["focal"])
    assert depth_of(await (await client.get(f"/v1/conversations/{chain[0]}")).json()) == 5
    resp = await client.patch("/v1/admin/settings", json={"default_depth": 2}, headers=ADMIN)
    assert resp.status == 200
    row = next(r for r in (await resp.json())["settings"] if r["name"] == "default_depth")
    assert (row["value"], row["source"]) == (2, "admin")
    assert depth_of(await (await client.get(f"/v1/conversations/{chain[0]}")).json()) == 2
    resp = await client.patch("/v1/admin/settings", json={"max_depth": 3}, headers=ADMIN)
    spec = await (await client.get("/openapi.json")).json()
    depth = next(p for p in spec["paths"]["/v1/conversations/{post_id}"]["get"]["parameters"]
                 if p["name"] == "depth")
    assert depth["schema"]["maximum"] == 3
    bad = await client.get(f"/v1/conversations/{chain[0]}?depth=4")
    assert bad.status == 400


def _depth(node) -> int:
    items = (node.get("replies") or {}).get("items") or []
    return 1 + max(_depth(i) for i in items) if items else 0


@pytest.mark.parametrize("body, fragment", [
    ({"db_pool_max": 3}, "cannot change while running"),
    ({"no_such": 1}, "unknown setting"),
    ({"default_depth": "deep"}, "not an integer"),
    ({"default_depth": 2.9}, "not an integer"),          # was silently 2
    ({"default_depth": 2.589e-42}, "not an integer"),    # was silently 0
    ({"visibility_overfetch": 0.5}, "not an integer"),
    ({"default_depth": 30}, "larger than max_depth"),
    ({"default_depth": 2, "max_depth": 1}, "larger than max_depth"),
])
async def test_refused_changes_change_nothing(client, body, fragment):
    resp = await client.patch("/v1/admin/settings", json=body, headers=ADMIN)
    assert resp.status == 400 and fragment in (await resp.json())["error"]["message"]
    rows = {r["name"]: r for r in (await (await client.get("/v1/admin/settings",
                                                            headers=ADMIN)).json())["settings"]}
    assert rows["default_depth"]["value"] == 6 and rows["max_depth"]["value"] == 20


async def test_needs_the_admin_token(client):
    assert (await client.patch("/v1/admin/settings", json={"default_depth": 1})).status == 401


async def test_null_restores_a_live_setting_as_configured(client):
    resp = await client.patch("/v1/admin/settings", json={"default_depth": 2, "max_depth": 9},
                              headers=ADMIN)
    assert resp.status == 200
    resp = await client.patch("/v1/admin/settings", json={"default_depth": None}, headers=ADMIN)
    assert resp.status == 200
    rows = {r["name"]: r for r in (await resp.json())["settings"]}
    assert (rows["default_depth"]["value"], rows["default_depth"]["source"]) == (6, "default")
    assert (rows["max_depth"]["value"], rows["max_depth"]["source"]) == (9, "admin")
    # a value the process was started with (here the tests' override) comes back with its source
    resp = await client.patch("/v1/admin/settings", json={"render_cache_ttl_s": 5},
                              headers=ADMIN)
    assert resp.status == 200
    resp = await client.patch("/v1/admin/settings", json={"render_cache_ttl_s": None},
                              headers=ADMIN)
    rows = {r["name"]: r for r in (await resp.json())["settings"]}
    assert (rows["render_cache_ttl_s"]["value"], rows["render_cache_ttl_s"]["source"]) == \
        (0, "override")


async def test_a_reset_is_validated_like_any_change(client):
    """Restoring default_depth (6) under a lowered max_depth (3) breaks default <= max."""
    assert (await client.patch("/v1/admin/settings", json={"default_depth": 2, "max_depth": 3},
                               headers=ADMIN)).status == 200
    resp = await client.patch("/v1/admin/settings", json={"default_depth": None}, headers=ADMIN)
    assert resp.status == 400 and "larger than max_depth" in (await resp.json())["error"]["message"]
    both = await client.patch("/v1/admin/settings", json={"default_depth": None,
                                                          "max_depth": None}, headers=ADMIN)
    assert both.status == 200
