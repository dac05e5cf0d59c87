"""The OpenAPI document names every status and response header the service sends, and
nothing it never sends."""
from __future__ import annotations

import re

import pytest

from service.http.admission_middleware import EXEMPT_PATHS

ADMIN = {"Authorization": "Bearer test-admin-token"}
# The headers middlewares and the read path add (service/openapi/common.py documents them)
SENT = ("Retry-After", "Arbor-Cache", "Arbor-Degraded", "Age", "Idempotent-Replayed",
        "Server-Timing", "Location")


@pytest.fixture
async def spec(client):
    return await (await client.get("/openapi.json")).json()


def operations(spec):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


async def test_every_sheddable_operation_documents_a_503_with_retry_after(spec):
    for path, method, op in operations(spec):
        if path in EXEMPT_PATHS:
            continue
        response = op["responses"].get("503")
        assert response, f"{method} {path}: no 503 (load shedding answers any of them so)"
        assert response["headers"]["Retry-After"]["required"] is True, (method, path)


async def test_no_idempotency_key_in_progress_409(spec):
    """A retry while the first request runs waits for it (README): there is no 409."""
    for path in ("/v1/posts", "/v1/posts/{post_id}"):
        for op in spec["paths"][path].values():
            assert "409" not in op["responses"]


async def test_reads_and_writes_document_their_headers(spec):
    for path in ("/v1/conversations/{post_id}", "/v1/conversations/{post_id}/replies",
                 "/v1/conversations/{post_id}/ancestors", "/v1/posts/{post_id}/quotes"):
        headers = spec["paths"][path]["get"]["responses"]["200"]["headers"]
        assert {"Arbor-Cache", "Arbor-Degraded", "Age", "Server-Timing"} <= set(headers)
        assert "Server-Timing" not in spec["paths"][path]["get"]["responses"]["404"].get(
            "headers", {})
    created = spec["paths"]["/v1/posts"]["post"]["responses"]["201"]["headers"]
    assert created["Location"]["required"] and "Idempotent-Replayed" in created


def _operation(spec, method: str, url: str):
    """The document's operation for a concrete URL."""
    path = url.split("?")[0]
    for template, ops in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return ops[method.lower()]
    raise AssertionError(f"{method} {url} is not in the document")


async def test_headers_sent_are_documented_for_their_status(client, world, spec):
    author = await world.account()
    token = await world.token(author)
    auth = {"Authorization": f"Bearer {token}"}
    root = await world.post(author, "root")
    await world.fan(author, root, 12)
    first = await (await client.get(f"/v1/conversations/{root}?branching=5")).json()
    cursor = first["focal"]["replies"]["more"]["cursor"]
    requests = [
        ("GET", f"/v1/conversations/{root}", {}, None),
        ("GET", f"/v1/conversations/{root}/replies?cursor={cursor}", {}, None),
        ("GET", "/v1/conversations/1", {}, None),
        ("GET", f"/v1/posts/{root}/quotes", {}, None),
        ("GET", "/v1/admin/settings", ADMIN, None),
        ("PATCH", "/v1/admin/settings", ADMIN, {"default_depth": 2.5}),
        ("POST", "/v1/posts", {**auth, "Idempotency-Key": "doc-1"}, {"text": "hi"}),
        ("POST", "/v1/posts", {**auth, "Idempotency-Key": "doc-1"}, {"text": "hi"}),
        ("GET", "/v1/me/follows", auth, None),
        ("GET", "/readyz", {}, None),
    ]
    seen = set()
    for method, url, headers, body in requests:
        resp = await client.request(method, url, headers=headers, json=body)
        documented = _operation(spec, method, url)["responses"].get(str(resp.status))
        assert documented, f"{method} {url}: {resp.status} is not documented"
        for name in SENT:
            if name in resp.headers:
                seen.add(name)
                assert name in documented.get("headers", {}), \
                    f"{method} {url} {resp.status} sends {name}, undocumented"
    assert {"Arbor-Cache", "Server-Timing", "Location", "Idempotent-Replayed"} <= seen
