"""The metrics an SRE reads beside the request counters (service/core/metrics.py): why answers
were 503 or degraded, and the database pool. Registered on the app's registry by
service/http/ops_metrics.py; what the pool holds is read at scrape time (O(pool size)).

    arbor_unavailable_responses_total{reason}   every 503 the service sent, by its error code
                                                 (overloaded, database_unavailable, ...)
    arbor_degraded_responses_total{part}        answers served incomplete, by part: stale (an
                                                 older copy), partial (the time budget ran
                                                 out), quotes, ranking, ... (the body's
                                                 `degraded` list)
    arbor_db_pool_{size,idle,in_use,max}        connections open, idle, lent out, at most
    arbor_db_pool_waits_total                   acquisitions that found no free connection
    arbor_db_pool_wait_seconds_total            time those acquisitions waited
    arbor_db_pool_acquire_timeouts_total        acquisitions that gave up (db_acquire_timeout_s)
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from storage.db import Database

# Known from the start (so that rate() works from the first one); others appear when seen.
UNAVAILABLE_REASONS = ("overloaded", "database_unavailable")
DEGRADED_PARTS = ("stale", "partial", "quotes", "ranking")


class OpsMetrics:
    def __init__(self, registry: CollectorRegistry, database: Callable[[], Database | None]):
        self.unavailable = Counter("arbor_unavailable_responses",
                                   "Answers with status 503, by reason (the error code).",
                                   ["reason"], registry=registry)
        self.degraded = Counter("arbor_degraded_responses",
                                "Answers served incomplete, by part (stale, partial, quotes, "
                                "ranking: the body's `degraded` list and `partial`).",
                                ["part"], registry=registry)
        for reason in UNAVAILABLE_REASONS:
            self.unavailable.labels(reason)
        for part in DEGRADED_PARTS:
            self.degraded.labels(part)
        registry.register(_PoolCollector(database))


class _PoolCollector:
    def __init__(self, database: Callable[[], Database | None]):
        self.database = database

    def collect(self) -> Iterator[Metric]:
        db = self.database()
        if db is None:
            return
        pool = db.pool
        size, idle = pool.get_size(), pool.get_idle_size()
        yield GaugeMetricFamily("arbor_db_pool_size", "Database connections open.", value=size)
        yield GaugeMetricFamily("arbor_db_pool_idle", "Open database connections not lent out.",
                                value=idle)
        yield GaugeMetricFamily("arbor_db_pool_in_use", "Database connections lent out.",
                                value=size - idle)
        yield GaugeMetricFamily("arbor_db_pool_max", "Most connections the pool opens "
                                "(db_pool_max).", value=pool.get_max_size())
        yield CounterMetricFamily("arbor_db_pool_waits", "Acquisitions that found every "
                                  "connection lent out and waited.", value=db.acquire_waits)
        yield CounterMetricFamily("arbor_db_pool_wait_seconds", "Time acquisitions that "
                                  "waited spent waiting.", value=db.acquire_wait_seconds)
        yield CounterMetricFamily("arbor_db_pool_acquire_timeouts", "Acquisitions that gave "
                                  "up after db_acquire_timeout_s.", value=db.acquire_timeouts)
