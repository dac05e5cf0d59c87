"""/v1/admin/settings: every setting with its value and source; the live ones changeable.

A change applies to the next request (service/pipeline/deps.Deps and the read path read them
at each use), is validated like at start-up, all or none, and is logged for the audit trail.
It is not persisted: a restart goes back to the configuration. It reaches every process
listening on the change feed (the other workers of `--workers N`, other hosts on the same
database: service/http/coherence.py), not only the one that answered.
"""
from __future__ import annotations

import logging

import orjson
from aiohttp import web

from service.http.responses import json_response
from service.core.errors import bad_request
from service.core.settings import SettingsError
from service.http import coherence
from service.http.auth import require_admin
from service.http.keys import READS, SETTINGS

log = logging.getLogger("arbor.settings")


async def list_settings(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response({"settings": request.app[SETTINGS].public()})


async def change_settings(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise bad_request("invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict) or not body:
        raise bad_request("invalid_body", 'the body must be a JSON object {"name": value, ...}')
    settings = request.app[SETTINGS]
    try:
        changed = settings.apply_live(body)
    except SettingsError as e:
        raise bad_request("invalid_setting", str(e)) from None
    request.app[READS].retune()
    await coherence.broadcast_settings(request.app, body)
    log.warning("settings changed through the admin API from %s: %s", request.remote,
                ", ".join(f"{k}={v}" for k, v in changed.items()))
    return json_response({"settings": settings.public()})


ROUTES = [web.get("/v1/admin/settings", list_settings),
          web.patch("/v1/admin/settings", change_settings)]
