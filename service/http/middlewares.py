"""Errors into the one JSON shape; per-request database accounting (Server-Timing)."""
from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from storage.db import start_query_stats

from service.core.errors import ApiError
from service.resilience.failures import DATABASE_ERRORS

from .keys import CHANGED, DB_ROUND_TRIPS, READS, REQUEST_CONTEXT
from .protocol_errors import CLIENT_ERRORS, error_body
from .responses import error_response

log = logging.getLogger("arbor.http")

# Failures that mean "the database is unreachable or too slow", not "the request is wrong".
DATABASE_UNAVAILABLE = DATABASE_ERRORS
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               400: "bad_request", 401: "unauthorized", 403: "forbidden"}


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message, retry_after=e.retry_after,
                              headers=e.headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "http_error")
        message = "no such endpoint" if e.status == 404 else (e.reason or code)
        response = error_response(e.status, code, message)
        if "Allow" in e.headers:  # RFC 9110: a 405 lists the methods that are allowed
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except CLIENT_ERRORS as e:  # a body that does not decode, found while reading it
        code, message = error_body(400, e)
        return error_response(400, code, message)
    except DATABASE_UNAVAILABLE as e:
        log.warning("database unavailable: %s: %s path=%s", type(e).__name__, e, request.path)
        return error_response(503, "database_unavailable",
                              "the database is unavailable; retry shortly", retry_after=1)
    except Exception:
        log.exception("unhandled error path=%s", request.path)
        return error_response(500, "internal", "internal error")


@web.middleware
async def timing(request: web.Request, handler) -> web.StreamResponse:
    stats = start_query_stats()
    started = time.perf_counter()
    response = await handler(request)
    total_ms = (time.perf_counter() - started) * 1000
    request[DB_ROUND_TRIPS] = stats.round_trips
    if response.status == 404:
        # A 404 must be byte-for-byte the same whether the post is missing or hidden from
        # this viewer; the number of round trips would tell them apart.
        return response
    response.headers["Server-Timing"] = (
        f'db;dur={stats.seconds * 1000:.2f};desc="round_trips={stats.round_trips}", '
        f"total;dur={total_ms:.2f}")
    return response


class AccessLogger(AbstractAccessLogger):
    """One line per request an SRE can grep: method, path, status, bytes, ms, db round trips."""

    @property
    def enabled(self) -> bool:
        """aiohttp skips the call (and building its arguments) when INFO is not logged."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request, response, time):  # noqa: A002 - aiohttp's signature
        # written after the request's context ended: its ids from the request itself
        ctx = request.get(REQUEST_CONTEXT)
        access_line(self.logger, request.remote, request.method, request.path_qs,
                    response.status, response.body_length, time,
                    request.get(DB_ROUND_TRIPS, 0), ctx)


def access_line(logger: logging.Logger, remote, method: str, path_qs: str, status: int,
                body_length: int, seconds: float, round_trips: int, ctx=None) -> None:
    """The access log's line (also written for refusals answered in early_refusal.py);
    `ctx`: the request's RequestContext (its ids go with the line)."""
    extra = {"request_id": ctx.request_id, "trace_id": ctx.trace_id} if ctx else None
    logger.info('%s %s %s status=%s bytes=%s ms=%.1f db_round_trips=%s', remote, method,
                path_qs[:300], status, body_length, seconds * 1000, round_trips, extra=extra)


@web.middleware
async def invalidate_on_write(request: web.Request, handler) -> web.StreamResponse:
    """A write that succeeded makes cached reads it may affect stale: precisely, when its
    handler listed what it changed in request[CHANGED] (conversation ids, ("quotes", id)),
    else everything (an account, label or relation change reaches many conversations)."""
    response = await handler(request)
    if request.method not in ("GET", "HEAD", "OPTIONS") and response.status < 400:
        reads = request.app.get(READS)
        if reads is not None:
            changed = request.get(CHANGED)
            if changed:
                reads.cache.versions.bump(*changed)
            else:
                reads.cache.versions.bump_all()
    return response
