"""Answering in aiohttp's protocol, before a request object exists: an overload's refusals
(503), a rate-limited client's reads (429), and, through service/http/early_hits.py, fresh
cached reads.

A rate-limited client's read under /v1/ (not /v1/admin/), when this process remembers the
client as over its read budget (Limiter.refused_now: no store call), is answered with the
middleware's 429 byte for byte (rate_limit_middleware.refusal_parts; CORS headers and ids as
below) and its counts (`arbor_rate_limited_requests_total{route,reason}`, the top clients'
limited count); any other case goes on as below.

A 503 answered by the middlewares costs the process ~85 µs of CPU on this machine (measured
with bench/shed_cost.py: ~30 µs of it aiohttp's request machinery — request object, task,
middleware chain, response object, header serialization — the rest the middlewares around
admission and the response they build; the socket calls and the event loop ~8 µs). Here, in
`data_received`, a GET or HEAD that admission refuses outright is answered with bytes built
from constants, and the request never reaches aiohttp's handler: ~30 µs in all.

The answer and every side effect are the middlewares' (cors, mastodon_errors, rate_limits,
admission), in their order:
  * only when the connection is idle (one request parsed, nothing queued or in progress on
    it, nothing waiting to be written), the request has no body, is HTTP/1.1 keep-alive,
    GET or HEAD, not a CORS preflight, not an ops path, not under /v1/admin/, matches a
    route, and every slot is taken or the process is overloaded (else the cost is one
    attribute test and the usual path runs);
  * the rate limits first: a denied client, a client over (or near the end of) a budget,
    or `rate_limit_headers=always` take the usual path (403, 429, RateLimit headers); a
    limited client is charged the one unit a 503 costs (`Limiter.held`), given back when
    admission does not refuse; an exempt client is counted in the top clients as before;
  * admission: `Admission.refuse` refuses exactly when try_acquire would once the requests
    it let through before (read in the same turn of the event loop, not yet admitted) have
    arrived (the same counts, the same fairness notes), counted in
    `arbor_admission_shed_total{reason,route}` with the route's canonical path, and in
    `shed_early` (/readyz details.admission);
  * the 503: `Retry-After: 1`, `Cache-Control: no-store`, the JSON error body (Mastodon's
    shape under /api/), the CORS headers cors.answer_headers gives, `X-Request-Id` (and
    `traceparent`) as request_ids gives them, Date and Server; counted in the 503s by reason
    (ops_metrics.count_unavailable); the access-log line AccessLogger writes, with the ids
    (when access logging is on). With tracing on (a span per request), the usual path.
Anything else, or any error in here, and the request goes the usual way: nothing is lost.

Depends on aiohttp internals (pinned in pyproject.toml): RequestHandler's `_messages`,
`_waiter` and keep-alive fields, and the router's `_resource_index` / `Resource._match`
(tests/test_early_refusal.py checks each against aiohttp's own behaviour).
"""
from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache

import orjson
from aiohttp import web, web_server
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD

from service.core.request_ids import RequestContext, context_of

from . import cors, early_hits
from .admission_middleware import ADMISSION, SHED_BODY, classify_target
from .auth import client_from
from .keys import OPS_METRICS, RATE_LIMITS, SETTINGS
from .mastodon import PREFIX as MASTODON_PREFIX
from .request_ids import HEADER as REQUEST_ID
from .middlewares import AccessLogger, access_line
from .rate_limit_middleware import (USUAL, answered_early, charge_early, refusal_parts,
                                    refused_early)
from .protocol_errors import JsonErrorRequestHandler

log = logging.getLogger("arbor.http")

MASTODON_SHED_BODY = orjson.dumps({"error": orjson.loads(SHED_BODY)["error"]["message"]})
_HEAD = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Retry-After: 1\r\nCache-Control: no-store\r\n")
_TAIL = f"Server: {SERVER_SOFTWARE}\r\n\r\n".encode()
_ADMIN = "/v1/admin/"
_NOTHING = (None, None, None)   # _read: no answer, no route or client found


def route_of(app: web.Application, method: str, path_safe: str) -> str | None:
    """The canonical route aiohttp's router would match (UrlDispatcher.resolve's walk over
    its index), or None: no route, a route without this method, or a resource kind this
    does not know (the usual path then decides)."""
    router = app.router
    if router._matched_sub_app_resources:
        return None
    index = router._resource_index
    part = path_safe
    while part:
        for candidate in index.get(part, ()):
            if not isinstance(candidate, (web.PlainResource, web.DynamicResource)):
                return None
            if candidate._match(path_safe) is not None:
                routes = candidate._routes     # several resources may share a path
                if method in routes or "*" in routes:
                    return candidate.canonical
        if part == "/":
            break
        part = part.rpartition("/")[0] or "/"
    return None


