"""What GET /metrics shows (service/api/ops.py serves it; the registry is
service/core/metrics.py, one per app).

Request counts and latency by route and status come from a middleware (a request the
client abandoned mid-way counts as status "499", never as a 500); the event loop's lag
from a sampling task (service/resilience/loop_lag.py); the state of the read path (render
cache, coalescing, breakers), of admission and the process's involuntary context switches
are read at scrape time.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.core.metrics import Metrics
from service.resilience import loop_lag
from service.resilience.admission import PRIORITY_NAMES, Priority

from .admission_middleware import ADMISSION
from .keys import METRICS, READS

_BREAKER_STATE = {"closed": 0, "half_open": 1, "open": 2}


class _StateCollector:
    def __init__(self, app: web.Application):
        self.app = app

    def collect(self) -> Iterator[Metric]:
        reads = self.app.get(READS)
        if reads is not None:
            cache = reads.cache
            yield GaugeMetricFamily("arbor_render_cache_bytes", "Bytes in the render cache.",
                                    value=cache.bytes)
            yield GaugeMetricFamily("arbor_render_cache_entries", "Entries in the render cache.",
                                    value=len(cache))
            outcomes = CounterMetricFamily("arbor_render_cache_lookups",
                                           "Render cache lookups by outcome.", labels=["outcome"])
            outcomes.add_metric(["hit"], cache.hits)
            outcomes.add_metric(["miss"], cache.misses)
            outcomes.add_metric(["stale"], cache.stale_served)
            yield outcomes
            yield CounterMetricFamily("arbor_render_cache_early_hits",
                                      "Of the hits, those answered in the HTTP protocol before "
                                      "the middlewares (setting http_early_cache_hits).",
                                      value=cache.early_hits)
            yield CounterMetricFamily("arbor_coalesced_requests",
                                      "Requests that shared another request's render.",
                                      value=reads.coalescer.shared)
            state = GaugeMetricFamily("arbor_breaker_state",
                                      "Circuit breaker state: 0 closed, 1 half open, 2 open.",
                                      labels=["dependency"])
            for breaker in (reads.database, reads.ranking):
                state.add_metric([breaker.name], _BREAKER_STATE[breaker.state])
            yield state
        switches = _involuntary_context_switches()
        if switches is not None:
            yield CounterMetricFamily(
                "arbor_process_involuntary_context_switches",
                "Times this process was preempted while it could run (Linux): growing by "
                "hundreds per second under load, something else takes its CPU.",
                value=switches)
        gate = self.app.get(ADMISSION)
        if gate is not None:
            yield from _admission_metrics(gate)


def _admission_metrics(gate) -> Iterator[Metric]:
    c = gate.controller
    yield GaugeMetricFamily("arbor_admission_concurrency_limit",
                            "Requests served at once (setting concurrency_limit).",
                            value=c.params.concurrency)
    yield GaugeMetricFamily("arbor_admission_inflight", "Requests being served.",
                            value=c.inflight)
    yield GaugeMetricFamily("arbor_admission_queued", "Requests waiting for a slot.",
                            value=c.queued)
    yield GaugeMetricFamily("arbor_admission_oldest_wait_seconds",
                            "How long the oldest waiting request has waited (0: nobody "
                            "waits); above admission_target_ms for an interval: overloaded.",
                            value=c.oldest_wait)
    yield GaugeMetricFamily("arbor_admission_overloaded",
                            "1 while the queue is standing (overload): shedding.",
                            value=1 if c.overloaded else 0)
    yield GaugeMetricFamily("arbor_admission_clients",
                            "Clients with requests in flight or queued.", value=len(c.clients))
    yield CounterMetricFamily("arbor_admission_overload_episodes",
                              "Times a standing queue began (overload).",
                              value=c.counters.overload_episodes)
    admitted = CounterMetricFamily("arbor_admission_admitted",
                                   "Requests given a slot, by priority.", labels=["priority"])
    for p in Priority:
        admitted.add_metric([PRIORITY_NAMES[p]], c.counters.admitted[p])
    yield admitted
    shed = CounterMetricFamily("arbor_admission_shed",
                               "Requests answered 503 overloaded, by reason and route.",
                               labels=["reason", "route"])
    counts = gate.shed_by_route
    for reason, route in gate.series():
        shed.add_metric([reason, route], counts.get((reason, route), 0))
    yield shed


def _involuntary_context_switches() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def install(app: web.Application) -> None:
    """The app's registry, with the state read at scrape time and the loop-lag sampler."""
    app[METRICS] = metrics = Metrics()
    metrics.registry.register(_StateCollector(app))
    app.cleanup_ctx.append(_loop_lag)


async def _loop_lag(app: web.Application) -> AsyncIterator[None]:
    async with loop_lag.running(app[METRICS].loop_lag.observe):
        yield


# nginx's "client closed request": the client went away before the answer, so the handler
# was cancelled (`arbor serve` runs with handler_cancellation) and nothing was answered. Not
# the service's failure: counted apart from 5xx, so error-rate alerts do not fire on it.
ABANDONED = "499"


@web.middleware
async def record(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = "500"
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    except web.HTTPException as e:
        status = str(e.status)
        raise
    except asyncio.CancelledError:
        status = ABANDONED
        raise
    finally:
        metrics = request.app.get(METRICS)
        if metrics is not None:
            route = request.match_info.route.resource
            metrics.observe_request(route.canonical if route is not None else "unmatched",
                                    request.method, status, time.perf_counter() - started)
