"""The application factory: create_app(settings) -> web.Application."""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import orjson
from aiohttp import web

from storage import migrations, section_updates, seeding
from storage.db import Database

from service import api
from service.api import pages
from service.core.settings import Settings, embedded_postgres_class, section_thresholds
from service.http import (admission_middleware, coherence, conventions, cors, early_refusal, html,
                          mastodon, metrics_middleware, middlewares, ops_metrics,
                          rate_limit_middleware, reaction_folder, replica_routing, request_ids,
                          tracing)
from service.http.keys import DB, DEPS, DSN, FAULTS, OPENAPI, PAGES, READS, SETTINGS, VIEWERS
from service.pipeline.cursors import CursorCodec
from service.pipeline.deps import Deps
from service.pipeline.viewer_cache import ViewerCache
from service.resilience.breakers import CircuitBreaker
from service.resilience.faults import Faults
from service.resilience.render_cache import Coalescer, ReadPath, RenderCache

from .openapi import build_spec

log = logging.getLogger("arbor.app")


def create_app(settings: Settings, *, seed_demo: bool = False,
               faults: Faults | None = None) -> web.Application:
    # errors raised before the handlers in JSON too; an overload's refusals answered before
    # a request object exists (early_refusal.py: the same answer as the middlewares')
    early_refusal.install()
    # Scale-out's middlewares only where configured: every middleware costs every request.
    scale_out = ([replica_routing.route] if settings.replica_urls.split() else []) + [
        middlewares.invalidate_on_write] + (
        [coherence.propagate_writes] if settings.cache_notifications_enabled else [])
    app = web.Application(middlewares=[request_ids.request_ids,  # X-Request-Id, traceparent
                                        *tracing.middlewares(settings),  # [] unless tracing is on
                                        cors.cors,  # answers preflights before any budget
                                        mastodon.mastodon_errors,  # /api/: Mastodon's errors
                                        request_ids.unavailable,  # 503s by reason (our codes)
                                        rate_limit_middleware.rate_limits,  # deny, 429
                                        admission_middleware.admission,  # first: sheds cheaply
                                        # shed requests are counted by admission itself
                                        metrics_middleware.record,
                                        conventions.conventions,  # ETag/304, compression
                                        middlewares.timing, middlewares.errors,
                                        # reads to a replica; writes drop cached reads, and
                                        # answer once every process has dropped them
                                        *scale_out])
    # The app's own copy: live changes (PATCH /v1/admin/settings) stay in this app.
    settings = Settings(dict(settings.values), dict(settings.sources), settings.started)
    app[SETTINGS] = settings
    admission_middleware.install(app)
    app[FAULTS] = faults or Faults()
    app[OPENAPI] = orjson.dumps(build_spec(settings))  # built once at start: fails fast
    if settings.database_url:
        app[DSN] = settings.database_url
    else:
        embedded_postgres_class()  # fails here, naming DATABASE_URL, when it is not installed
        app.cleanup_ctx.append(_embedded_postgres)
    app.cleanup_ctx.append(_database)
    replica_routing.install(app)  # replica_urls: reads to replicas, LSN-sticky per viewer
    app.cleanup_ctx.append(_viewer_cache)
    app.cleanup_ctx.append(reaction_folder.run)
    coherence.install(app)  # other processes' writes drop this one's cached renders
    if seed_demo:
        app.on_startup.append(_seed_demo_if_empty)
    app.router.add_routes(api.ROUTES)
    html.install(app)  # the pages' templates (service/templates)
    app[PAGES] = {}
    pages.install(app)  # the pages' HTML cache
    metrics_middleware.install(app)
    ops_metrics.install(app)
    tracing.install(app)
    rate_limit_middleware.install(app)  # after the routes and the metrics registry
    return app


def read_path(s: Settings) -> ReadPath:
    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, failure_threshold=s.breaker_failure_threshold,
                              backoff_s=s.breaker_backoff_ms / 1000,
                              max_backoff_s=s.breaker_max_backoff_ms / 1000)
    cache = RenderCache(max_bytes=s.render_cache_bytes, fresh_ttl_s=s.render_cache_ttl_s,
                        stale_ttl_s=s.stale_ttl_s)
    return ReadPath(cache, Coalescer(), breaker("database"), breaker("ranking"), settings=s)


async def _embedded_postgres(app: web.Application) -> AsyncIterator[None]:
    server = embedded_postgres_class()(app[SETTINGS].data_dir)
    loop = asyncio.get_running_loop()
    app[DSN] = await loop.run_in_executor(None, server.start)
    yield
    if server.started_here:
        await loop.run_in_executor(None, server.stop)


async def _database(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    db = await Database.connect(app[DSN], min_size=s.db_pool_min, max_size=s.db_pool_max,
                                statement_timeout_ms=s.db_statement_timeout_ms,
                                connect_timeout=s.db_connect_timeout_s,
                                acquire_timeout=s.db_acquire_timeout_s,
                                command_timeout=s.db_command_timeout_s or None)
    async with db.pool.acquire() as con:
        applied = await migrations.apply(con)
    if applied:
        log.info("migrations applied: %s", applied)
    app[DB] = db
    app[READS] = reads = read_path(s)
    app[DEPS] = Deps(db=db, cursors=CursorCodec(s.cursor_secret, s.cursor_ttl_s), settings=s,
                     faults=app[FAULTS], ranking=reads.ranking)
    section_updates.configure(section_thresholds(s))
    yield
    await db.close()


async def _viewer_cache(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    app[VIEWERS] = ViewerCache(s.viewer_cache_ttl_s, s.viewer_cache_size)
    yield
    app[VIEWERS].clear()


async def _seed_demo_if_empty(app: web.Application) -> None:
    db = app[DB]
    if await db.fetchval("SELECT EXISTS (SELECT 1 FROM posts)"):
        log.info("database has posts; not seeding the demo")
    else:
        async with db.pool.acquire() as con:
            await seeding.seed(con, "demo")
    roots = await db.fetchval("SELECT roots FROM seed_runs WHERE preset = 'demo'")
    if roots:
        port = app[SETTINGS].port
        log.info("demo conversations (pages at http://localhost:%s/, JSON under /v1): %s", port,
                 ", ".join(f"{name}=http://localhost:{port}/conversations/{post_id}"
                           for name, post_id in orjson.loads(roots).items()))
