"""HTML responses for the pages (service/api/pages): Jinja2 through aiohttp-jinja2, autoescape
on for every template, and the headers every page carries.

The page's CSS and script are inlined (service/templates/static/), and the
Content-Security-Policy allows exactly those two by their SHA-256, nothing else: no other
script, no inline handler, no external load, no framing, forms only to this site. A user's
text is escaped by the templates; the policy is the second wall if an escape were missed.
"""
from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import Any, Mapping

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from service.core.errors import ApiError

_STATIC = resources.files("service") / "templates" / "static"


def _csp(css: str, js: str) -> str:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    return (f"default-src 'none'; style-src {digest(css)}; script-src {digest(js)}; "
            "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")


_CSS = (_STATIC / "pages.css").read_text()
_JS = (_STATIC / "pages.js").read_text()
PAGE_HEADERS = {
    "Content-Security-Policy": _csp(_CSS, _JS),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Vary": "Cookie",  # the session cookie selects the viewer (conventions.py adds the rest)
}


def install(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("service", "templates"),
                               autoescape=True, trim_blocks=True, lstrip_blocks=True,
                               undefined=jinja2.StrictUndefined)
    env.globals.update(inline_css=Markup(_CSS), inline_js=Markup(_JS))


def page(request: web.Request, template: str, context: Mapping[str, Any], *,
         status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    context = {"banners": (), "viewer_handle": None, "here": request.path_qs, **context}
    text = aiohttp_jinja2.render_string(template, request, context)
    response = web.Response(status=status, text=text, content_type="text/html",
                            charset="utf-8", headers={**PAGE_HEADERS, **(headers or {})})
    return response


_HEADINGS = {400: "That address is not right", 401: "Please sign in again",
             403: "Not allowed", 404: "Post not found", 405: "Not allowed",
             429: "Too many requests", 503: "Arbor is unavailable right now"}
_MESSAGES = {
    404: "There is no such post, or it is not visible to you.",
    503: "Arbor cannot reach its database right now and has no saved copy of this page. "
         "Try again in a few seconds.",
}


def error_page(request: web.Request, e: ApiError, *,
               viewer_handle: str | None = None) -> web.Response:
    """An ApiError as a page: the same status and headers (Retry-After, WWW-Authenticate)
    as the JSON API's answer, the message in words. A 404 names nothing of the request, so
    that it is the same in bytes for a missing post and a hidden one."""
    headers = dict(e.headers or {})
    if e.retry_after is not None:
        headers["Retry-After"] = str(e.retry_after)
    message = _MESSAGES.get(e.status, e.message)
    if e.status == 404:
        context = {"here": "/", "viewer_handle": viewer_handle}
    else:
        context = {"viewer_handle": viewer_handle}
    return page(request, "error.html",
                {"heading": _HEADINGS.get(e.status, "Something went wrong"), "message": message,
                 **context}, status=e.status, headers=headers)
