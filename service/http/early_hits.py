"""Answering a cached read from the render cache in aiohttp's protocol, before a request
object exists.

A cached hot conversation served through the middlewares cost ~190 us of CPU per request on
this machine against ~92 us for a bare aiohttp handler sending the same 141 KB
(bench/cached_throughput.py): the request and response objects, a task and twelve middleware
layers (ids, CORS, rate limits, admission, metrics, conventions, Server-Timing, ...), each a
few microseconds, for a body that is already made. Here, in `data_received` (the protocol
part is service/http/early_refusal.py's handler), such a read is answered with the cached
bytes and headers built by the middlewares' own functions, and never reaches aiohttp's
handler.

Which requests: GET or HEAD on the JSON API's cached reads (ROUTES) whose answer is a fresh
render-cache entry for the request's key (anonymous, or a well-formed bearer token: its hash
is in the key, as on the usual path, which on a hit does not look the token up either: a
revoked token's entries go with its change notice), without Cookie (the pages' session makes
the answer private) or If-None-Match (a 304 goes the usual way), tracing off,
`http_early_cache_hits` on, and early_refusal.py's conditions on the connection (idle,
HTTP/1.1 keep-alive, no body). Anything else, or any error in here, and
the request goes the usual way: nothing is lost, and the usual way answers the same bytes.

The answer and every side effect are the usual path's, in its order:
  * the rate limits: a denied client, a client near the end of a budget or new to this
    process, and `rate_limit_headers=always` take the usual path; otherwise the one unit a
    cached read costs is charged (`Limiter.held`; rules.read_cost adds nothing for a hit) and
    the client counted in the top clients; an exempt client only counted;
  * admission is not asked: a hit does no database work and holds no slot for longer than
    its own few microseconds (~40 us here against a 503's ~30 us), so it is answered even
    during an overload, when the usual path would have queued or shed it;
  * the headers: `Arbor-Cache: hit`, Content-Type, Server-Timing (no round trips), the
    conventions' Link, Vary, Cache-Control, ETag and Content-Encoding (service/http/
    representation.py's negotiation, the compressed form kept with the entry), CORS's
    (cors.answer_headers), X-Request-Id and traceparent (core/request_ids.context_of),
    Content-Length, Date, Server; tests/test_early_hits.py compares them with the usual
    path's for a matrix of requests;
  * counted as a render-cache hit (and in `arbor_render_cache_early_hits_total`), in
    `arbor_http_requests_total` and the request-duration histogram under the route's
    canonical path, and in the access log (when on).
"""
from __future__ import annotations

from functools import lru_cache

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, RawRequestMessage

from storage.account_tokens import hash_token

from service.core.clients import Client
from service.core.request_ids import RequestContext, context_of

from . import cors
from .auth import parse_bearer
from .conventions import VARY
from .keys import METRICS, RATE_LIMITS, READS, SETTINGS
from .rate_limit_middleware import USUAL, answered_early, charge_early
from .representation import Representation, cache_control, negotiate
from .request_ids import HEADER as REQUEST_ID

# The JSON API's reads whose handler is cached_render.serve and nothing more (Mastodon's
# context adds its own Link; the HTML pages present the body): their cached body is the answer.
ROUTES = frozenset({"/v1/conversations/{post_id}", "/v1/conversations/{post_id}/replies",
                    "/v1/conversations/{post_id}/ancestors", "/v1/posts/{post_id}",
                    "/v1/posts/{post_id}/quotes"})
PREFIXES = ("/v1/conversations/", "/v1/posts/")
STARTS = (b"GET /v1/", b"HEAD /v1/")   # the first bytes of such a request: a cheap first test
# A request with cookies (the pages' session: a signed-in Cache-Control) or conditional: the
# usual way (see the module docstring)
_USUAL_WAY = ("Cookie", "If-None-Match")
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n\r\n".encode()
_negotiate = lru_cache(maxsize=256)(negotiate)   # a few distinct Accept-Encoding values


