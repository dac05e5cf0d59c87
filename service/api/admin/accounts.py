"""/v1/admin/accounts: accounts, their state and flags, new tokens for them, and their own
rate-limit budgets (`/rate_limits`).

Every request carries `Authorization: Bearer <admin_token>` (401 otherwise); with no
admin_token configured every admin endpoint answers 403 `admin_disabled`. Rate-limit
overrides are kept in PostgreSQL (they survive restarts); a change applies at once in the
process that made it and within `rate_limit_reload_s` in the others.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from storage import account_tokens, account_writes, rate_limit_rows as rows
from storage.account_queries import STATES, AccountNotFound, account_by_id
from storage.rows import AccountRow

from service.core.errors import ApiError, account_not_found, bad_request
from service.http.auth import require_admin
from service.http.keys import DB, RATE_LIMITS, VIEWERS
from service.http.responses import json_response
from service.inputs.bodies import (HANDLE_PATTERN, MAX_DISPLAY_NAME, MAX_LABEL, json_object,
                                   require, take_bool, take_choice, take_text)
from service.inputs.pages import parse_id
from service.resilience import rate_limit_rules as rules

log = logging.getLogger("arbor.rate_limits")


def account_json(a: AccountRow) -> dict[str, Any]:
    return {"id": str(a.id), "handle": a.handle, "display_name": a.display_name,
            "state": a.state, "protected": a.protected, "has_avatar": a.has_avatar,
            "verified": a.verified, "created_at": a.created_at}


def _flags(body: dict[str, Any]) -> dict[str, Any]:
    return {name: take_bool(body, name) for name in ("protected", "has_avatar", "verified")}


async def create_account(request: web.Request) -> web.Response:
    require_admin(request)
    body = json_object(await request.read(), ("handle", "display_name", "protected",
                                              "has_avatar", "verified"))
    handle = require(take_text(body, "handle", max_length=63, pattern=HANDLE_PATTERN,
                               what="1-63 of A-Z a-z 0-9 _ . - (not starting with . or -)"),
                     "handle")
    display_name = take_text(body, "display_name", max_length=MAX_DISPLAY_NAME) or ""
    flags = {k: v for k, v in _flags(body).items() if v is not None}
    try:
        account = await account_writes.create_account(request.app[DB], handle, display_name,
                                                      **flags)
    except account_writes.HandleTaken:
        raise ApiError(409, "handle_taken", f"the handle {handle!r} is taken") from None
    return json_response(account_json(account), status=201)


async def get_account(request: web.Request) -> web.Response:
    require_admin(request)
    account = await account_by_id(request.app[DB], parse_id(request.match_info["account_id"],
                                                            "account_id"))
    if account is None:
        raise account_not_found()
    return json_response(account_json(account))


async def update_account(request: web.Request) -> web.Response:
    require_admin(request)
    account_id = parse_id(request.match_info["account_id"], "account_id")
    body = json_object(await request.read(), ("display_name", "state", "protected",
                                              "has_avatar", "verified"))
    account = await account_writes.update_account(
        request.app[DB], account_id,
        display_name=take_text(body, "display_name", max_length=MAX_DISPLAY_NAME),
        state=take_choice(body, "state", STATES), **_flags(body))
    if account is None:
        raise account_not_found()
    request.app[VIEWERS].forget_account(account_id)
    return json_response(account_json(account))


async def create_token(request: web.Request) -> web.Response:
    require_admin(request)
    account_id = parse_id(request.match_info["account_id"], "account_id")
    body = json_object(await request.read(), ("label",), required=False)
    label = take_text(body, "label", max_length=MAX_LABEL) or ""
    try:
        new = await account_tokens.create_token(request.app[DB], account_id, label)
    except AccountNotFound:
        raise account_not_found() from None
    return json_response({"token": new.token, "token_id": new.token_id,
                          "account_id": str(new.account_id), "label": new.label,
                          "created_at": new.created_at}, status=201)


# -- /v1/admin/accounts/{account_id}/rate_limits: the account's own budgets ----------------
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
    body = json_object(await request.read(), (*rules.BUDGETS, "note"))
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


ROUTES = [
    web.post("/v1/admin/accounts", create_account),
    web.get("/v1/admin/accounts/{account_id}", get_account),
    web.patch("/v1/admin/accounts/{account_id}", update_account),
    web.post("/v1/admin/accounts/{account_id}/tokens", create_token),
    web.get("/v1/admin/accounts/{account_id}/rate_limits", get_account_limits),
    web.put("/v1/admin/accounts/{account_id}/rate_limits", put_account_limits),
    web.delete("/v1/admin/accounts/{account_id}/rate_limits", delete_account_limits),
]
