"""HTTP as clients and CDNs expect it, on every successful GET/HEAD (DESIGN §7):

  ETag           a strong tag from the body's hash (service/http/representation.py), per
                 content coding; If-None-Match naming it (or `*`, or a list holding it) gets
                 a 304 with no body.
  Content-Encoding  br or gzip as Accept-Encoding prefers (q-values), for bodies of at least
                 `http_compress_min_bytes`. A read served through the render cache keeps its
                 compressed forms with the cached body (request[REPRESENTATION]), so a hot
                 conversation is compressed once per coding, not once per request.
  Cache-Control  `public, max-age=<render_cache_ttl_s>, stale-if-error=<stale_ttl_s>` for an
                 anonymous read through the render cache; `private, no-cache` whenever the
                 request carries Authorization (or the HTML pages' session cookie); `no-cache`
                 otherwise (and for stale copies).
  Vary           `Authorization, Accept-Encoding` (CORS adds Origin where it matters; the
                 pages add Cookie).
  Link           the next page (service/http/links.py) of a cached read.

Errors and other statuses pass untouched (a 404 stays the same bytes whatever its cause).
Cost on a cache hit: header work and a dict lookup; no hashing, no compression.
"""
from __future__ import annotations

from aiohttp import web

from .auth import session_token
from .keys import REPRESENTATION, SETTINGS
from .representation import Representation, cache_control, negotiate, not_modified

VARY = "Authorization, Accept-Encoding"
# What a 304 repeats of the 200 it stands for (RFC 9110 §15.4.5)
_KEPT_ON_304 = ("ETag", "Cache-Control", "Vary", "Link", "Arbor-Cache")


def add_vary(headers, value: str) -> None:
    old = headers.get("Vary")
    if not old:
        headers["Vary"] = value
        return
    have = {v.strip().lower() for v in old.split(",")}
    extra = [v for v in value.split(", ") if v.lower() not in have]
    if extra:
        headers["Vary"] = ", ".join([old, *extra])


@web.middleware
async def conventions(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    if (request.method not in ("GET", "HEAD") or response.status != 200
            or type(response) is not web.Response or "Content-Encoding" in response.headers):
        return response
    body = response.body
    if not isinstance(body, bytes):
        return response
    s = request.app[SETTINGS]
    rep = request.get(REPRESENTATION)
    shared = rep is not None
    if not isinstance(rep, Representation) or rep.body is not body:
        rep = Representation(body)  # not from the render cache: derived for this response
    headers = response.headers
    stale = headers.get("Arbor-Cache") == "stale"
    if rep.link and "Link" not in headers:
        headers["Link"] = rep.link
    add_vary(headers, VARY)
    headers["Cache-Control"] = cache_control(
        shared=shared and not stale,
        # the pages' session cookie is a signed-in view as much as Authorization is
        signed_in="Authorization" in request.headers or session_token(request) is not None,
        max_age_s=s.render_cache_ttl_s, stale_if_error_s=s.stale_ttl_s)
    coding = (negotiate(request.headers.get("Accept-Encoding"))
              if len(body) >= s.http_compress_min_bytes else None)
    headers["ETag"] = rep.etag(coding)
    if not_modified(request.headers.get("If-None-Match"), rep.tag):
        return web.Response(status=304, headers={k: headers[k] for k in _KEPT_ON_304
                                                 if k in headers})
    if coding is not None:
        response.body = rep.encoded(coding, gzip_level=s.http_gzip_level,
                                    brotli_quality=s.http_brotli_quality)
        headers["Content-Encoding"] = coding
    return response