def cached_answer(app: web.Application, msg: RawRequestMessage, route: str, client: Client,
                  remote: str | None, started: float, now_s: float, clock
                  ) -> tuple[RequestContext, bytes] | None:
    """The request's ids and the bytes of the 200 the usual path would answer for this cached
    read, with the usual path's side effects done; None (and nothing done): let the usual
    path answer it. `route`: the canonical route it matches (early_refusal.route_of);
    `client`: auth.client_from's; `started`: `clock()` when its bytes were parsed; `now_s`:
    wall-clock seconds (the rate limits' clock)."""
    reads = app.get(READS)
    if reads is None or route not in ROUTES or not reads.cache.serves_fresh:
        return None
    headers = msg.headers
    for name in _USUAL_WAY:
        if name in headers:
            return None
    authorization = headers.getall("Authorization", ())
    if authorization:
        token = parse_bearer(authorization)
        if token is None:
            return None                     # malformed: the usual path's 401
        token_hash = hash_token(token)
    else:
        token_hash = None
    url = msg.url
    # cached_render._key's key
    key = (token_hash, url.path, tuple(sorted(url.query.items())) if url.query_string else ())
    cache = reads.cache
    entry = cache.fresh_entry(key, count=False)   # the usual path counts what it looks up
    if entry is None:
        return None
    rep = entry.meta
    if not isinstance(rep, Representation) or rep.body is not entry.body:
        return None
    answer = _answer(app, msg, route, client, remote, started, now_s, clock, entry.body, rep,
                     token_hash is not None)
    if answer is not None:
        cache.hits += 1
        cache.early_hits += 1
    return answer


def _answer(app, msg, route, client, remote, started, now_s, clock, body: bytes,
            rep: Representation, signed_in: bool) -> tuple[RequestContext, bytes] | None:
    headers = msg.headers
    method = msg.method
    settings = app[SETTINGS]
    values = settings.values
    # before any side effect: what could fail (an Origin that is not latin-1) fails here
    cors_lines, vary = cors.answer_lines(method, headers.get("Origin"), signed_in,
                                   values["http_cors_origins"], values["http_cors_auth_origins"])
    ctx = context_of(headers.get(REQUEST_ID), headers.get("traceparent"),
                     values["request_id_max_length"])
    ids = f"{REQUEST_ID}: {ctx.request_id}\r\n" + (
        f"traceparent: {ctx.traceparent}\r\n" if ctx.traceparent is not None else "")
    ids_line = ids.encode("latin-1")
    state = app.get(RATE_LIMITS)
    ticket = None
    if state is not None:
        ticket = charge_early(state, client, remote, headers, now_s)
        if ticket is USUAL:
            return None
    try:
        head, payload = _bytes(msg, values, body, rep, signed_in, vary, cors_lines,
                               ids_line, clock() - started)
    except BaseException:
        if ticket is not None:
            state.limiter.give_back(ticket)             # the usual path will charge it
        raise
    # committed: the side effects of an answered cached read
    if state is not None:
        answered_early(state, client, ticket, now_s)   # a hit costs its one unit
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.observe_request(route, method, "200", clock() - started)
    return ctx, head if method == "HEAD" else head + payload


def _bytes(msg, values, body: bytes, rep: Representation, signed_in: bool, vary: bool,
           cors_lines: bytes, ids_line: bytes, elapsed: float) -> tuple[bytes, bytes]:
    """The answer's head and payload (the body in the coding Accept-Encoding picks)."""
    headers = msg.headers
    coding = (_negotiate(headers.get("Accept-Encoding"))
              if len(body) >= values["http_compress_min_bytes"] else None)
    if coding is not None:
        payload = rep.encoded(coding, gzip_level=values["http_gzip_level"],
                              brotli_quality=values["http_brotli_quality"])
        coding_lines = b'ETag: %s\r\nContent-Encoding: %s\r\n' % (
            rep.etag(coding).encode(), coding.encode())
    else:
        payload = body
        coding_lines = b'ETag: %s\r\n' % rep.etag(None).encode()
    head = b"".join((
        b"HTTP/1.1 200 OK\r\nArbor-Cache: hit\r\nContent-Type: application/json\r\n",
        b'Server-Timing: db;dur=0.00;desc="round_trips=0", total;dur=%.2f\r\n'
        % (elapsed * 1000),
        b"Link: %s\r\n" % rep.link.encode("latin-1") if rep.link else b"",
        _vary_and_cache_control(vary, signed_in, values["render_cache_ttl_s"],
                                values["stale_ttl_s"]),
        coding_lines, cors_lines, ids_line,
        b"Content-Length: %d\r\nDate: " % len(payload), rfc822_formatted_time().encode(),
        b"\r\n", _SERVER))
    return head, payload


@lru_cache(maxsize=64)
def _vary_and_cache_control(origin: bool, signed_in: bool, max_age_s: float,
                            stale_if_error_s: float) -> bytes:
    """conventions' Vary (and CORS's Origin in it) and a cached read's Cache-Control, as
    header lines."""
    vary = f"{VARY}, Origin" if origin else VARY
    control = cache_control(shared=True, signed_in=signed_in, max_age_s=max_age_s,
                            stale_if_error_s=stale_if_error_s)
    return f"Vary: {vary}\r\nCache-Control: {control}\r\n".encode()
