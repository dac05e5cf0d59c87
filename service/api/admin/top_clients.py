"""/v1/admin/top_clients: the heaviest clients of the last minutes by requests, 404s and
429s, from this process's bounded summaries (service/resilience/top_clients.py)."""
from __future__ import annotations

import time

from aiohttp import web

from service.http.auth import require_admin
from service.http.keys import RATE_LIMITS
from service.http.responses import json_response
from service.inputs.query import parse_int, reject_unknown
from service.resilience.top_clients import BUCKETS


async def top_clients(request: web.Request) -> web.Response:
    require_admin(request)
    reject_unknown(request.query, ("minutes", "limit"))
    minutes = parse_int(request.query, "minutes", 5, 1, BUCKETS)
    limit = parse_int(request.query, "limit", 20, 1, 1000)
    return json_response(request.app[RATE_LIMITS].top.top(time.time(), minutes, limit))


ROUTES = [
    web.get("/v1/admin/top_clients", top_clients),
]
