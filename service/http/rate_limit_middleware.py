"""The first middleware: the deny list, then the per-client rate limits, then the rest.

Order of a request here (each step O(1); the logic is service/resilience/rate_limit_rules.py
and service/resilience/rate_limiter.py):
  1. /healthz, /readyz, /metrics: passed on untouched (never denied, never limited,
     not counted);
  2. a request carrying the admin token: passed on (an SRE must be able to undo a deny);
  3. the client (service/http/auth.client_of) on the deny list (its address in a denied
     address or CIDR range, or its account): 403 `denied`, a body encoded once, nothing else;
  4. rate limits off (`rate_limit_enabled`), or the client's address in
     `rate_limit_exempt`: passed on;
  5. the client over a budget: 429 `rate_limited` with Retry-After and RateLimit fields,
     before admission (a slot), the database or the viewer's relations are touched;
  6. otherwise the request runs; its answer decides the rest of its cost.
Every request from steps 3-6 is counted for the top-clients report
(service/resilience/top_clients.py).

State per app (RATE_LIMITS: service/resilience/rate_limits.py): the Store and Limiter, the top
clients, and the overrides and deny list read from PostgreSQL at start-up and every
`rate_limit_reload_s` (a change made through another process's admin API reaches this one
within that), replaced at once in the process that made it.
"""
from __future__ import annotations

import asyncio
import hmac
from functools import lru_cache
import logging
import time
from typing import AsyncIterator

import orjson
from aiohttp import web
from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from service.resilience import rate_limit_rules as rules
from service.resilience.rate_limiter import Refusal, Ticket
from service.resilience.rate_limits import RateLimits

from .auth import client_of
from .keys import DB, DENY_LIST, METRICS, RATE_LIMITS, SETTINGS

log = logging.getLogger("arbor.rate_limits")

DENIED_BODY = orjson.dumps({"error": {"code": "denied",
                                      "message": "requests from this client are refused"}})
_NO_STORE = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_ADMIN = "/v1/admin/"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # rate_limit_rules.classify, inlined




USUAL = object()   # charge_early: let the middleware answer this request


def charge_early(state: RateLimits, client, remote: str | None, headers,
                 now: float) -> Ticket | None | object:
    """This middleware's part of an answer given before it, without a request object or a
    store call (service/http/early_refusal.py, early_hits.py): USUAL when the middleware
    must decide (a denied client's 403, a budget that needs a store call or is spent, the
    RateLimit headers on every answer, the untrusted-proxy warning); None when there is
    nothing to charge (limits off, an exempt client); else the Ticket of the one read unit
    charged (`limiter.give_back(ticket)` if the answer is not given after all)."""
    values = state.settings.values
    if state.denied(client):
        return USUAL
    if not values["rate_limit_enabled"] or state.exempt(client.address, values):
        if not state.warned_proxy and client.address == remote and (
                "X-Forwarded-For" in headers or "Forwarded" in headers):
            return USUAL
        return None
    if values["rate_limit_headers"] == "always":
        return USUAL
    ticket = state.limiter.held(client.key, rules.READ, state.policies(client.account_id), now)
    return USUAL if ticket is None else ticket


def answered_early(state: RateLimits, client, ticket: Ticket | None, now: float) -> None:
    """After charge_early, the answer given (a 503 or a cached read, each costing the one
    unit, rate_limit_rules.read_cost): the unit's request is over, the client counted."""
    if ticket is not None:
        ticket.state.inflight -= 1
    state.top.record(client.key, now)


def _admin(request: web.Request) -> bool:
    expected = request.app[SETTINGS].admin_token
    if not expected:
        return False
    value = request.headers.get("Authorization", "")
    return value[:7].lower() == "bearer " and hmac.compare_digest(
        value[7:].strip().encode(), expected.encode())


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def denied_response() -> web.Response:
    return web.Response(status=403, body=DENIED_BODY, headers=_NO_STORE)


