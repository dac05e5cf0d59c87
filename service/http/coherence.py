"""Caches coherent across processes and hosts: the app's change feed (storage/change_feed.py)
applied to this process's render cache and viewer cache (service/pipeline/change_notices.py).

A write through any process NOTIFYs from its own transaction; every process (the writer too)
drops what it changed when the notice arrives, typically well under a millisecond after the
commit; the write's answer waits until every listening process has confirmed it
(propagate_writes), so the client's next read, wherever it goes, sees the write. While the channel is down, other processes' writes show within the caches' TTLs
(render_cache_ttl_s, viewer_cache_ttl_s); /readyz lists `cache_notifications` (still 200:
serving slightly stale is better than not serving); on reconnecting, everything cached is
treated as stale (notices sent meanwhile are lost).

Live settings changed through one process's admin API reach the others the same way
(broadcast_settings: a `s:<json>` notice, applied with the same validation).

Metrics: arbor_cache_notifications_up, arbor_cache_notifications_received_total,
arbor_cache_notifications_failures_total, arbor_cache_notifications_peers,
arbor_cache_notifications_fences_incomplete_total, arbor_cache_notifications_fence_notices_total.
"""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Iterator

import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from storage.change_feed import CHANNEL, ChangeFeed

from service.core.settings import SettingsError
from service.pipeline import change_notices

from .keys import (CHANGE_FEED, CHANGED, DB, DSN, METRICS, RATE_LIMITS, READS, REPLICAS,
                   SETTINGS, VIEWERS)

log = logging.getLogger("arbor.coherence")


def install(app: web.Application) -> None:
    """After the database and viewer cache contexts (it needs both)."""
    if app[SETTINGS].cache_notifications_enabled:
        app.cleanup_ctx.append(_change_feed)


@web.middleware
async def propagate_writes(request: web.Request, handler) -> web.StreamResponse:
    """A write that succeeded answers once every listening process has confirmed that it
    applied the write's notice (ChangeFeed.fence, bounded by cache_notifications_fence_ms):
    a client that reads next through any other process finds it told. Past the bound it
    answers anyway (counted; the TTLs are then the bound on what others serve)."""
    response = await handler(request)
    if request.method not in ("GET", "HEAD", "OPTIONS") and response.status < 400:
        feed = request.app.get(CHANGE_FEED)
        if feed is None:
            return response
        # what no trigger notifies: the viewers whose own likes or reposts changed
        # (migrations/0011), as the handlers list them for this process (CHANGED)
        viewers = [key[1] for key in request.get(CHANGED) or ()
                   if isinstance(key, tuple) and key[0] == "viewer"]
        ids = {"u": viewers} if viewers else None
        wait_ms = request.app[SETTINGS].cache_notifications_fence_ms
        if wait_ms > 0:
            await feed.fence(wait_ms / 1000, ids)
        elif ids:
            feed.notify_soon(ids)
    return response


async def _change_feed(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    versions = app[READS].cache.versions
    reloading: set[asyncio.Task] = set()

    def reload_rate_limits() -> None:
        limits = app.get(RATE_LIMITS)
        if limits is not None:
            task = asyncio.create_task(limits.reload(app[DB]))
            reloading.add(task)
            task.add_done_callback(reloading.discard)

    def on_change(payload: str) -> None:
        if payload.startswith(SETTINGS_PREFIX):
            _apply_settings(app, payload[len(SETTINGS_PREFIX):])
        else:
            change_notices.apply(payload, versions, app.get(VIEWERS), reload_rate_limits)
            replicas = app.get(REPLICAS)
            if replicas is not None:
                # A render read from a replica that had not replayed this write yet may be
                # cached after the notice: drop it again once any usable replica has it.
                asyncio.get_running_loop().call_later(
                    replicas.max_lag_s, change_notices.apply, payload, versions,
                    app.get(VIEWERS), None)

    def on_reset() -> None:
        change_notices.reset(versions, app.get(VIEWERS))

    feed = ChangeFeed(app[DSN], on_change, on_reset,
                      keepalive_s=s.cache_notifications_keepalive_s,
                      connect_timeout=s.db_connect_timeout_s,
                      max_backoff_s=s.cache_notifications_max_backoff_s)
    app[CHANGE_FEED] = feed
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.registry.register(_Collector(feed))
    task = asyncio.create_task(feed.run(), name="arbor-change-feed")
    await feed.wait_up(s.db_connect_timeout_s)  # else it starts degraded, and keeps trying
    yield
    await feed.close()
    task.cancel()
    await asyncio.gather(task, *reloading, return_exceptions=True)


class _Collector:
    def __init__(self, feed: ChangeFeed):
        self.feed = feed

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("arbor_cache_notifications_up", "1 while this process listens "
                                "for other processes' writes (else caches rely on TTLs).",
                                value=1 if self.feed.up else 0)
        yield CounterMetricFamily("arbor_cache_notifications_received",
                                  "Change notices received (each invalidates cached renders "
                                  "or viewers).", value=self.feed.received)
        yield CounterMetricFamily("arbor_cache_notifications_failures",
                                  "Times the listening connection was lost or could not be "
                                  "opened.", value=self.feed.failures)
        yield GaugeMetricFamily("arbor_cache_notifications_peers", "Other processes listening "
                                "(heard within 3 x cache_notifications_keepalive_s).",
                                value=len(self.feed.live_peers()))
        yield CounterMetricFamily("arbor_cache_notifications_fences_incomplete",
                                  "Writes that answered before every process confirmed its "
                                  "notice (cache_notifications_fence_ms ran out).",
                                  value=self.feed.fences_incomplete)
        yield CounterMetricFamily("arbor_cache_notifications_fence_notices",
                                  "Fence notices sent: writes waiting at the same time share "
                                  "one.", value=self.feed.fence_notices)


SETTINGS_PREFIX = "s:"
_MAX_PAYLOAD = 7900  # NOTIFY's limit is 8000 bytes


async def broadcast_settings(app: web.Application, changes: dict) -> None:
    """A live-settings change made through this process, for every other process: they apply
    the same change (validated the same way; this one applies its own notice again, which
    changes nothing). Not persisted, like the change itself."""
    if CHANGE_FEED not in app:
        return
    payload = f"{SETTINGS_PREFIX}{app[CHANGE_FEED].origin}:{orjson.dumps(changes).decode()}"
    if len(payload.encode()) > _MAX_PAYLOAD:
        log.warning("settings change too large to broadcast (%d bytes): this process only",
                    len(payload))
        return
    try:
        await app[DB].execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
    except Exception as e:  # noqa: BLE001 - applied here; the others keep their values
        log.warning("settings change not broadcast to other processes: %s: %s",
                    type(e).__name__, e)


def _apply_settings(app: web.Application, body: str) -> None:
    sender, _, body = body.partition(":")
    if sender == app[CHANGE_FEED].origin:
        return  # this app's own change, applied already
    try:
        changed = app[SETTINGS].apply_live(orjson.loads(body))
    except (SettingsError, ValueError) as e:
        log.warning("settings change from another process not applied: %s", e)
        return
    app[READS].retune()
    if changed:
        log.warning("settings changed through another process's admin API: %s",
                    ", ".join(f"{k}={v}" for k, v in changed.items()))


def degraded(app: web.Application) -> tuple[bool, dict | None]:
    """For /readyz: whether the channel is down, and its figures (None when it is off)."""
    feed = app.get(CHANGE_FEED)
    if feed is None:
        return False, None
    return not feed.up, feed.snapshot()
