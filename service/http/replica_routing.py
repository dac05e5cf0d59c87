"""Reads to read replicas, writes to the primary (storage/replicas.py), per request.

A GET or HEAD (but the admin API and the ops endpoints, which want the primary's truth) has
its reads routed to a replica that has replayed the viewer's last write; the viewer is the
request's bearer token (hashed), the key a write is remembered under. A write that succeeded
with a token remembers the primary's WAL position after it (one round trip, only when
replicas are configured). What the read path caches from a replica is dropped again
replica_max_lag_ms after each change notice (service/http/coherence.py), so that a render
cached from a replica that had not yet replayed a write does not outlive the lag bound.

Metrics: arbor_db_replica_configured (configured), and with replicas arbor_db_replica_up,
arbor_db_replica_lag_seconds, arbor_db_replica_reads_total (by replica) and
arbor_db_replica_primary_reads_total (reads that found no usable replica).
"""
from __future__ import annotations

import logging
from typing import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from storage.account_tokens import hash_token
from storage.replicas import Replicas

from .auth import bearer_token
from .keys import DB, METRICS, REPLICAS, SETTINGS

log = logging.getLogger("arbor.replicas")
_PRIMARY_ONLY = ("/v1/admin", "/readyz", "/healthz", "/metrics")


def install(app: web.Application) -> None:
    """After the database context."""
    if app[SETTINGS].replica_urls.split():
        app.cleanup_ctx.append(_replicas)
    else:
        app.on_startup.append(_no_replicas)


async def _no_replicas(app: web.Application) -> None:
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.registry.register(_Collector(None))


async def _replicas(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    db = app[DB]
    replicas = Replicas(db, s.replica_urls.split(), max_lag_s=s.replica_max_lag_ms / 1000,
                        sticky_s=s.replica_sticky_s, poll_s=s.replica_poll_ms / 1000,
                        pool_min=1, pool_max=s.replica_pool_max,
                        connect_timeout=s.db_connect_timeout_s,
                        statement_timeout_ms=s.db_statement_timeout_ms)
    await replicas.start()
    db.replicas = replicas
    app[REPLICAS] = replicas
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.registry.register(_Collector(replicas))
    yield
    db.replicas = None
    await replicas.close()


def _who(request: web.Request) -> bytes | None:
    try:
        token = bearer_token(request)
    except Exception:  # noqa: BLE001 - a malformed header: the handler answers 401
        return None
    return hash_token(token) if token else None


@web.middleware
async def route(request: web.Request, handler) -> web.StreamResponse:
    replicas = request.app.get(REPLICAS)
    if replicas is None:
        return await handler(request)
    values = request.app[SETTINGS].values   # live: replica_max_lag_ms, replica_sticky_s
    replicas.set_limits(values["replica_max_lag_ms"] / 1000, values["replica_sticky_s"])
    if request.path.startswith(_PRIMARY_ONLY):
        return await handler(request)
    if request.method in ("GET", "HEAD"):
        token = replicas.route(_who(request))
        try:
            return await handler(request)
        finally:
            replicas.unroute(token)
    response = await handler(request)
    if response.status < 400:
        who = _who(request)
        if who is not None:
            try:
                replicas.remember(who, await replicas.position_after_write())
            except Exception as e:  # noqa: BLE001 - then this viewer reads the primary
                log.warning("replicas: WAL position after a write unknown (%s); the viewer "
                            "reads the primary for replica_sticky_s", e)
                replicas.remember(who, 1 << 62)
    return response


class _Collector:
    def __init__(self, replicas: Replicas | None):
        self.replicas = replicas

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("arbor_db_replica_configured", "Read replicas configured "
                                "(replica_urls).",
                                value=len(self.replicas.replicas) if self.replicas else 0)
        if self.replicas is None:
            return
        up = GaugeMetricFamily("arbor_db_replica_up", "1 while a replica answers its polls.",
                               labels=["replica"])
        lag = GaugeMetricFamily("arbor_db_replica_lag_seconds", "How far a replica's replay is "
                                "behind the primary (0: it has replayed what the primary had "
                                "at the last poll).", labels=["replica"])
        reads = CounterMetricFamily("arbor_db_replica_reads", "Requests whose reads a replica "
                                    "served.", labels=["replica"])
        for r in self.replicas.replicas:
            up.add_metric([r.name], 1 if r.up else 0)
            if r.lag_s is not None:
                lag.add_metric([r.name], r.lag_s)
            reads.add_metric([r.name], r.reads)
        yield up
        yield lag
        yield reads
        yield CounterMetricFamily("arbor_db_replica_primary_reads", "Requests routed for "
                                  "replicas whose reads went to the primary (none usable, "
                                  "or none had replayed the viewer's last write).",
                                  value=self.replicas.primary_reads)


def degraded(app: web.Application) -> tuple[bool, dict | None]:
    """For /readyz: whether a configured replica is not usable, and the figures."""
    replicas = app.get(REPLICAS)
    if replicas is None:
        return False, None
    snap = replicas.snapshot()
    return any(not r["usable"] for r in snap["replicas"]), snap
