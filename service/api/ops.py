"""/healthz, /readyz, /metrics and /openapi.json: for load balancers, SREs and clients.
Never shed (service/http/admission_middleware.EXEMPT_PATHS); the first three are not rate
limited either (service/resilience/rate_limit_rules.OPS_PATHS)."""
from __future__ import annotations

import asyncio
import os

import orjson
from aiohttp import web

from service.core.metrics import CONTENT_TYPE
from service.http import coherence, replica_routing
from service.http.admission_middleware import ADMISSION
from service.http.keys import DB, METRICS, RATE_LIMITS, READS, SETTINGS
from service.http.responses import json_response
from service.openapi import build_spec
from service.resilience.breakers import BreakerOpen


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "pid": os.getpid()})


async def _database_answers(app: web.Application) -> bool:
    """SELECT 1 within 0.5 s. While the database breaker is open, this check is also its
    probe once the backoff allows one: an instance that a load balancer took out of rotation
    gets no other traffic, and would otherwise never see the breaker close (and never be
    ready again)."""
    breaker = app[READS].database
    probe = False
    if breaker.state != "closed":
        try:
            breaker.before()
            probe = True
        except BreakerOpen:
            pass
    try:
        await asyncio.wait_for(app[DB].fetchval("SELECT 1"), timeout=0.5)
    except Exception:  # any failure to answer means not ready
        if probe:
            breaker.failure()
        return False
    except BaseException:  # cancelled: says nothing of the database
        if probe:
            breaker.release()
        raise
    if probe:
        breaker.success()
    return True


async def readyz(request: web.Request) -> web.Response:
    """Which parts are degraded, and the figures behind it. 503 while the database does not
    answer or its breaker is open (cached conversations are still served, flagged stale); 200
    otherwise, even when ranking is down (chronological order), requests are being shed, or
    the shared rate-limit store is down (limits are then kept per process)."""
    app = request.app
    reads = app[READS]
    degraded, details = [], {}
    if not await _database_answers(app):
        degraded.append("database")
    if reads.database.state != "closed" and "database" not in degraded:
        degraded.append("database")
    if reads.ranking.state != "closed":
        degraded.append("ranking")
    details["breakers"] = {"database": reads.database.snapshot(),
                           "ranking": reads.ranking.snapshot()}
    details["render_cache"] = {"entries": len(reads.cache), "bytes": reads.cache.bytes,
                               "hits": reads.cache.hits, "misses": reads.cache.misses,
                               "stale_served": reads.cache.stale_served,
                               "coalesced": reads.coalescer.shared}
    gate = app.get(ADMISSION)
    if gate is not None:
        details["admission"] = gate.snapshot()
        if gate.controller.overloaded:   # a standing queue: shedding
            degraded.append("overloaded")
    limits = app.get(RATE_LIMITS)
    if limits is not None:
        details["rate_limits"] = limits.snapshot()
        if limits.store.shared_up is False:
            degraded.append("rate_limit_store")  # limits kept per process: still serving
    down, feed = coherence.degraded(app)
    if feed is not None:
        details["cache_notifications"] = feed
        if down:  # other processes' writes show within the caches' TTLs: still serving
            degraded.append("cache_notifications")
    lagging, replicas = replica_routing.degraded(app)
    if replicas is not None:
        details["replicas"] = replicas
        if lagging:  # its reads go to the other replicas or the primary: still serving
            degraded.append("replicas")
    status = 503 if "database" in degraded else 200
    return json_response({"status": "degraded" if degraded else "ok", "degraded": degraded,
                          "details": details}, status=status)


async def openapi(request: web.Request) -> web.Response:
    # Built from the live settings: its limits follow PATCH /v1/admin/settings.
    return web.Response(body=orjson.dumps(build_spec(request.app[SETTINGS])),
                        content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].text(),
                        headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"})


ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/openapi.json", openapi),
    web.get("/metrics", metrics),
]
