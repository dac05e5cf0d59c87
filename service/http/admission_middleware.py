"""The admission middleware: classify, admit, queue or shed, measure. The logic is
service/resilience/admission.py; this is its event-loop side (futures for waiters, one timer
per app, counts of shed requests by reason and route).

It runs before every middleware that does work (inside cors, mastodon_errors and the rate
limits), so a refused request costs no database work, no viewer lookup, no request metrics and
no Server-Timing bookkeeping: a 503 with a body encoded once at import time (~85 µs of CPU
here in all, a third of it aiohttp's request machinery). Most refusals of an overload never get
here: service/http/early_refusal.py answers them in the protocol with the same bytes and the
same counts (~30 µs), using classify_target and Gate.count from here. The client
a request counts against (`service.http.auth.client_of`: its token's account when the viewer
cache knows the token, else its address) is resolved without I/O.
"""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from service.resilience.admission import (GRANTED, QUEUED, REASONS, SHED, Admission, Priority,
                                          from_settings, params_from_settings)

from .auth import client_of
from .keys import SETTINGS

# Never limited: probes and scrapes must answer most of all when the service is overloaded.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
_CONVERSATIONS = "/v1/conversations/"
_PAGES = "/conversations/"  # the HTML pages of the same reads: the same priorities
_POSTS = "/v1/posts/"
_STATUSES = "/api/v1/statuses/"

SHED_BODY = orjson.dumps({"error": {
    "code": "overloaded",
    "message": "the service is overloaded and shed this request; retry after Retry-After seconds"}})
_SHED_HEADERS = {"Content-Type": "application/json", "Retry-After": "1",
                 "Cache-Control": "no-store"}

# Live settings (PATCH /v1/admin/settings change app[SETTINGS] in place) are picked up within
# this many seconds, by the request that finishes first after that.
SETTINGS_CHECK_S = 1.0


class Gate:
    """One app's admission: the controller, its timer, and shed counts by (reason, route)
    (routes are the app's canonical routes: bounded, never a client)."""

    def __init__(self, controller: Admission, app: web.Application):
        self.controller = controller
        self._app = app
        self._series: list[tuple[str, str]] | None = None
        self.shed_by_route: dict[tuple[str, str], int] = {}
        self.shed_early = 0   # of those, refused before a request object (early_refusal.py)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def count_shed(self, reason: str, request: web.Request) -> None:
        resource = request.match_info.route.resource
        self.count(reason, resource.canonical if resource is not None else "unmatched")

    def count(self, reason: str, route: str) -> None:
        key = (reason, route)
        self.shed_by_route[key] = self.shed_by_route.get(key, 0) + 1

    def series(self) -> list[tuple[str, str]]:
        """Every (reason, route) of arbor_admission_shed_total, exported from zero: the
        reasons times the app's routes that admission limits (a fixed, small set), and any
        other seen ("unmatched")."""
        if self._series is None:
            routes = sorted({r.canonical for r in self._app.router.resources()
                             if r.canonical not in EXEMPT_PATHS})
            self._series = [(reason, route) for reason in REASONS for route in routes]
        known = set(self._series)
        return self._series + sorted(k for k in self.shed_by_route if k not in known)

    def settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the waiters the controller granted or shed, and keep its timer armed."""
        c = self.controller
        for w in c.take_settled():
            fut, w.token = w.token, None
            if fut is not None and not fut.done():
                fut.set_result(w.state == GRANTED)
        due = c.next_deadline()
        if due is not None and (self._timer is None or due < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = due
            self._timer = loop.call_at(due, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        # call_at may run a callback up to the clock resolution early: the time has come.
        self.controller.tick(max(loop.time(), self._timer_at))
        self.settle(loop)

    def snapshot(self) -> dict:
        snap = self.controller.snapshot()
        by_route: dict[str, dict[str, int]] = {}
        for (reason, route), n in sorted(self.shed_by_route.items()):
            by_route.setdefault(route, {})[reason] = n
        snap["shed_by_route"] = by_route
        snap["shed_early"] = self.shed_early
        return snap


ADMISSION = web.AppKey("admission", Gate)


def install(app: web.Application) -> None:
    """Create the app's admission gate from its settings (none when disabled)."""
    settings = app[SETTINGS]
    if settings.admission_enabled:
        app[ADMISSION] = Gate(from_settings(settings), app)


def _maybe_retune(app: web.Application, gate: Gate, now: float) -> None:
    controller = gate.controller
    controller.next_settings_check = now + SETTINGS_CHECK_S
    params = params_from_settings(app[SETTINGS])
    if params != controller.params:
        controller.retune(params, now)


def classify(request: web.Request) -> Priority | None:
    """None: not limited (ops endpoints)."""
    return classify_target(request.method, request.path, lambda: request.query)


def classify_target(method: str, path: str, query) -> Priority | None:
    """classify from the method, the decoded path and a function giving the query (read only
    for Mastodon's context)."""
    if path in EXEMPT_PATHS:
        return None
    if method == "GET" or method == "HEAD":
        for prefix in (_CONVERSATIONS, _PAGES):
            if path.startswith(prefix):
                # /v1/conversations/{id} is a first page; .../replies and .../ancestors
                # continue one
                return Priority.LOW if "/" in path[len(prefix):] else Priority.HIGH
        if path.startswith(_POSTS) and path.endswith("/quotes"):
            return Priority.LOW
        if path.startswith(_STATUSES) and path.endswith("/context"):
            # Mastodon's context is a conversation's first page; with a cursor, it continues one
            q = query()
            return (Priority.LOW if "replies_cursor" in q or "ancestors_cursor" in q
                    else Priority.HIGH)
    return Priority.NORMAL


def shed_response() -> web.Response:
    return web.Response(status=503, body=SHED_BODY, headers=_SHED_HEADERS)


@web.middleware
async def admission(request: web.Request, handler) -> web.StreamResponse:
    gate = request.app.get(ADMISSION)
    if gate is None:
        return await handler(request)
    priority = classify(request)
    if priority is None:
        return await handler(request)
    controller = gate.controller
    client = client_of(request).key
    loop = asyncio.get_running_loop()
    decision, detail = controller.try_acquire(priority, client, loop.time())
    if decision is QUEUED:
        fut = detail.token = loop.create_future()
    gate.settle(loop)   # a newcomer may push a waiter out, or the overload begin or end
    if decision is SHED:
        gate.count_shed(detail, request)
        return shed_response()
    if decision is QUEUED:
        waiter = detail
        try:
            granted = await fut
        except asyncio.CancelledError:
            controller.cancel(waiter, loop.time())
            gate.settle(loop)
            raise
        if not granted:
            gate.count_shed(waiter.reason, request)
            return shed_response()
    started = loop.time()
    rtt: float | None = None
    try:
        response = await handler(request)
        rtt = loop.time() - started
        return response
    except asyncio.CancelledError:
        raise  # the client went away: no sample
    except BaseException:
        rtt = loop.time() - started
        raise
    finally:
        now = loop.time()
        controller.release(client, rtt, now)
        if now >= controller.next_settings_check:
            _maybe_retune(request.app, gate, now)
        gate.settle(loop)


def snapshot(app: web.Application) -> dict | None:
    """The admission figures for /metrics and /readyz (None when load shedding is off)."""
    gate = app.get(ADMISSION)
    return None if gate is None else gate.snapshot()