def refusal(app: web.Application, msg: RawRequestMessage, remote: str | None,
            loop: asyncio.AbstractEventLoop, route: str | None = None,
            client=None) -> tuple[RequestContext, bytes] | None:
    """The request's ids and the bytes of the 503 the middlewares would answer for it, with
    their side effects done; None (and nothing done): let the middlewares answer it.
    `route`, `client`: route_of's and client_from's for it, when already known."""
    method = msg.method
    if method != "GET" and method != "HEAD":
        return None
    gate = app.get(ADMISSION)
    controller = gate.controller
    url = msg.url
    path = url.path
    priority = classify_target(method, path, lambda: url.query)
    if priority is None or path.startswith(_ADMIN):
        return None
    if route is None:
        route = route_of(app, method, url.path_safe)
        if route is None:
            return None
    headers = msg.headers
    settings = app[SETTINGS]
    if settings.tracing_enabled:
        return None                                     # a span per request: usual way
    # before any side effect: what could fail (an Origin that is not latin-1) fails here
    lines, vary = cors.answer_lines(method, headers.get("Origin"), "Authorization" in headers,
                                    settings.http_cors_origins, settings.http_cors_auth_origins)
    cors_lines = b"Vary: Origin\r\n" + lines if vary else lines
    ctx = context_of(headers.get(REQUEST_ID), headers.get("traceparent"),
                     settings.request_id_max_length)
    ids = f"{REQUEST_ID}: {ctx.request_id}\r\n" + (
        f"traceparent: {ctx.traceparent}\r\n" if ctx.traceparent is not None else "")
    ids_line = ids.encode("latin-1")
    if client is None:
        client = client_from(app, remote, headers)
    state = app.get(RATE_LIMITS)
    ticket = None
    now = time.time()
    if state is not None:
        ticket = charge_early(state, client, remote, headers, now)
        if ticket is USUAL:
            return None
    reason = controller.refuse(priority, client.key, loop.time())
    if reason is None:
        if ticket is not None:
            state.limiter.give_back(ticket)
        return None
    gate.settle(loop)
    gate.count(reason, route)
    gate.shed_early += 1
    ops = app.get(OPS_METRICS)          # request_ids.unavailable: 503s by reason
    if ops is not None:
        _overloaded_child(ops).inc()
    if state is not None:
        answered_early(state, client, ticket, now)   # a 503 costs its one unit (read_cost)
    body = MASTODON_SHED_BODY if path.startswith(MASTODON_PREFIX) else SHED_BODY
    return ctx, b"".join((_HEAD, cors_lines, ids_line,
                     b"Content-Length: %d\r\nDate: " % len(body),
                     rfc822_formatted_time().encode(), b"\r\n", _TAIL,
                     body if method == "GET" else b""))


def rate_limited(app: web.Application, msg: RawRequestMessage, route: str, client,
                 now: float) -> tuple[RequestContext, bytes] | None:
    """The rate limits' 429 for a read (not under /v1/admin/) of a client this process knows
    to be over its budget, with the middlewares' bytes (rate_limit_middleware.refusal_parts,
    the CORS headers, the ids) and counts (rate_limit_middleware.refused_early); None and
    nothing done otherwise. An abuser refused for its rate spends ~30 us of the process per
    request here, not a request object and the middlewares."""
    state = app.get(RATE_LIMITS)
    if state is None or msg.url.path.startswith(_ADMIN) \
            or not state.limiter.maybe_blocked(client.key):
        return None
    headers = msg.headers
    settings = app[SETTINGS]
    # before any side effect: what could fail (an Origin that is not latin-1) fails here
    lines, vary = cors.answer_lines(msg.method, headers.get("Origin"), "Authorization" in headers,
                                    settings.http_cors_origins, settings.http_cors_auth_origins)
    ctx = context_of(headers.get(REQUEST_ID), headers.get("traceparent"),
                     settings.request_id_max_length)
    refusal = refused_early(state, client, route, now)
    if refusal is None:
        return None
    body, head = _refusal_bytes(refusal)
    ids = f"{REQUEST_ID}: {ctx.request_id}\r\n" + (
        f"traceparent: {ctx.traceparent}\r\n" if ctx.traceparent is not None else "")
    return ctx, b"".join((head, b"Vary: Origin\r\n" if vary else b"", lines,
                          ids.encode("latin-1"), b"Content-Length: %d\r\nDate: " % len(body),
                          rfc822_formatted_time().encode(), b"\r\n", _TAIL,
                          body if msg.method == "GET" else b""))


@lru_cache(maxsize=1024)
def _refusal_bytes(refusal) -> tuple[bytes, bytes]:
    """A 429's body and its status line and own headers (a few distinct refusals at a time)."""
    body, fields = refusal_parts(refusal)
    return body, "".join(["HTTP/1.1 429 Too Many Requests\r\n",
                          *(f"{name}: {value}\r\n" for name, value in fields.items())]).encode()


