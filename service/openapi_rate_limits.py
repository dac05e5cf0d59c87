"""The OpenAPI part of the rate limits: the 429 and 403 (`denied`) answers and the RateLimit
header fields on every limited operation (all but /healthz, /readyz, /metrics), and the
admin endpoints (overrides, deny list, top clients)."""
from __future__ import annotations

from typing import Any

from . import rate_limit_rules as rules
from .openapi import _error, _nullable, _obj
from .page_params import ID_PATTERN
from .top_clients import BUCKETS, MEASURES

Json = dict[str, Any]

_ID = {"type": "string", "pattern": ID_PATTERN}
_HEADERS = {
    "RateLimit-Policy": {
        "description": "The budgets this request spends, as in "
                       "draft-ietf-httpapi-ratelimit-headers: `\"read\";q=3000;w=300, "
                       "\"not_found\";q=60;w=300` (quota units per window seconds). On every "
                       "429; on other answers when `rate_limit_headers` is `always`.",
        "schema": {"type": "string"}},
    "RateLimit": {
        "description": "The budget's units left and the seconds within which no more can be "
                       "spent: `\"read\";r=0;t=12`. On every 429 (the spent budget); on other "
                       "answers when `rate_limit_headers` is `always` (the request's budget).",
        "schema": {"type": "string"}},
}
_TOO_MANY = {
    "description": "Rate limited (`rate_limited`): the client (its token's account, else its "
                   "address) spent a budget; wait Retry-After seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait.", "required": True,
                                "schema": {"type": "integer", "minimum": 1}},
                **{k: {**v, "required": True} for k, v in _HEADERS.items()}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_DENIED = "The client is on the deny list (`denied`)."
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def add_rate_limit_answers(paths: Json) -> None:
    """429 and 403 on every limited operation, the RateLimit fields on its other answers."""
    for path, operations in paths.items():
        if path in rules.OPS_PATHS:
            continue
        for method, op in operations.items():
            if method not in _METHODS:
                continue
            responses = op["responses"]
            for status, response in responses.items():
                if status.startswith(("2", "4", "5")) and "$ref" not in response:
                    response["headers"] = {**_HEADERS, **response.get("headers", {})}
            responses["429"] = _TOO_MANY
            if "403" in responses:
                old = responses["403"]
                responses["403"] = {**old, "description": f"{old['description']} Or: {_DENIED}"}
            else:
                responses["403"] = _error(_DENIED)


