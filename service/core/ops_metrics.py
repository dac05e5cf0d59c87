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
    arbor_compression_bodies_total{coding}      bodies compressed (once per cached body and
                                                 coding), their bytes in and out, and the CPU
    arbor_compression_{input,output}_bytes_total{coding}   seconds it took
    arbor_compression_seconds_total{coding}
    arbor_reaction_fold_rounds_total            like/repost folding (service/http/
    arbor_reaction_folded_posts_total            reaction_folder.py): rounds, posts whose
    arbor_reaction_fold_failures_total           counters were folded, rounds that failed, and
    arbor_reaction_fold_last_success_timestamp_seconds   when one last succeeded (the start
                                                 until one has; counts and ranking go stale
                                                 while none does)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from storage.db import Database

# Known from the start (so that rate() works from the first one); others appear when seen.
UNAVAILABLE_REASONS = ("overloaded", "database_unavailable")
DEGRADED_PARTS = ("stale", "partial", "quotes", "ranking")


class CompressionStats:
    """What compressing has cost this process, per coding: bodies, bytes in and out, CPU
    seconds (counted by service/http/representation.compress). Plain numbers: a few additions
    per compressed body, which itself costs milliseconds."""

    __slots__ = ("bodies", "bytes_in", "bytes_out", "seconds")

    def __init__(self, codings: tuple[str, ...]) -> None:
        self.bodies = {c: 0 for c in codings}
        self.bytes_in = {c: 0 for c in codings}
        self.bytes_out = {c: 0 for c in codings}
        self.seconds = {c: 0.0 for c in codings}


@dataclass
class FoldStats:
    """The reaction folder's rounds (service/http/reaction_folder.py), per app."""
    rounds: int = 0
    posts: int = 0
    failures: int = 0
    # wall-clock seconds of the last round that succeeded; until one has, when the stats
    # were made (the app's start), so that a folder that never succeeds is alerted on too
    last_success: float = field(default_factory=time.time)

    def folded(self, posts: int) -> None:
        self.rounds += 1
        self.posts += posts
        self.last_success = time.time()


class OpsMetrics:
    def __init__(self, registry: CollectorRegistry, database: Callable[[], Database | None],
                 compression: CompressionStats | None = None,
                 folds: Callable[[], FoldStats | None] = lambda: None):
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
        if compression is not None:
            registry.register(_CompressionCollector(compression))
        registry.register(_FoldCollector(folds))


class _CompressionCollector:
    def __init__(self, stats: CompressionStats):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, doc, values in (
                ("arbor_compression_bodies", "Bodies compressed, by coding (a cached body "
                 "once per coding).", s.bodies),
                ("arbor_compression_input_bytes", "Bytes of the bodies compressed.",
                 s.bytes_in),
                ("arbor_compression_output_bytes", "Bytes they compressed to.", s.bytes_out),
                ("arbor_compression_seconds", "CPU seconds spent compressing.", s.seconds)):
            family = CounterMetricFamily(name, doc, labels=["coding"])
            for coding, value in values.items():
                family.add_metric([coding], value)
            yield family


class _FoldCollector:
    def __init__(self, folds: Callable[[], FoldStats | None]):
        self.folds = folds

    def collect(self) -> Iterator[Metric]:
        f = self.folds()
        if f is None:
            return
        yield CounterMetricFamily("arbor_reaction_fold_rounds", "Rounds of folding pending "
                                  "like/repost deltas into the counters that succeeded.",
                                  value=f.rounds)
        yield CounterMetricFamily("arbor_reaction_folded_posts", "Posts whose counters and "
                                  "score a round folded.", value=f.posts)
        yield CounterMetricFamily("arbor_reaction_fold_failures", "Rounds that failed (the "
                                  "deltas stay pending for the next).", value=f.failures)
        yield GaugeMetricFamily("arbor_reaction_fold_last_success_timestamp_seconds",
                                "When a round last succeeded (Unix time; the start until one "
                                "has).", value=f.last_success)


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
