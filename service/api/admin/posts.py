"""/v1/admin/posts: importing posts from another system (`POST /v1/admin/posts/import`: in any
order, from any number of requests at once; storage/ingestion.py states the guarantees and
the locking), and a post's classifier labels (`/v1/admin/posts/{post_id}/labels/{label}`).
Admin token only."""
from __future__ import annotations

import orjson
from aiohttp import web

from storage import label_writes
from storage.ingestion import UnknownAuthor, ingest_one

from service.core.errors import bad_request, not_found
from service.http.auth import require_admin
from service.http.keys import DB, SETTINGS
from service.http.responses import json_response
from service.inputs.bodies import json_object, take_unit_number
from service.inputs.import_items import ItemError, parse_item
from service.inputs.pages import parse_id


async def import_posts(request: web.Request) -> web.Response:
    """Body: {"posts": [item, ...]}. Answers how many were imported, are waiting for their
    parent, or were already here, and the errors of the items it refused, by index."""
    require_admin(request)
    settings = request.app[SETTINGS]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise bad_request("invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict) or set(body) != {"posts"} or not isinstance(body["posts"], list):
        raise bad_request("invalid_body", 'the body must be {"posts": [...]}')
    items = body["posts"]
    if len(items) > settings.import_max_batch:
        raise bad_request("too_many_items", f"at most {settings.import_max_batch} posts per "
                                            f"request, got {len(items)}")
    report = {"imported": 0, "pending": 0, "duplicate": 0, "errors": []}
    for index, item in enumerate(items):
        try:
            outcome = await ingest_one(request.app[DB], parse_item(item, settings.max_post_length))
        except ItemError as e:
            report["errors"].append({"index": index, "code": e.code, "message": str(e)})
            continue
        except UnknownAuthor as e:
            report["errors"].append({"index": index, "code": "unknown_author",
                                     "message": f"author_id {e.args[0]} is not an account"})
            continue
        report[outcome] += 1
    return json_response(report)


def _label(request: web.Request) -> tuple[int, str]:
    post_id = parse_id(request.match_info["post_id"], "post_id")
    label = request.match_info["label"]
    if label not in label_writes.LABELS:
        raise bad_request("invalid_label", f"label must be one of {', '.join(label_writes.LABELS)}, "
                                           f"got {label[:40]!r}")
    return post_id, label


async def put_label(request: web.Request) -> web.Response:
    require_admin(request)
    post_id, label = _label(request)
    score = take_unit_number(json_object(await request.read(), ("score",)), "score")
    try:
        await label_writes.upsert_label(request.app[DB], post_id, label, score)
    except label_writes.PostNotFound:
        raise not_found() from None
    return json_response({"post_id": str(post_id), "label": label, "score": score})


async def delete_label(request: web.Request) -> web.Response:
    require_admin(request)
    post_id, label = _label(request)
    try:
        await label_writes.delete_label(request.app[DB], post_id, label)
    except label_writes.PostNotFound:
        raise not_found() from None
    return web.Response(status=204)


ROUTES = [
    web.post("/v1/admin/posts/import", import_posts),
    web.put("/v1/admin/posts/{post_id}/labels/{label}", put_label),
    web.delete("/v1/admin/posts/{post_id}/labels/{label}", delete_label),
]