def rate_limit_schemas() -> Json:
    budget = _obj({"quota": {"type": "integer", "minimum": 1},
                   "window_s": {"type": "integer", "minimum": 1}})
    rate = _nullable({"type": "string", "maxLength": 100})
    counted = {"client": {"type": "string"},
               **{m: {"type": "integer", "minimum": 0} for m in MEASURES}}
    per_measure = {m: {"type": "integer", "minimum": 0} for m in MEASURES}
    return {
        "AccountRateLimits": _obj({
            "account_id": _ID,
            "effective": _obj({name: budget for name in rules.BUDGETS}),
            "override": _nullable(_obj({**{name: rate for name in rules.BUDGETS},
                                        "note": {"type": "string"},
                                        "updated_at": {"type": "string",
                                                       "format": "date-time"}}))}),
        "DenyEntry": _obj({"id": _ID, "network": _nullable({"type": "string"}),
                           "account_id": _nullable(_ID), "note": {"type": "string"},
                           "created_at": {"type": "string", "format": "date-time"}}),
        "DenyList": _obj({"items": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/DenyEntry"}}}),
        "TopClients": _obj({
            "minutes": {"type": "integer"}, "size": {"type": "integer"},
            "events": _obj(per_measure), "max_undercount": _obj(per_measure),
            **{f"by_{m}": {"type": "array", "items": _obj(counted)} for m in MEASURES}}),
    }


def rate_limit_paths() -> Json:
    from .bodies import MAX_LABEL, TEXT_PATTERN

    admin = [{"adminBearer": []}]
    errors = {"400": _error("Invalid parameter or body; the message names it."),
              "401": _error("No admin token, or a wrong one."),
              "403": _error("The admin API is disabled (admin_token is not set)."),
              "503": _error("Database unavailable; see Retry-After.")}
    account = {"name": "account_id", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": ID_PATTERN}}
    note = {"type": "string", "maxLength": MAX_LABEL, "pattern": TEXT_PATTERN}
    rate = {"oneOf": [{"type": "string", "maxLength": 100,
                       "description": "limits' notation: `30000/5minutes`, `100 per hour`"},
                      {"type": "null"}]}
    limits_ok = {"description": "The account's budgets: the effective ones, and its override "
                                "(null: the settings').",
                 "content": {"application/json": {"schema": {
                     "$ref": "#/components/schemas/AccountRateLimits"}}}}
    entry_ok = {"description": "The entry.", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/DenyEntry"}}}}
    return {
        "/v1/admin/accounts/{account_id}/rate_limits": {
            "get": {"operationId": "getAccountRateLimits", "security": admin,
                    "summary": "An account's rate-limit budgets and its override.",
                    "parameters": [account],
                    "responses": {"200": limits_ok, "404": _error("No such account."),
                                  **errors}},
            "put": {"operationId": "putAccountRateLimits", "security": admin,
                    "summary": "Give an account its own budgets (a trusted integration gets "
                               "more); persisted, applies at once here and within "
                               "rate_limit_reload_s in other processes.",
                    "parameters": [account],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "additionalProperties": False,
                                   "properties": {**{n: rate for n in rules.BUDGETS},
                                                  "note": note}}}}},
                    "responses": {"200": limits_ok, "404": _error("No such account."),
                                  **errors}},
            "delete": {"operationId": "deleteAccountRateLimits", "security": admin,
                       "summary": "Back to the settings' budgets.", "parameters": [account],
                       "responses": {"204": {"description": "Removed (or there was none)."},
                                     "404": _error("No such account."), **errors}}},
        "/v1/admin/deny_list": {
            "get": {"operationId": "listDenyList", "security": admin,
                    "summary": "The deny list: addresses, CIDR ranges and accounts refused "
                               "with 403 `denied` before anything else.",
                    "responses": {"200": {"description": "Every entry.", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/DenyList"}}}}, **errors}},
            "post": {"operationId": "addDenyListEntry", "security": admin,
                     "summary": "Refuse an address or CIDR range (`network`) or an account "
                                "(`account_id`); persisted, applies at once here and within "
                                "rate_limit_reload_s in other processes.",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "additionalProperties": False,
                                    "minProperties": 1, "maxProperties": 2,
                                    "properties": {"network": {"type": "string",
                                                               "maxLength": 50},
                                                   "account_id": _ID, "note": note}}}}},
                     "responses": {"201": entry_ok,
                                   "409": _error("Already on the list (`already_denied`)."),
                                   **errors}}},
        "/v1/admin/deny_list/{entry_id}": {
            "delete": {"operationId": "deleteDenyListEntry", "security": admin,
                       "summary": "Take an entry off the deny list.",
                       "parameters": [{"name": "entry_id", "in": "path", "required": True,
                                       "schema": {"type": "string", "pattern": ID_PATTERN}}],
                       "responses": {"204": {"description": "Removed."},
                                     "404": _error("No such entry."), **errors}}},
        "/v1/admin/top_clients": {
            "get": {"operationId": "topClients", "security": admin,
                    "summary": "The heaviest clients of the last minutes by requests, 404s and "
                               "429s, from bounded summaries (counts may be low by at most "
                               "`max_undercount`).",
                    "parameters": [
                        {"name": "minutes", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": BUCKETS,
                                    "default": 5}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                    "default": 20}}],
                    "responses": {"200": {"description": "The report.", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/TopClients"}}}}, **errors}}},
    }
