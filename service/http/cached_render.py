"""Serving a read: fresh from the render cache, else rendered once (coalesced), else stale.

The order of a read: (1) a fresh cached body for this token and request, with no database
work and no parsing of its parameters (only what once rendered is cached, so the same
request would parse the same way; the handler's `validate` runs on a miss, first); (2) if the database breaker is open, the stale copy or a fast 503; (3) the
render, shared by every concurrent request for the same key (one started before a write was
answered is not shared with a read begun after it: Coalescer's generations), its outcome
telling the breaker whether the database works; (4) on a database failure, the stale copy with
`degraded: ["stale"]` and an `Arbor-Degraded: stale` header, or a 503 with Retry-After.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from storage.account_tokens import hash_token
from storage.rows import Viewer

from service.core.errors import ApiError
from service.resilience.breakers import BreakerOpen
from service.resilience.failures import DATABASE_ERRORS
from service.resilience.render_cache import ReadPath

from .auth import FROM_HEADER, bearer_token, viewer_of
from .keys import REPRESENTATION
from .links import link_header
from .ops_metrics import count_degraded
from .representation import Representation

log = logging.getLogger("arbor.reads")
Render = Callable[[], Awaitable[Any]]


def _key(request: web.Request, token: str | None, path: str | None) -> tuple:
    query = tuple(sorted(request.query.items()))
    return (hash_token(token) if token else None, path or request.path, query)


# orjson writes no spaces, and a quote inside a string value is escaped (\"), so this finds
# exactly the posts' own "conversation_id" members: in C, at a fraction of the cost of
# walking the rendered object in Python (which was ~5% of a render's CPU).
_CONVERSATION_ID = re.compile(rb'"conversation_id":"(\d+)"')


def conversations_in(body: bytes) -> set[int]:
    """Every conversation id a rendered body shows posts of (its own and quoted posts')."""
    return {int(m) for m in set(_CONVERSATION_ID.findall(body))}  # most are the same id


def _response(body: bytes, **headers: str) -> web.Response:
    return web.Response(body=body, content_type="application/json", headers=headers or None)


class Seen:
    """What a render found out that the cache key must depend on."""

    def __init__(self) -> None:
        self.deps: list = []

    def __call__(self) -> tuple:
        return tuple(self.deps)


async def render_viewer(request: web.Request, seen: Seen, token: Any = FROM_HEADER) -> Viewer:
    """The viewer of this request, as something the cached body depends on."""
    viewer = await viewer_of(request, token)
    seen.deps.append(("viewer", viewer.id))
    return viewer


async def serve(request: web.Request, read: ReadPath, render: Render,
                extra_deps: Callable[[], tuple], *,
                validate: Callable[[], None] | None = None) -> web.Response:
    """`render()` returns the JSON object; `extra_deps()`, called after it, names what else
    the body depends on besides the conversations it shows (the viewer, the conversation of
    an empty page); `validate()`, called on a cache miss before anything else, parses the
    request's parameters (raising its 400s)."""
    body, headers, representation, _ = await read_body(request, read, render, extra_deps,
                                                        validate=validate)
    if representation is not None:
        request[REPRESENTATION] = representation  # its ETag, Link, compressed forms
    return _response(body, **headers)


async def read_body(request: web.Request, read: ReadPath, render: Render,
                    extra_deps: Callable[[], tuple], *, token: Any = FROM_HEADER,
                    path: str | None = None, validate: Callable[[], None] | None = None
                    ) -> tuple[bytes, dict[str, str], Representation | None, Any]:
    """The JSON body of a read, its headers (Arbor-Cache; Arbor-Degraded, Age and Link for a
    stale copy), its cached Representation (None for a stale copy), and the rendered object
    itself when it was rendered now (None otherwise: the body is what there is; its times
    are datetimes, not strings); ApiError(503, "database_unavailable") when the database
    fails and nothing is cached. The HTML pages
    (service/api/pages) present this same body: `token` is then the session cookie's, and
    `path` the JSON API's path of the same read, so that a page and the API share one cache
    entry (the representation is the JSON's: a page does not send it)."""
    if token is FROM_HEADER:
        token = bearer_token(request)  # a malformed header is a 401 before any caching
    key = _key(request, token, path)
    entry = read.cache.fresh_entry(key)
    if entry is not None:
        return entry.body, {"Arbor-Cache": "hit"}, entry.meta, None
    if validate is not None:
        validate()
    try:
        read.database.before()
    except BreakerOpen as e:
        return _counted(request, _stale_or_503(read, key, e,
                                               retry_after=read.database.retry_after_s()))
    try:
        rendered, result = await read.coalescer.run(key, lambda: _render_and_store(
            read, key, render, extra_deps), generation=read.cache.mark())
    except DATABASE_ERRORS as e:
        return _counted(request, _stale_or_503(read, key, e,
                                               retry_after=read.database.retry_after_s()))
    count_degraded(request.app, rendered.body, result=result)  # arbor_degraded_responses_total
    return rendered.body, {"Arbor-Cache": "miss"}, rendered, result


def _counted(request: web.Request, read: tuple) -> tuple:
    """A stale copy (read_body's tuple) counted as a degraded answer."""
    if read[1].get("Arbor-Cache") == "stale":
        count_degraded(request.app, read[0], stale=True)
    return read


async def _render_and_store(read: ReadPath, key: tuple, render: Render,
                            extra_deps: Callable[[], tuple]) -> tuple[Representation, Any]:
    mark = read.cache.mark()
    try:
        async with asyncio.timeout(read.budget_s):
            result = await render()
    except DATABASE_ERRORS:
        read.database.failure()
        raise
    except ApiError:
        read.database.success()  # a 4xx: the database answered
        raise
    except BaseException:
        # cancelled, or a bug: says nothing of the dependency, but a probe must not stay
        # marked as running, or a half-open breaker would never let another through
        read.database.release()
        raise
    read.database.success()
    body = orjson.dumps(result, option=orjson.OPT_UTC_Z)
    rendered = Representation(body, link_header(key[1], key[2], result))
    # Degraded answers (cut short by the time budget, quotes or ranking missing) are not kept:
    # the next request should try for a whole one.
    degraded = (result.get("partial") or result.get("degraded")
                or b'"temporarily_unavailable"' in body)
    if not degraded and read.cache.would_store(len(body)):
        deps = tuple(sorted(conversations_in(body) | set(extra_deps()), key=repr))
        entry = read.cache.put(key, body, deps, mark, rendered)
        if entry is not None:
            rendered.on_grow = lambda: read.cache.resize(key, entry)
    return rendered, result


class _OutageLog:
    """One WARNING per interval while the database fails, with counts, rather than one per
    request (hundreds per second during an outage)."""

    def __init__(self, interval_s: float = 5.0):
        self.interval, self.last, self.stale, self.refused = interval_s, -1e9, 0, 0

    def note(self, served_stale: bool, error: BaseException) -> None:
        if served_stale:
            self.stale += 1
        else:
            self.refused += 1
        now = time.monotonic()
        if now - self.last >= self.interval:
            log.warning("database unavailable (%s: %s): %d reads served stale, %d answered 503 "
                        "since the last report", type(error).__name__, error, self.stale,
                        self.refused)
            self.last, self.stale, self.refused = now, 0, 0


_outage_log = _OutageLog()


def _stale_or_503(read: ReadPath, key: tuple, error: BaseException, *,
                  retry_after: int) -> tuple[bytes, dict[str, str], None, None]:
    stale = read.cache.stale(key)
    _outage_log.note(stale is not None, error)
    if stale is None:
        raise ApiError(503, "database_unavailable", "the database is unavailable; retry shortly",
                       retry_after=retry_after)
    body, age = stale
    data = orjson.loads(body)
    if isinstance(data, dict) and isinstance(data.get("degraded"), list):
        data["degraded"] = [*data["degraded"], "stale"]
        body = orjson.dumps(data)
    headers = {"Arbor-Degraded": "stale", "Age": str(int(age)), "Arbor-Cache": "stale"}
    link = link_header(key[1], key[2], data)
    if link:
        headers["Link"] = link
    return body, headers, None, None
