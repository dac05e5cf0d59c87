"""/v1/admin/deny_list: addresses, CIDR ranges and accounts refused with 403 `denied` before
anything else (service/http/rate_limit_middleware.py).

The list is kept in PostgreSQL (it survives restarts); a change applies at once in the
process that made it and within `rate_limit_reload_s` in the others.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any

from aiohttp import web

from storage import rate_limit_rows as rows

from service.core.errors import ApiError, bad_request
from service.http.auth import require_admin
from service.http.keys import DB, RATE_LIMITS
from service.http.responses import json_response
from service.inputs.bodies import MAX_LABEL, json_object, take_text
from service.inputs.pages import parse_id

log = logging.getLogger("arbor.rate_limits")


def _entry_json(e: rows.DenyEntry) -> dict[str, Any]:
    return {"id": str(e.id), "network": str(e.network) if e.network is not None else None,
            "account_id": str(e.account_id) if e.account_id is not None else None,
            "note": e.note, "created_at": e.created_at}


async def list_deny(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response({"items": [_entry_json(e) for e in
                                    await rows.deny_entries(request.app[DB])]})


async def add_deny(request: web.Request) -> web.Response:
    require_admin(request)
    body = json_object(await request.read(), ("network", "account_id", "note"))
    network, account_id = body.get("network"), body.get("account_id")
    if ("network" in body) == ("account_id" in body):
        raise bad_request("invalid_field", "give exactly one of network (an address or CIDR "
                                           "range) and account_id")
    if "network" in body:
        if not isinstance(network, str):
            raise bad_request("invalid_field", "network must be a string")
        try:
            network = ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise bad_request("invalid_field", f"network: {network[:60]!r} is not an IP "
                                               f"address or CIDR range") from None
    else:
        if not isinstance(account_id, str):
            raise bad_request("invalid_field", "account_id must be a decimal string")
        account_id = parse_id(account_id, "account_id")
    note = take_text(body, "note", max_length=MAX_LABEL) or ""
    db = request.app[DB]
    try:
        entry = await rows.add_deny(db, network=network, account_id=account_id, note=note)
    except rows.AlreadyDenied:
        raise ApiError(409, "already_denied", "the deny list already has this "
                                              + ("network" if network else "account")) from None
    await request.app[RATE_LIMITS].reload(db)
    log.warning("deny list: added %s (%s) through the admin API from %s",
                entry.network or f"account {entry.account_id}", note, request.remote)
    return json_response(_entry_json(entry), status=201)


async def delete_deny(request: web.Request) -> web.Response:
    require_admin(request)
    entry_id = parse_id(request.match_info["entry_id"], "entry_id")
    db = request.app[DB]
    if not await rows.remove_deny(db, entry_id):
        raise ApiError(404, "not_found", "no such deny list entry")
    await request.app[RATE_LIMITS].reload(db)
    log.warning("deny list: removed entry %s through the admin API from %s", entry_id,
                request.remote)
    return web.Response(status=204)


ROUTES = [
    web.get("/v1/admin/deny_list", list_deny),
    web.post("/v1/admin/deny_list", add_deny),
    web.delete("/v1/admin/deny_list/{entry_id}", delete_deny),
]
