"""/conversations/{post_id}, /conversations/{post_id}/replies?cursor=…,
/conversations/{post_id}/ancestors?cursor=…: the JSON API's conversation reads
(/v1/conversations/…) as HTML pages.

Each handler runs the API's own render through the read path with the session cookie's
token and the API's path (`read_body(..., token=, path=)`): a page and the API share one
render-cache entry, and a stale copy or a 503 is the API's, presented. The query is the
API's (same parameters, same 400s); "show more" links carry the API's cursors. Cost: the
API's render plus one pass over its body (service/pipeline/page_view.py) and the template.
"""
from __future__ import annotations

import time

import orjson
from aiohttp import web
from cachetools import LRUCache

from storage.account_tokens import hash_token

from service.core.errors import ApiError
from service.http.auth import SESSION_COOKIE, session_token
from service.http.cached_render import Seen, read_body, render_viewer
from service.http.html import PAGE_HEADERS, error_page, page
from service.http.keys import DEPS, PAGES, READS, REPRESENTATION, SETTINGS
from service.http.representation import Representation
from service.inputs.query import parse_int, parse_post_id, parse_view_limits, reject_unknown
from service.pipeline import conversation, page_view
from service.pipeline.cursors import AncestorsCursor, RepliesCursor

EXPANSION_SHARE = 0.7  # as the API's (service/api/conversations.py)


def _deadline(request: web.Request) -> float:
    return time.monotonic() + EXPANSION_SHARE * request.app[SETTINGS].request_budget_ms / 1000


def _cursor(request: web.Request) -> str:
    raw = request.query.get("cursor")
    if raw is None:
        raise ApiError(400, "missing_parameter", "cursor is required")
    return raw


def _signed_in(request: web.Request) -> str | None:
    """Whether the page is the signed-in view: a session token that the read accepted (a
    render-cache hit does not resolve the viewer; its key holds the token's hash)."""
    return "yes" if session_token(request) else None


def _passed(headers: dict[str, str]) -> dict[str, str]:
    # Arbor-Cache tells the rate limiter (and an SRE) how the body was served, as on the API.
    return {k: v for k, v in headers.items() if k in ("Arbor-Cache", "Arbor-Degraded", "Age")}


def _answer(request: web.Request, template: str, context: dict,
            headers: dict[str, str]) -> web.Response:
    return page(request, template, {**context, "viewer_handle": _signed_in(request)},
                headers=_passed(headers))


async def _present(request: web.Request, render, seen: Seen, api_path: str, present
                   ) -> web.Response:
    """Read the API's body, and present it with `present(body, headers) -> Response`, unless
    the very same cached body (the same bytes object) was presented for this page and
    viewer before: then that page is sent again (`pages_html_cache_bytes`)."""
    token = session_token(request)
    body, headers, _, result = await read_body(request, request.app[READS], render, seen,
                                               token=token, path=api_path)
    memo = request.app[PAGES].get("html")
    key = (hash_token(token) if token else None, request.path_qs)
    if memo is not None:
        found = memo.get(key)
        if found is not None and found[0] is body:
            request[REPRESENTATION] = found[1]  # its ETag and compressed forms, made once
            return web.Response(body=found[1].body, content_type="text/html",
                                charset="utf-8", headers={**PAGE_HEADERS, **_passed(headers)})
    # rendered now: the object itself (parsing its body again would cost ~0.6 ms of 300 nodes)
    response = present(result if result is not None else orjson.loads(body), headers)
    if memo is not None and headers.get("Arbor-Cache") != "stale" and response.status == 200:
        page_rep = Representation(response.body)
        memo[key] = (body, page_rep)
        request[REPRESENTATION] = page_rep
    return response


def install(app: web.Application) -> None:
    size = app[SETTINGS].pages_html_cache_bytes
    if size > 0:
        # the page, room for its compressed forms, and the body it came from, which the
        # entry keeps alive
        app[PAGES]["html"] = LRUCache(maxsize=size,
                                      getsizeof=lambda v: len(v[0]) + 2 * len(v[1].body))


def _html_errors(handler):
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as e:
            if e.status == 401:  # a session whose token no longer works: sign in again
                response = error_page(request, ApiError(
                    401, "unauthorized", "Your sign-in is no longer valid. Sign in again, "
                                         "or go on reading signed out."))
                response.del_cookie(SESSION_COOKIE, path="/")
                return response
            return error_page(request, e, viewer_handle=_signed_in(request))
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


@_html_errors
async def conversation_page(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    limits = parse_view_limits(request.query, request.app[SETTINGS])
    deps, seen, token = request.app[DEPS], Seen(), session_token(request)

    async def render():
        viewer = await render_viewer(request, seen, token)
        return await conversation.render_conversation(deps, post_id, limits, viewer,
                                                      _deadline(request))
    def present(body, headers):
        view = page_view.conversation_view(body, headers)
        focal_text = view["text"]
        title = (focal_text[:60] + "…") if len(focal_text) > 60 else focal_text
        return _answer(request, "conversation.html", {"view": view, "title": title,
                                                      "banners": view["banners"]}, headers)
    return await _present(request, render, seen, f"/v1/conversations/{post_id}", present)


@_html_errors
async def replies_page(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    settings = request.app[SETTINGS]
    reject_unknown(request.query, ("cursor", "max_nodes"))
    max_nodes = parse_int(request.query, "max_nodes", settings.default_max_nodes, 1,
                          settings.max_max_nodes)
    raw = _cursor(request)
    deps, seen, token = request.app[DEPS], Seen(), session_token(request)

    async def render():
        viewer = await render_viewer(request, seen, token)
        cursor = deps.cursors.decode(raw, RepliesCursor, viewer.id)
        seen.deps.append(cursor.conversation)
        return await conversation.render_replies_page(deps, post_id, cursor, max_nodes, viewer,
                                                      _deadline(request))
    def present(body, headers):
        view = page_view.replies_page_view(str(post_id), body, headers)
        return _answer(request, "page.html", {
            "view": view, "heading": "More replies", "list_class": "replies",
            "back_href": page_view.conversation_url(str(post_id)), "banners": view["banners"]},
            headers)
    return await _present(request, render, seen, f"/v1/conversations/{post_id}/replies",
                          present)


@_html_errors
async def ancestors_page(request: web.Request) -> web.Response:
    post_id = parse_post_id(request.match_info["post_id"])
    reject_unknown(request.query, ("cursor",))
    raw = _cursor(request)
    deps, seen, token = request.app[DEPS], Seen(), session_token(request)

    async def render():
        viewer = await render_viewer(request, seen, token)
        cursor = deps.cursors.decode(raw, AncestorsCursor)
        seen.deps.append(cursor.conversation)
        return await conversation.render_ancestors_page(deps, post_id, cursor, viewer)
    def present(body, headers):
        view = page_view.ancestors_page_view(str(post_id), body, headers)
        return _answer(request, "page.html", {
            "view": view, "heading": "Earlier in the conversation", "list_class": "thread",
            "back_href": page_view.conversation_url(str(post_id)), "banners": view["banners"]},
            headers)
    return await _present(request, render, seen, f"/v1/conversations/{post_id}/ancestors",
                          present)


ROUTES = [
    web.get("/conversations/{post_id}", conversation_page),
    web.get("/conversations/{post_id}/replies", replies_page),
    web.get("/conversations/{post_id}/ancestors", ancestors_page),
]
