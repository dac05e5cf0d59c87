"""POST /v1/admin/posts/import: posts from another system, in any order, from any number of
requests at once (storage/ingestion.py states the guarantees and the locking)."""
from __future__ import annotations

import orjson
from aiohttp import web

from storage.ingestion import UnknownAuthor, ingest_one

from .appkeys import DB, SETTINGS
from .auth import require_admin
from .errors import bad_request
from .handlers import json_response
from .import_items import ItemError, parse_item


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


ROUTES = [web.post("/v1/admin/posts/import", import_posts)]
