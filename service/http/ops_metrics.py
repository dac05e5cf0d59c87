"""Wiring of service/core/ops_metrics.py: the counters' registry is the app's (after
metrics_middleware.install), and the two things they count, each O(1) on the common path:

  * count_unavailable(app, response): a 503's reason, its error code (read from the body only
    for 503s: a few microseconds on a path that is already refusing work);
  * count_degraded(app, body, stale, result): on a rendered or stale read, its `partial` and
    `degraded` parts, read from the object just rendered (a stale copy has only its bytes:
    a byte search, in C; cached fresh hits are never degraded: such answers are not cached).
"""
from __future__ import annotations

import re

import orjson
from aiohttp import web

from service.core.ops_metrics import FoldStats, OpsMetrics

from .keys import DB, FOLDS, METRICS, OPS_METRICS
from .representation import COMPRESSION

_DEGRADED = re.compile(rb'"degraded":\[([^\]]*)\]')


def install(app: web.Application) -> None:
    app[FOLDS] = FoldStats()
    app[OPS_METRICS] = OpsMetrics(app[METRICS].registry, lambda: app.get(DB),
                                  compression=COMPRESSION, folds=lambda: app.get(FOLDS))


def count_unavailable(app: web.Application, response: web.StreamResponse) -> None:
    ops = app.get(OPS_METRICS)
    if ops is None:
        return
    reason = "unknown"
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        try:
            code = orjson.loads(body)["error"]["code"]
            if isinstance(code, str) and len(code) <= 40:
                reason = code
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    ops.unavailable.labels(reason).inc()


def degraded_parts(body: bytes) -> list[str]:
    """The parts a rendered body says are missing: `partial` and its `degraded` list."""
    parts = []
    if b'"partial":true' in body:
        parts.append("partial")
    m = _DEGRADED.search(body)
    if m and m.group(1):
        parts.extend(p.strip(b'"').decode() for p in m.group(1).split(b","))
    return parts


def _parts_of(result: dict) -> list[str]:
    """The same parts, read from the rendered object (no search of the body)."""
    parts = ["partial"] if result.get("partial") is True else []
    degraded = result.get("degraded")
    if isinstance(degraded, list):
        parts.extend(p for p in degraded if isinstance(p, str))
    return parts


def count_degraded(app: web.Application, body: bytes, *, stale: bool = False,
                   result: object = None) -> None:
    """`result`: the object just rendered, when there is one (then the body is not read)."""
    ops = app.get(OPS_METRICS)
    if ops is None:
        return
    parts = _parts_of(result) if isinstance(result, dict) else degraded_parts(body)
    if stale and "stale" not in parts:
        parts.append("stale")
    for part in parts:
        if len(part) <= 40:
            ops.degraded.labels(part).inc()