@lru_cache(maxsize=1024)
def refusal_parts(refusal: Refusal) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a 429 (also written before the middlewares, early_refusal.py);
    kept per refusal (its budget, Retry-After and policies: a few distinct ones at a time).
    The dict is shared: copy it before changing it."""
    p = refusal.policy
    body = orjson.dumps({"error": {
        "code": "rate_limited",
        "message": f"too many requests from this client: its {p.name!r} budget of {p.quota} "
                   f"per {p.window_s} s is spent; retry after {refusal.retry_after} s"}})
    return body, {**_NO_STORE, "Retry-After": str(refusal.retry_after),
                  "RateLimit-Policy": rules.policy_header(list(refusal.policies)),
                  "RateLimit": rules.ratelimit_header(p.name, 0, refusal.retry_after)}


def refused_response(refusal: Refusal) -> web.Response:
    body, headers = refusal_parts(refusal)
    return web.Response(status=429, body=body, headers=dict(headers))


def refused_early(state: RateLimits, client, route: str, now: float) -> Refusal | None:
    """The middleware's 429 for a GET or HEAD (a read) of a client this process knows to be
    over its budget, decided without a request object or a store call, and counted as the
    middleware counts it (arbor_rate_limited_requests, the top clients); None otherwise (a
    denied or exempt client, limits off, RateLimit on every answer, a client not blocked:
    the other paths decide)."""
    values = state.settings.values
    if (not values["rate_limit_enabled"] or values["rate_limit_headers"] == "always"
            or state.denied(client) or state.exempt(client.address, values)):
        return None
    refusal = state.limiter.refused_now(client.key, rules.READ,
                                        state.policies(client.account_id), now)
    if refusal is not None:
        state.top.record(client.key, now, limited=True)
        _limited_child(state.limited, route, refusal.budget).inc()
        state.refused_early += 1
    return refusal


@lru_cache(maxsize=1024)
def _limited_child(counter: Counter, route: str, reason: str):
    """arbor_rate_limited_requests{route,reason}'s child, looked up once (routes and reasons
    are bounded: the app's canonical routes)."""
    return counter.labels(route, reason)


@web.middleware
async def rate_limits(request: web.Request, handler) -> web.StreamResponse:
    state = request.app.get(RATE_LIMITS)
    path = request.path
    if state is None or path in rules.OPS_PATHS:
        return await handler(request)
    if path.startswith(_ADMIN) and _admin(request):
        return await handler(request)
    client = client_of(request)
    values = state.settings.values  # a dict: Settings' __getattr__ costs ~0.3 us a lookup
    now = time.time()
    if state.denied(client):
        state.top.record(client.key, now)
        state.limited.labels(_route(request), "denied").inc()
        return denied_response()
    if not values["rate_limit_enabled"] or state.exempt(client.address, values):
        if not state.warned_proxy and client.address == request.remote and (
                "X-Forwarded-For" in request.headers or "Forwarded" in request.headers):
            state.warned_proxy = True
            log.warning("requests from %s name their client in X-Forwarded-For/Forwarded, but "
                        "it is not in trusted_proxies: every client behind it counts as %s, "
                        "which rate_limit_exempt leaves unlimited; set trusted_proxies",
                        request.remote, request.remote)
        response = await handler(request)
        state.top.record(client.key, now, not_found=response.status == 404)
        return response
    budget = rules.READ if request.method in _READ_METHODS else rules.WRITE
    limiter = state.limiter
    policies = state.policies(client.account_id)
    outcome = limiter.held(client.key, budget, policies, now) or \
        await limiter.before(client.key, budget, policies, now)
    if outcome.__class__ is Refusal:
        state.top.record(client.key, now, limited=True)
        state.limited.labels(_route(request), outcome.budget).inc()
        return refused_response(outcome)
    try:
        response = await handler(request)
    except BaseException:
        limiter.abandon(outcome)
        raise
    status = response.status
    extra = 0
    if budget == rules.READ:
        cache = response.headers.get("Arbor-Cache")
        if cache != "hit":
            extra = rules.read_cost(path, status, cache, values["rate_limit_cost_render"],
                                    values["rate_limit_cost_page"]) - 1
    if extra or status == 404:
        await limiter.after(outcome, extra, status == 404)
    else:
        outcome.state.inflight -= 1  # nothing more to charge (a cached read, a write)
    state.top.record(client.key, now, not_found=status == 404)
    if values["rate_limit_headers"] == "always" and not response.prepared:
        await _add_headers(state, outcome, response)
    return response


