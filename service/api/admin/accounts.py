"""/v1/admin: accounts, their tokens and state, and classifier labels.

Every request carries `Authorization: Bearer <admin_token>` (401 otherwise); with no
admin_token configured every admin endpoint answers 403 `admin_disabled`.
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from storage import account_tokens, account_writes, label_writes
from storage.account_queries import STATES, AccountNotFound, account_by_id
from storage.rows import AccountRow

from service.api.ops import json_response
from service.core.errors import ApiError, account_not_found, bad_request, not_found
from service.http.auth import require_admin
from service.http.keys import DB, VIEWERS
from service.inputs.bodies import (HANDLE_PATTERN, MAX_DISPLAY_NAME, MAX_LABEL, json_object,
                                   require, take_bool, take_choice, take_text, take_unit_number)
from service.inputs.pages import parse_id

TOKEN_ID_PATTERN = r"^[0-9a-f]{64}$"
_TOKEN_ID = re.compile(TOKEN_ID_PATTERN.removeprefix("^").removesuffix("$"))


def account_json(a: AccountRow) -> dict[str, Any]:
    return {"id": str(a.id), "handle": a.handle, "display_name": a.display_name,
            "state": a.state, "protected": a.protected, "has_avatar": a.has_avatar,
            "verified": a.verified, "created_at": a.created_at}


def _flags(body: dict[str, Any]) -> dict[str, Any]:
    return {name: take_bool(body, name) for name in ("protected", "has_avatar", "verified")}


async def create_account(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_object(request, ("handle", "display_name", "protected", "has_avatar",
                                       "verified"))
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
    body = await json_object(request, ("display_name", "state", "protected", "has_avatar",
                                       "verified"))
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
    body = await json_object(request, ("label",), required=False)
    label = take_text(body, "label", max_length=MAX_LABEL) or ""
    try:
        new = await account_tokens.create_token(request.app[DB], account_id, label)
    except AccountNotFound:
        raise account_not_found() from None
    return json_response({"token": new.token, "token_id": new.token_id,
                          "account_id": str(new.account_id), "label": new.label,
                          "created_at": new.created_at}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    require_admin(request)
    raw = request.match_info["token_id"]
    if not _TOKEN_ID.fullmatch(raw):
        raise bad_request("invalid_id", "token_id must be 64 lower-case hex digits")
    token_hash = bytes.fromhex(raw)
    if await account_tokens.revoke_token(request.app[DB], token_hash) is None:
        raise ApiError(404, "not_found", "token not found")
    request.app[VIEWERS].forget_token(token_hash)
    return web.Response(status=204)


def _label(request: web.Request) -> tuple[int, str]:
    post_id = parse_id(request.match_info["post_id"], "post_id")
    label = request.match_info["label"]
    if label not in label_writes.LABELS:
        raise bad_request("invalid_label", f"label must be one of {', '.join(label_writes.LABELS)}, "
                                           f"got {label[:40]!r}")
    return post_id, label


async def put_label(request: web.Request) -> web.Response:
    require_admin(request)
    post_id, label = _label(request)
    score = take_unit_number(await json_object(request, ("score",)), "score")
    try:
        await label_writes.upsert_label(request.app[DB], post_id, label, score)
    except label_writes.PostNotFound:
        raise not_found() from None
    return json_response({"post_id": str(post_id), "label": label, "score": score})


async def delete_label(request: web.Request) -> web.Response:
    require_admin(request)
    post_id, label = _label(request)
    try:
        await label_writes.delete_label(request.app[DB], post_id, label)
    except label_writes.PostNotFound:
        raise not_found() from None
    return web.Response(status=204)


ROUTES = [
    web.post("/v1/admin/accounts", create_account),
    web.get("/v1/admin/accounts/{account_id}", get_account),
    web.patch("/v1/admin/accounts/{account_id}", update_account),
    web.post("/v1/admin/accounts/{account_id}/tokens", create_token),
    web.delete("/v1/admin/tokens/{token_id}", revoke_token),
    web.put("/v1/admin/posts/{post_id}/labels/{label}", put_label),
    web.delete("/v1/admin/posts/{post_id}/labels/{label}", delete_label),
]
