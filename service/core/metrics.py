"""The metrics registry of one app (prometheus-client): the request counters and histograms
that middlewares observe. What is read at scrape time is registered beside it by
service/http/metrics_middleware.py; GET /metrics (service/api/ops.py) prints it.
"""
from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, GCCollector, Histogram,
                               PlatformCollector, ProcessCollector, generate_latest)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# The text format's media type with its version (what generate_latest writes: no UTF-8 names).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # The standard process_* (CPU, memory, fds, start time; Linux /proc) and python_*
        # (version, gc) series, on this app's registry rather than the global one.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter("arbor_http_requests", "HTTP requests answered.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("arbor_http_request_duration_seconds",
                                 "Time to answer an HTTP request.", ["route"],
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                                 registry=self.registry)
        self.loop_lag = Histogram("arbor_event_loop_lag_seconds",
                                  "How late a timer fires on the event loop (sampled every "
                                  "100 ms): what every request waits before its code runs.",
                                  buckets=(.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1),
                                  registry=self.registry)

        # (route, method, status) -> (counter, histogram) children: labels() takes a lock and
        # builds its key on every call, which was ~2.6% of a cached read's CPU. As bounded as
        # the label sets themselves.
        self._request_children: dict[tuple[str, str, str], tuple] = {}

    def observe_request(self, route: str, method: str, status: str, seconds: float) -> None:
        """One answered (or abandoned: status "499") request of `route`, and its duration."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(route, method, status), self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
