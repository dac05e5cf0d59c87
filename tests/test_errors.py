"""Every bad input is a 4xx JSON error naming the problem; never a 500."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
async def root(world):
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, 15)
    return root


async def error_of(resp, status):
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


@pytest.mark.parametrize("path, code, fragment", [
    ("/v1/conversations/abc", "invalid_id", "post_id"),
    ("/v1/conversations/-5", "invalid_id", "post_id"),
    ("/v1/conversations/0", "invalid_id", "post_id"),
    ("/v1/conversations/99999999999999999999", "invalid_id", "post_id"),
    ("/v1/conversations/{root}?depth=21", "invalid_parameter", "depth must be between 0 and 20"),
    ("/v1/conversations/{root}?depth=two", "invalid_parameter", "depth must be an integer"),
    ("/v1/conversations/{root}?branching=0", "invalid_parameter", "branching"),
    ("/v1/conversations/{root}?max_nodes=1001", "invalid_parameter", "max_nodes"),
    ("/v1/conversations/{root}?ancestors=201", "invalid_parameter", "ancestors"),
    ("/v1/conversations/{root}?sort=best", "invalid_parameter", "sort must be one of"),
    ("/v1/conversations/{root}?colour=red", "invalid_parameter", "colour"),
    ("/v1/conversations/{root}?depth=1&depth=2", "invalid_parameter", "more than once"),
    ("/v1/conversations/{root}/replies", "missing_parameter", "cursor"),
    ("/v1/conversations/{root}/replies?cursor=garbage", "invalid_cursor", "malformed"),
    ("/v1/conversations/{root}/ancestors?cursor=a.b", "invalid_cursor", ""),
])
async def test_bad_input_is_a_400_naming_the_problem(client, root, path, code, fragment):
    err = await error_of(await client.get(path.format(root=root)), 400)
    assert err["code"] == code and fragment in err["message"]


async def test_tampered_cursor_is_a_400(client, root):
    page = await (await client.get(f"/v1/conversations/{root}?branching=5")).json()
    cursor = page["focal"]["replies"]["more"]["cursor"]
    # the first character: the top bits of the first byte (of the signature, AES-SIV's IV)
    flipped = ("A" if cursor[0] != "A" else "B") + cursor[1:]
    err = await error_of(await client.get(f"/v1/conversations/{root}/replies?cursor={flipped}"), 400)
    assert "signature" in err["message"]


async def test_cursor_from_another_conversation_is_a_400(client, root, world):
    page = await (await client.get(f"/v1/conversations/{root}?branching=5")).json()
    cursor = page["focal"]["replies"]["more"]["cursor"]
    other = await world.post(await world.account(), "other root")
    err = await error_of(await client.get(f"/v1/conversations/{other}/replies?cursor={cursor}"), 400)
    assert err["code"] == "invalid_cursor"


async def test_unknown_post_is_a_404(client):
    err = await error_of(await client.get("/v1/conversations/123456789"), 404)
    assert err["code"] == "not_found"


async def test_unknown_route_is_a_json_404(client):
    err = await error_of(await client.get("/v1/nothing/here"), 404)
    assert err["code"] == "not_found"


async def test_wrong_method_is_a_json_405_with_allow(client, root):
    resp = await client.delete(f"/v1/conversations/{root}")
    await error_of(resp, 405)
    assert "GET" in resp.headers["Allow"]
