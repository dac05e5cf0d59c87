"""The contract of /v1/admin/accounts (service/api/admin/accounts.py): accounts, new tokens
for them, and their own rate-limit budgets.

Every pattern and bound here is the one the server checks (service/inputs/bodies.py,
service/inputs/pages.py), so the contract and the server accept exactly the same input.
"""
from __future__ import annotations

from storage.account_queries import STATES

from service.core.settings import Settings
from service.inputs.bodies import HANDLE_PATTERN, MAX_DISPLAY_NAME, MAX_LABEL, TEXT_PATTERN
from service.inputs.pages import ID_PATTERN, TOKEN_ID_PATTERN
from service.resilience import rate_limit_rules as rules

from ..common import (ACCOUNT_ID, ADMIN, ADMIN_ERRORS, NO_ACCOUNT, REQUEST_ID, Json, body, error,
                      nullable, obj, ok, optional)

_TEXT = {"type": "string", "maxLength": MAX_DISPLAY_NAME, "pattern": TEXT_PATTERN}
_BOOL = {"type": "boolean"}


def schemas(s: Settings) -> Json:
    budget = obj({"quota": {"type": "integer", "minimum": 1},
                  "window_s": {"type": "integer", "minimum": 1}})
    rate = nullable({"type": "string", "maxLength": 100})
    return {
        "Account": obj({"id": REQUEST_ID, "handle": {"type": "string"},
                        "display_name": {"type": "string"}, "state": {"enum": list(STATES)},
                        "protected": _BOOL, "has_avatar": _BOOL, "verified": _BOOL,
                        "created_at": {"type": "string", "format": "date-time"}}),
        "NewAccount": obj({"handle": {"type": "string", "pattern": HANDLE_PATTERN},
                           "display_name": _TEXT, "protected": _BOOL, "has_avatar": _BOOL,
                           "verified": _BOOL}, required=["handle"]),
        "AccountChange": optional({"display_name": _TEXT, "state": {"enum": list(STATES)},
                                   "protected": _BOOL, "has_avatar": _BOOL, "verified": _BOOL}),
        "NewToken": optional({"label": {**_TEXT, "maxLength": MAX_LABEL}}),
        "Token": obj({"token": {"type": "string"},
                      "token_id": {"type": "string", "pattern": TOKEN_ID_PATTERN},
                      "account_id": REQUEST_ID, "label": {"type": "string"},
                      "created_at": {"type": "string", "format": "date-time"}}),
        "AccountRateLimits": obj({
            "account_id": REQUEST_ID,
            "effective": obj({name: budget for name in rules.BUDGETS}),
            "override": nullable(obj({**{name: rate for name in rules.BUDGETS},
                                      "note": {"type": "string"},
                                      "updated_at": {"type": "string",
                                                     "format": "date-time"}}))}),
    }


def _rate_limit_paths() -> Json:
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
    return {
        "/v1/admin/accounts/{account_id}/rate_limits": {
            "get": {"operationId": "getAccountRateLimits", "security": ADMIN,
                    "summary": "An account's rate-limit budgets and its override.",
                    "parameters": [account],
                    "responses": {"200": limits_ok, "404": error("No such account."),
                                  **ADMIN_ERRORS}},
            "put": {"operationId": "putAccountRateLimits", "security": ADMIN,
                    "summary": "Give an account its own budgets (a trusted integration gets "
                               "more); persisted, applies at once here and within "
                               "rate_limit_reload_s in other processes.",
                    "parameters": [account],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "additionalProperties": False,
                                   "properties": {**{n: rate for n in rules.BUDGETS},
                                                  "note": note}}}}},
                    "responses": {"200": limits_ok, "404": error("No such account."),
                                  **ADMIN_ERRORS}},
            "delete": {"operationId": "deleteAccountRateLimits", "security": ADMIN,
                       "summary": "Back to the settings' budgets.", "parameters": [account],
                       "responses": {"204": {"description": "Removed (or there was none)."},
                                     "404": error("No such account."), **ADMIN_ERRORS}}},
    }


def paths(s: Settings) -> Json:
    return {
        "/v1/admin/accounts": {"post": {
            "operationId": "createAccount", "summary": "Create an account.", "security": ADMIN,
            "requestBody": body("NewAccount"),
            "responses": {"201": ok("Account", "Created."),
                          "409": error("The handle is taken."), **ADMIN_ERRORS}}},
        "/v1/admin/accounts/{account_id}": {
            "get": {"operationId": "getAccount", "summary": "An account.", "security": ADMIN,
                    "parameters": [ACCOUNT_ID],
                    "responses": {"200": ok("Account", "The account."), "404": NO_ACCOUNT,
                                  **ADMIN_ERRORS}},
            "patch": {"operationId": "updateAccount",
                      "summary": "Change an account's state, flags or display name.",
                      "security": ADMIN, "parameters": [ACCOUNT_ID],
                      "requestBody": body("AccountChange"),
                      "responses": {"200": ok("Account", "The account as changed."),
                                    "404": NO_ACCOUNT, **ADMIN_ERRORS}}},
        "/v1/admin/accounts/{account_id}/tokens": {"post": {
            "operationId": "createToken",
            "summary": "A new bearer token for the account (shown once).",
            "security": ADMIN, "parameters": [ACCOUNT_ID],
            "requestBody": body("NewToken", required=False),
            "responses": {"201": ok("Token", "Created."), "404": NO_ACCOUNT,
                          **ADMIN_ERRORS}}},
        **_rate_limit_paths(),
    }
