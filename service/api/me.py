"""/v1/me: the signed-in viewer's own account (`GET /v1/me`), and their follows, blocks, mutes
and muted words.

Lists are keyset pages by account id (muted words: by word); `cursor` is the last id (word) of
the previous page, null on the last page. Adding and removing are idempotent (204 either way).
Every write drops the cached viewers it changes: the writer's, and for a block the target's
(whose blocked_by changed).
"""
from __future__ import annotations

from aiohttp import web

from storage import account_queries, relation_queries, relation_writes
from storage.account_queries import AccountNotFound

from service.core.errors import account_not_found, bad_request
from service.http.auth import require_viewer
from service.http.keys import DB, SETTINGS, VIEWERS
from service.http.links import link_header
from service.http.responses import json_response
from service.inputs.bodies import json_object, require, take_text
from service.inputs.pages import parse_account_page, parse_id, parse_word_page
from service.inputs.relations import KINDS, parse_muted_word


async def get_me(request: web.Request) -> web.Response:
    """The viewer's account and how many accounts they follow, block and mute (the sizes of
    the viewer's cached relations: no count at request time)."""
    viewer = await require_viewer(request)
    account = await account_queries.account_by_id(request.app[DB], viewer.id)
    if account is None:  # deleted between the token check and now
        raise account_not_found()
    return json_response({
        "id": str(account.id), "handle": account.handle, "display_name": account.display_name,
        "protected": account.protected, "has_avatar": account.has_avatar,
        "verified": account.verified, "created_at": account.created_at,
        "relations": {"follows": len(viewer.follows), "blocks": len(viewer.blocks),
                      "mutes": len(viewer.mutes), "muted_words": len(viewer.muted_words)}})


def _link(request: web.Request, cursor: str | None, response: web.Response) -> web.Response:
    """RFC 8288 Link to the next page of a list, beside the body's cursor."""
    link = link_header(request.path, request.query.items(), {"cursor": cursor})
    if link:
        response.headers["Link"] = link
    return response


def _lister(kind: str):
    async def list_relations(request: web.Request) -> web.Response:
        viewer = await require_viewer(request)
        page = parse_account_page(request.query, request.app[SETTINGS])
        rows = await relation_queries.related_accounts(request.app[DB], kind, viewer.id,
                                                       page.after, page.limit + 1)
        items = [{"id": str(r.id), "handle": r.handle, "display_name": r.display_name}
                 for r in rows[:page.limit]]
        cursor = items[-1]["id"] if len(rows) > page.limit else None
        return _link(request, cursor, json_response({"items": items, "cursor": cursor}))
    return list_relations


def _writer(kind: str, write):
    async def change_relation(request: web.Request) -> web.Response:
        viewer = await require_viewer(request)
        target = parse_id(request.match_info["account_id"], "account_id")
        try:
            await write(request.app[DB], kind, viewer.id, target)
        except relation_writes.SelfRelation as e:
            raise bad_request("self_relation", str(e)) from None
        except AccountNotFound:
            raise account_not_found() from None
        forget = (viewer.id, target) if kind == "blocks" else (viewer.id,)
        request.app[VIEWERS].forget_viewers(*forget)
        return web.Response(status=204)
    return change_relation


def _word(raw: str, request: web.Request) -> str:
    return parse_muted_word(raw, request.app[SETTINGS].max_muted_word_length)


async def list_muted_words(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    page = parse_word_page(request.query, request.app[SETTINGS])
    words = await relation_queries.muted_words_page(request.app[DB], viewer.id, page.after,
                                                    page.limit + 1)
    cursor = words[page.limit - 1] if len(words) > page.limit else None
    return _link(request, cursor, json_response(
        {"items": [{"word": w} for w in words[:page.limit]], "cursor": cursor}))


async def add_muted_word(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    body = json_object(await request.read(), ("word",))
    word = _word(require(take_text(body, "word", max_length=1 << 20), "word"), request)
    limit = request.app[SETTINGS].max_muted_words
    try:
        await relation_writes.add_muted_word(request.app[DB], viewer.id, word, limit)
    except relation_writes.TooManyMutedWords:
        raise bad_request("too_many_muted_words",
                          f"at most {limit} muted words; remove one first") from None
    request.app[VIEWERS].forget_viewers(viewer.id)
    return json_response({"word": word})


async def remove_muted_word(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    word = _word(request.match_info["word"], request)
    await relation_writes.remove_muted_word(request.app[DB], viewer.id, word)
    request.app[VIEWERS].forget_viewers(viewer.id)
    return web.Response(status=204)


ROUTES = [
    web.get("/v1/me", get_me),
    *(route for kind in KINDS for route in (
        web.get(f"/v1/me/{kind}", _lister(kind)),
        web.put(f"/v1/me/{kind}/{{account_id}}", _writer(kind, relation_writes.add_relation)),
        web.delete(f"/v1/me/{kind}/{{account_id}}",
                   _writer(kind, relation_writes.remove_relation)))),
    web.get("/v1/me/muted_words", list_muted_words),
    web.post("/v1/me/muted_words", add_muted_word),
    # Any character but "/" (which arrives encoded, as %2F): aiohttp's default pattern also
    # excludes { and }, so a muted "{spoiler}" could be added but not removed.
    web.delete("/v1/me/muted_words/{word:[^/]+}", remove_muted_word),
]
