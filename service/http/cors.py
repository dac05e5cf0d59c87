"""CORS (the Fetch standard) as a small middleware, outermost, so that a preflight is answered
before rate limits and admission: it costs no database work and no budget.

Who may read, from a browser page of which origin:
  `http_cors_origins` (default `*`): origins whose pages may read anonymously (GET/HEAD
      without Authorization): any page can embed a public thread.
  `http_cors_auth_origins` (default empty: none): origins whose pages may send Authorization
      or write (POST/PUT/PATCH/DELETE). `*` allows any, as Mastodon does: a bearer token is
      not an ambient credential (no cookies are used), so this is not a CSRF risk, but who
      holds tokens in which pages is the operator's choice.
Both are comma-separated origins (`https://blog.example`) or `*`; live settings.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) gets 204 with the allowed
method, headers and `Access-Control-Max-Age` (`http_cors_max_age_s`), or 403 `cors_forbidden`
naming why. Other requests with an Origin get Access-Control-Allow-Origin when allowed, and
Access-Control-Expose-Headers for the headers clients read (ETag, Link, Location, Retry-After,
RateLimit*, Arbor-*). Without Origin, an anonymous read still gets `Access-Control-Allow-Origin:
*` when any origin may read (so a CDN's copy serves browsers too); other requests pass
untouched.
"""
from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

from aiohttp import web

from .keys import SETTINGS
from .responses import error_response

READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Request headers a page may set beyond the CORS-safelisted ones
READ_HEADERS = frozenset({"if-none-match", "accept-encoding"})
AUTH_HEADERS = READ_HEADERS | {"authorization", "content-type", "idempotency-key"}
EXPOSED = ("ETag, Link, Location, Retry-After, RateLimit, RateLimit-Policy, Arbor-Degraded, "
           "Arbor-Cache, Server-Timing, X-Request-Id, traceparent")


@lru_cache(maxsize=16)
def _origins(raw: str) -> frozenset[str] | None:
    """None: any origin; else the set (lower case, no trailing slash)."""
    items = {o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip()}
    return None if "*" in items else frozenset(items)


def _allowed(origin: str, raw: str) -> str | None:
    """The Access-Control-Allow-Origin value for origin under setting `raw`, or None."""
    allowed = _origins(raw)
    if allowed is None:
        return "*"
    return origin if origin.rstrip("/").lower() in allowed else None


def _preflight(request: web.Request, origin: str) -> web.Response:
    s = request.app[SETTINGS]
    method = request.headers["Access-Control-Request-Method"].strip().upper()
    wanted = {h.strip().lower() for h in
              request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()}
    needs_auth = method in WRITE_METHODS or bool(wanted & (AUTH_HEADERS - READ_HEADERS))
    if method not in READ_METHODS | WRITE_METHODS:
        return error_response(403, "cors_forbidden", f"method {method} is not allowed")
    unknown = wanted - AUTH_HEADERS
    if unknown:
        return error_response(403, "cors_forbidden",
                              f"request headers not allowed: {', '.join(sorted(unknown))}")
    allow = _allowed(origin, s.http_cors_auth_origins if needs_auth else s.http_cors_origins)
    if allow is None:
        what = "signed-in requests and writes" if needs_auth else "reads"
        return error_response(403, "cors_forbidden",
                              f"origin {origin[:200]} may not make {what} (http_cors_"
                              f"{'auth_' if needs_auth else ''}origins)")
    headers = {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Methods": ", ".join(sorted(
            READ_METHODS | WRITE_METHODS if needs_auth else READ_METHODS)),
        "Access-Control-Max-Age": str(s.http_cors_max_age_s),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    if wanted:
        headers["Access-Control-Allow-Headers"] = ", ".join(sorted(wanted))
    return web.Response(status=204, headers=headers)


def answer_headers(method: str, headers, settings) -> list[tuple[str, str]]:
    """The headers this middleware adds to an answer that is not a preflight's (a response
    without Vary of its own): also what service/http/early_refusal.py writes on a 503 it
    answers before this middleware runs."""
    origin = headers.get("Origin")
    out: list[tuple[str, str]] = []
    if origin is None:
        if (method in READ_METHODS and "Authorization" not in headers
                and _origins(settings.http_cors_origins) is None):
            out += [("Access-Control-Allow-Origin", "*"),
                    ("Access-Control-Expose-Headers", EXPOSED)]
        return out
    needs_auth = method in WRITE_METHODS or "Authorization" in headers
    allow = _allowed(origin, settings.http_cors_auth_origins if needs_auth
                     else settings.http_cors_origins)
    if _origins(settings.http_cors_origins) is not None or \
            _origins(settings.http_cors_auth_origins) is not None:
        out.append(("Vary", "Origin"))
    if allow is not None:
        out += [("Access-Control-Allow-Origin", allow), ("Access-Control-Expose-Headers", EXPOSED)]
    return out


@lru_cache(maxsize=256)
def answer_lines(method: str, origin: str | None, auth: bool, origins: str,
                 auth_origins: str) -> tuple[bytes, bool]:
    """answer_headers as header lines without Vary, and whether it adds Origin to Vary, for
    the answers written before this middleware runs (service/http/early_refusal.py,
    early_hits.py; a few distinct values: cached). `auth`: the request has Authorization."""
    headers = {} if origin is None else {"Origin": origin}
    if auth:
        headers["Authorization"] = "-"
    settings = SimpleNamespace(http_cors_origins=origins, http_cors_auth_origins=auth_origins)
    lines, vary = [], False
    for name, value in answer_headers(method, headers, settings):
        if name == "Vary":
            vary = True
        else:
            lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1"), vary


def _decorate(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    for name, value in answer_headers(request.method, request.headers, request.app[SETTINGS]):
        if name == "Vary":
            old = h.get("Vary")
            if not old or "origin" not in old.lower():
                h["Vary"] = f"{old}, Origin" if old else "Origin"
        else:
            h[name] = value


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    if request.method == "OPTIONS" and "Origin" in request.headers \
            and "Access-Control-Request-Method" in request.headers:
        return _preflight(request, request.headers["Origin"])
    try:
        response = await handler(request)
    except web.HTTPException as e:  # raised past the error middleware: still readable
        if "Origin" in request.headers:
            _decorate(request, e)
        raise
    _decorate(request, response)
    return response
