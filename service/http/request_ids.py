"""The outermost middleware: each request's id and trace context; and, further in, 503s by
reason.

  * `X-Request-Id`: the client's when valid (service/core/request_ids.py: bounded by
    `request_id_max_length`, safe characters), else a generated one; sent back on every
    answer that passes through here (shed, denied and rate-limited ones included);
  * `traceparent` (W3C): passed through when valid, echoed back, its trace id logged;
  * both are in the context variable every log line of the request reads
    (service/core/logs.py), and in request[REQUEST_CONTEXT] for the access log (written after
    the handler returned, outside this context);
  * `unavailable`, a middleware placed after those that reshape error bodies, counts each
    503 by its reason (service/http/ops_metrics.count_unavailable).
O(header length) per request.
"""
from __future__ import annotations

from aiohttp import web

from service.core.request_ids import CURRENT, context_of

from .keys import REQUEST_CONTEXT, SETTINGS
from .ops_metrics import count_unavailable

HEADER = "X-Request-Id"


@web.middleware
async def request_ids(request: web.Request, handler) -> web.StreamResponse:
    headers = request.headers
    ctx = context_of(headers.get(HEADER), headers.get("traceparent"),
                     request.app[SETTINGS].request_id_max_length)
    request[REQUEST_CONTEXT] = ctx
    token = CURRENT.set(ctx)
    try:
        response = await handler(request)
    except web.HTTPException as e:  # a redirect or an error raised past the error middleware
        _stamp(e, ctx)
        raise
    finally:
        CURRENT.reset(token)
    _stamp(response, ctx)
    return response


@web.middleware
async def unavailable(request: web.Request, handler) -> web.StreamResponse:
    """Counts 503s by reason: placed inside the middlewares that reshape error bodies (the
    Mastodon API's), so that it reads the service's own error code."""
    response = await handler(request)
    if response.status == 503:
        count_unavailable(request.app, response)
    return response


def _stamp(response: web.StreamResponse, ctx) -> None:
    if response.prepared:  # a streamed answer already sent its headers
        return
    response.headers[HEADER] = ctx.request_id
    if ctx.traceparent is not None:
        response.headers["traceparent"] = ctx.traceparent