@lru_cache(maxsize=16)
def _overloaded_child(ops):
    """arbor_unavailable_responses{reason="overloaded"} of an app (labels() once, not per
    refusal): what ops_metrics.count_unavailable counts for the middleware's 503."""
    return ops.unavailable.labels(orjson.loads(SHED_BODY)["error"]["code"])


class EarlyRefusalRequestHandler(JsonErrorRequestHandler):
    """aiohttp's RequestHandler (with JSON errors) that answers in data_received, on an idle
    connection: a fresh cached read (service/http/early_hits.py), else an overload's refusal
    (see the module docstring)."""

    _arbor_app: web.Application | None = None
    _arbor_remote: str | None = None
    _arbor_last_where: tuple[str, str] | None = None   # (method, path) -> its route, last asked
    _arbor_last_route: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        app = getattr(self._request_handler, "__self__", None)
        if isinstance(app, web.Application) and SETTINGS in app:
            self._arbor_app = app
            peer = transport.get_extra_info("peername")
            self._arbor_remote = (None if peer is None else str(peer[0])
                                  if isinstance(peer, (list, tuple)) else str(peer))

    def data_received(self, data: bytes) -> None:
        app = self._arbor_app
        waiter = self._waiter
        if app is None or waiter is None or waiter.done() or self._messages:
            super().data_received(data)
            return
        gate = app.get(ADMISSION)
        if gate is None:
            refuse = False
        else:
            c = gate.controller
            refuse = c.inflight >= c.params.concurrency or c.overloaded
        hits = (data.startswith(early_hits.STARTS)
                and app[SETTINGS].values["http_early_cache_hits"])
        if not refuse and not hits:
            super().data_received(data)      # a slot is free (admission admits), not a hit
            return
        self._waiter = None   # start() sleeps on until it is known whether it has work
        try:
            super().data_received(data)
        finally:
            self._waiter = waiter
        messages = self._messages
        if len(messages) == 1 and self._answer_early(app, *messages[0], hits, refuse):
            messages.popleft()
            self._parser.message_consumed()
        if messages and not waiter.done():
            waiter.set_result(None)

    def _answer_early(self, app: web.Application, msg, payload, hits: bool,
                      refuse: bool) -> bool:
        transport = self.transport
        if (payload is not EMPTY_PAYLOAD or not isinstance(msg, RawRequestMessage)
                or msg.should_close or msg.upgrade or msg.version != HttpVersion11
                or self._upgraded or self._close or self._force_close or transport is None
                or transport.is_closing()
                or transport.get_write_buffer_size()):
            return False
        loop = self._loop
        started = loop.time()
        logging_on = self._logging_enabled
        if logging_on and type(self.access_logger) is not AccessLogger:
            return False    # another access log format: it needs the request object
        try:
            answer, route, client = self._read(app, msg, started) if hits else _NOTHING
            if answer is None and refuse:
                answer = refusal(app, msg, self._arbor_remote, loop, route, client)
        except Exception:  # noqa: BLE001 - the usual path answers it instead
            log.exception("early answer failed; answering the usual way")
            return False
        if answer is None:
            return False
        ctx, answer = answer
        transport.write(answer)
        self._manager.requests_count += 1
        close_time = loop.time() + self._keepalive_timeout   # idle again: as start() does
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = loop.call_at(close_time, self._process_keepalive)
        if logging_on:
            # bytes: all that was sent, head and body, as aiohttp's body_length counts them
            access_line(self.access_logger.logger, self._arbor_remote, msg.method,
                        msg.url.path_qs, int(answer[9:12]), len(answer), loop.time() - started,
                        0, ctx)
        return True

    def _read(self, app: web.Application, msg: RawRequestMessage, started: float):
        """A read under /v1/ answered here: the 429 of a client known to be over its budget
        (rate_limited), else a fresh cached answer (early_hits.cached_answer); else no
        answer. Returns (the answer or None, its route and client when they were found)."""
        method = msg.method
        if (method != "GET" and method != "HEAD") or app[SETTINGS].tracing_enabled:
            return _NOTHING
        url = msg.url
        if not url.path.startswith(early_hits.PREFIXES):
            return _NOTHING
        where = (method, url.path_safe)
        if where == self._arbor_last_where:   # a connection asking for the same read again
            route = self._arbor_last_route
        else:
            route = route_of(app, method, url.path_safe)   # the router is frozen: kept
            self._arbor_last_where, self._arbor_last_route = where, route
        if route is None:
            return _NOTHING
        client = client_from(app, self._arbor_remote, msg.headers)
        now = time.time()
        answer = rate_limited(app, msg, route, client, now) or early_hits.cached_answer(
            app, msg, route, client, self._arbor_remote, started, now, self._loop.time)
        return answer, route, client


def install() -> None:
    """Make aiohttp's server use EarlyRefusalRequestHandler (JSON errors included;
    idempotent). Apps without admission get the plain JsonErrorRequestHandler behaviour."""
    web_server.RequestHandler = EarlyRefusalRequestHandler  # type: ignore[misc]