async def _add_headers(state: RateLimits, ticket: Ticket, response: web.StreamResponse) -> None:
    policy, left, reset = await state.limiter.remaining(ticket)
    response.headers["RateLimit-Policy"] = rules.policy_header(list(ticket.policies))
    response.headers["RateLimit"] = rules.ratelimit_header(policy.name, left, reset)


# -- wiring ----------------------------------------------------------------------------------
def install(app: web.Application) -> None:
    """The app's rate limits (after metrics_middleware.install: its counters join the app's
    registry)."""
    state = app[RATE_LIMITS] = RateLimits(app[SETTINGS])
    # A token this process does not know yet is resolved after step 3 (its request counts
    # against its address): service/http/auth.py refuses a denied account once it knows it.
    app[DENY_LIST] = state
    registry = app[METRICS].registry
    state.limited = Counter("arbor_rate_limited_requests",
                            "Requests refused by the deny list (reason `denied`) or a rate "
                            "limit (reason: the budget spent: read, write, not_found), by "
                            "route.", ["route", "reason"], registry=registry)
    # Every (route, reason) from zero, so that rate() works from the first refusal (bounded:
    # the routes times 4 reasons); "unmatched" is any path that is no route.
    routes = {r.canonical for r in app.router.resources()} - rules.OPS_PATHS
    for route in sorted(routes | {"unmatched"}):
        for reason in (*rules.BUDGETS, "denied"):
            state.limited.labels(route, reason)
    registry.register(_Collector(state))
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[RATE_LIMITS]
    try:
        await state.reload(app[DB])
    except Exception as e:  # noqa: BLE001 - start without lists rather than not at all
        log.warning("rate limits: could not read the overrides and deny list (%s: %s); "
                    "retrying every rate_limit_reload_s", type(e).__name__, e)
    task = asyncio.create_task(_reload_forever(app))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await state.store.close()


async def _reload_forever(app: web.Application) -> None:
    state, failing = app[RATE_LIMITS], False
    while True:
        await asyncio.sleep(app[SETTINGS].rate_limit_reload_s)
        try:
            await state.reload(app[DB])
            if failing:
                log.info("rate limits: overrides and deny list read again")
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - keep the lists we have
            if not failing:
                log.warning("rate limits: could not re-read the overrides and deny list "
                            "(%s: %s); keeping the ones read before", type(e).__name__, e)
            failing = True


class _Collector:
    def __init__(self, state: RateLimits):
        self.state = state

    def collect(self):
        s = self.state
        yield GaugeMetricFamily("arbor_rate_limit_clients",
                                "Clients this process remembers rate-limit state of "
                                "(at most rate_limit_max_clients).", value=len(s.limiter))
        yield GaugeMetricFamily("arbor_rate_limit_local_counters",
                                "Counters in the in-process rate-limit store (at most 4 x "
                                "rate_limit_max_clients).", value=len(s.store.local))
        yield GaugeMetricFamily("arbor_deny_list_entries", "Entries on the deny list.",
                                value=s.deny_count)
        yield GaugeMetricFamily("arbor_rate_limit_overrides",
                                "Accounts with their own rate limits.", value=len(s.overrides))
        yield GaugeMetricFamily("arbor_rate_limit_store_up",
                                "0 while the shared rate-limit store (rate_limit_storage_url) "
                                "fails and limits are kept per process instead; 1 otherwise "
                                "(always 1 without a shared store).",
                                value=0 if s.store.shared_up is False else 1)
        yield CounterMetricFamily("arbor_rate_limit_store_errors",
                                  "Failed calls to the shared rate-limit store.",
                                  value=s.store.errors)
