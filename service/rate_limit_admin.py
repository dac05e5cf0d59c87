"""The admin API of the rate limits (admin token): per-account overrides, the deny list, and
the top clients of the last minutes.

Overrides and the deny list are kept in PostgreSQL (they survive restarts); a change applies
at once in the process that made it and within `rate_limit_reload_s` in the others.
"""
from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

from aiohttp import web

from storage import rate_limit_rows as rows

from . import rate_limit_rules as rules
from .appkeys import DB
from .auth import require_admin
from .bodies import MAX_LABEL, json_object, take_text
from .errors import ApiError, account_not_found, bad_request
from .handlers import json_response
from .page_params import parse_id
from .params import parse_int, reject_unknown
from .rate_limit_middleware import RATE_LIMITS
from .top_clients import BUCKETS

log = logging.getLogger("arbor.rate_limits")


def _limits_json(state, account_id: int, override: rows.Override | None) -> dict[str, Any]:
    effective = state.policies_for(override.rates if override else None)
    return {"account_id": str(account_id),
            "effective": {name: {"quota": p.quota, "window_s": p.window_s}
                          for name, p in effective.items()},
            "override": None if override is None else {
                **{name: override.rates.get(name) for name in rules.BUDGETS},
                "note": override.note, "updated_at": override.updated_at}}


async def _account(request: web.Request) -> int:
    require_admin(request)
    account_id = parse_id(request.match_info["account_id"], "account_id")
    if await request.app[DB].fetchval("SELECT 1 FROM accounts WHERE id = $1",
                                      account_id) is None:
        raise account_not_found()
    return account_id


async def get_account_limits(request: web.Request) -> web.Response:
    account_id = await _account(request)
    override = await rows.override(request.app[DB], account_id)
    return json_response(_limits_json(request.app[RATE_LIMITS], account_id, override))


async def put_account_limits(request: web.Request) -> web.Response:
    account_id = await _account(request)
    body = await json_object(request, (*rules.BUDGETS, "note"))
    rates: dict[str, str | None] = {}
    for name in rules.BUDGETS:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise bad_request("invalid_field", f"{name} must be a rate such as "
                                                   f"'30000/5minutes', or null")
            try:
                rules.parse_rate(value)
            except ValueError as e:
                raise bad_request("invalid_field", f"{name}: {e}") from None
        rates[name] = value
    note = take_text(body, "note", max_length=MAX_LABEL) or ""
    db, state = request.app[DB], request.app[RATE_LIMITS]
    try:
        override = await rows.set_override(db, account_id, rates, note)
    except rows.AccountMissing:
        raise account_not_found() from None
    await state.reload(db)
    log.warning("rate limits of account %s set through the admin API from %s: %s (%s)",
                account_id, request.remote,
                ", ".join(f"{k}={v or 'default'}" for k, v in rates.items()), note)
    return json_response(_limits_json(state, account_id, override))


async def delete_account_limits(request: web.Request) -> web.Response:
    account_id = await _account(request)
    db = request.app[DB]
    if await rows.clear_override(db, account_id):
        log.warning("rate limits of account %s back to the defaults (admin API, from %s)",
                    account_id, request.remote)
    await request.app[RATE_LIMITS].reload(db)
    return web.Response(status=204)


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
    body = await json_object(request, ("network", "account_id", "note"))
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


async def top_clients(request: web.Request) -> web.Response:
    require_admin(request)
    reject_unknown(request.query, ("minutes", "limit"))
    minutes = parse_int(request.query, "minutes", 5, 1, BUCKETS)
    limit = parse_int(request.query, "limit", 20, 1, 1000)
    return json_response(request.app[RATE_LIMITS].top.top(time.time(), minutes, limit))


ROUTES = [
    web.get("/v1/admin/accounts/{account_id}/rate_limits", get_account_limits),
    web.put("/v1/admin/accounts/{account_id}/rate_limits", put_account_limits),
    web.delete("/v1/admin/accounts/{account_id}/rate_limits", delete_account_limits),
    web.get("/v1/admin/deny_list", list_deny),
    web.post("/v1/admin/deny_list", add_deny),
    web.delete("/v1/admin/deny_list/{entry_id}", delete_deny),
    web.get("/v1/admin/top_clients", top_clients),
]
