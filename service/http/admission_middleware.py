"""The admission middleware: classify, admit or shed, measure. The logic is service/admission.py.

The first middleware (shed answers are counted by the controller itself, in /metrics as
`arbor_admission_shed`), so a shed request costs no database work, no viewer lookup, no
request metrics and no Server-Timing bookkeeping: a 503 with a body encoded once at import
time. It still costs ~0.1 ms of CPU (open loop at 1,000/s), nearly all of it aiohttp reading
and answering the HTTP request.
"""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from service.resilience.admission import (ADMIT, SHED, Admission, Priority, Waiter, from_settings,
                                          params_from_settings)

from .keys import SETTINGS

ADMISSION = web.AppKey("admission", Admission)

# Never limited: probes and scrapes must answer most of all when the service is overloaded.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
_CONVERSATIONS = "/v1/conversations/"
_PAGES = "/conversations/"  # the HTML pages of the same reads: the same priorities
_POSTS = "/v1/posts/"

SHED_BODY = orjson.dumps({"error": {
    "code": "overloaded",
    "message": "the service is overloaded and shed this request; retry after Retry-After seconds"}})
_SHED_HEADERS = {"Content-Type": "application/json", "Retry-After": "1",
                 "Cache-Control": "no-store"}


# Live settings (PATCH /v1/admin/settings change app[SETTINGS] in place) are picked up within
# this many seconds, by the request that finishes first after that.
SETTINGS_CHECK_S = 1.0


def install(app: web.Application) -> None:
    """Create the app's admission controller from its settings (none when disabled)."""
    settings = app[SETTINGS]
    if settings.admission_enabled:
        app[ADMISSION] = from_settings(settings)


def _maybe_retune(app: web.Application, controller: Admission, now: float) -> None:
    controller.next_settings_check = now + SETTINGS_CHECK_S
    params = params_from_settings(app[SETTINGS])
    if params != controller.params:
        _wake(controller.retune(params, now), True)


def classify(request: web.Request) -> Priority | None:
    """None: not limited (ops endpoints)."""
    path = request.path
    if path in EXEMPT_PATHS:
        return None
    if request.method == "GET" or request.method == "HEAD":
        for prefix in (_CONVERSATIONS, _PAGES):
            if path.startswith(prefix):
                # /v1/conversations/{id} is a first page; .../replies and .../ancestors
                # continue one
                return Priority.LOW if "/" in path[len(prefix):] else Priority.HIGH
        if path.startswith(_POSTS) and path.endswith("/quotes"):
            return Priority.LOW
    return Priority.NORMAL


def shed_response() -> web.Response:
    return web.Response(status=503, body=SHED_BODY, headers=_SHED_HEADERS)


def _wake(waiters: list[Waiter], granted: bool) -> None:
    for w in waiters:
        fut = w.token
        if fut is not None and not fut.done():
            fut.set_result(granted)


def _on_deadline(admission: Admission, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    # call_at may run a callback up to the clock resolution early: the deadline has passed.
    _wake(admission.expire(max(loop.time(), deadline)), False)


@web.middleware
async def admission(request: web.Request, handler) -> web.StreamResponse:
    controller = request.app.get(ADMISSION)
    if controller is None:
        return await handler(request)
    priority = classify(request)
    if priority is None:
        return await handler(request)
    loop = asyncio.get_running_loop()
    decision, waiter = controller.try_acquire(priority, loop.time())
    if controller.evicted:
        _wake(controller.take_evicted(), False)
    if decision is SHED:
        return shed_response()
    if decision is not ADMIT:
        fut = loop.create_future()
        waiter.token = fut
        timer = loop.call_at(waiter.deadline, _on_deadline, controller, loop, waiter.deadline)
        try:
            granted = await fut
        except asyncio.CancelledError:
            _wake(controller.cancel(waiter, loop.time()), True)
            raise
        finally:
            timer.cancel()
        if not granted:
            return shed_response()
    started = loop.time()
    rtt: float | None = None
    try:
        response = await handler(request)
        rtt = loop.time() - started
        return response
    except asyncio.CancelledError:
        raise  # the client went away: no latency sample
    except BaseException:
        rtt = loop.time() - started
        raise
    finally:
        now = loop.time()
        _wake(controller.release(rtt, now), True)
        if now >= controller.next_settings_check:
            _maybe_retune(request.app, controller, now)


def snapshot(app: web.Application) -> dict | None:
    """The admission counters for /metrics and /readyz (None when load shedding is off):
    limit, capacity, inflight, queued, admitted and shed per priority, shed by reason,
    baseline and short-window latency."""
    controller = app.get(ADMISSION)
    return None if controller is None else controller.snapshot()
