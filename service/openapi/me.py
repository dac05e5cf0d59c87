"""The OpenAPI part for viewers: /v1/me and /v1/admin paths, their schemas, the bearer schemes.

Every pattern and bound here is the one the server checks (service/bodies.py,
service/page_params.py), so the contract and the server accept exactly the same input.
"""
from __future__ import annotations

from typing import Any

from storage.account_queries import STATES
from storage.label_writes import LABELS

from service.inputs.pages import ID_PATTERN, TOKEN_ID_PATTERN, word_cursor_max
from service.inputs.relations import KINDS, WORD_PATTERN
from service.core.settings import Settings
from service.inputs.bodies import HANDLE_PATTERN, MAX_DISPLAY_NAME, MAX_LABEL, TEXT_PATTERN

from .common import _error, _nullable, _obj, _ok, _ref

Json = dict[str, Any]

_ID = {"type": "string", "pattern": ID_PATTERN}
_TEXT = {"type": "string", "maxLength": MAX_DISPLAY_NAME, "pattern": TEXT_PATTERN}
_BOOL = {"type": "boolean"}
_DONE = {"description": "Done (also when it already was so)."}
_UNAVAILABLE = _error("Database unavailable; see Retry-After.")
_ME_ERRORS = {"400": _error("Invalid parameter or body; the message names it."),
              "401": _error("No valid bearer token."), "503": _UNAVAILABLE}
_ADMIN_ERRORS = {"400": _error("Invalid parameter or body; the message names it."),
                 "401": _error("No admin token, or a wrong one."),
                 "403": _error("The admin API is disabled (admin_token is not set)."),
                 "503": _UNAVAILABLE}
_ME = [{"bearer": []}]
_ADMIN = [{"adminBearer": []}]


def _optional(props: Json) -> Json:
    """An object whose properties may all be left out (`_obj` reads [] as "all required")."""
    return {**_obj(props), "required": []}


def security_schemes() -> Json:
    return {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An account's token (`arb_...`), from the admin API or "
                                  "`arbor accounts token`."},
        "adminBearer": {"type": "http", "scheme": "bearer",
                        "description": "The admin_token setting."},
    }


def viewer_schemas(s: Settings) -> Json:
    word = {"type": "string", "minLength": 1, "maxLength": s.max_muted_word_length,
            "pattern": WORD_PATTERN}
    return {
        "AccountPage": _obj({"items": {"type": "array", "items": _ref("Author")},
                             "cursor": _nullable({"type": "string"})}),
        "MutedWord": _obj({"word": {"type": "string"}}),
        "MutedWordPage": _obj({"items": {"type": "array", "items": _ref("MutedWord")},
                               "cursor": _nullable({"type": "string"})}),
        "MutedWordInput": _obj({"word": word}),
        "Account": _obj({"id": _ID, "handle": {"type": "string"}, "display_name": {"type": "string"},
                         "state": {"enum": list(STATES)}, "protected": _BOOL, "has_avatar": _BOOL,
                         "verified": _BOOL, "created_at": {"type": "string", "format": "date-time"}}),
        "NewAccount": _obj({"handle": {"type": "string", "pattern": HANDLE_PATTERN},
                            "display_name": _TEXT, "protected": _BOOL, "has_avatar": _BOOL,
                            "verified": _BOOL}, required=["handle"]),
        "AccountChange": _optional({"display_name": _TEXT, "state": {"enum": list(STATES)},
                                    "protected": _BOOL, "has_avatar": _BOOL, "verified": _BOOL}),
        "NewToken": _optional({"label": {**_TEXT, "maxLength": MAX_LABEL}}),
        "Token": _obj({"token": {"type": "string"},
                       "token_id": {"type": "string", "pattern": TOKEN_ID_PATTERN},
                       "account_id": _ID, "label": {"type": "string"},
                       "created_at": {"type": "string", "format": "date-time"}}),
        "LabelScore": _obj({"score": {"type": "number", "minimum": 0, "maximum": 1}}),
        "Label": _obj({"post_id": _ID, "label": {"enum": list(LABELS)},
                       "score": {"type": "number", "minimum": 0, "maximum": 1}}),
    }


def _path_param(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def _body(schema: str, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _page_params(s: Settings, cursor: Json) -> list[Json]:
    return [{"name": "limit", "in": "query", "required": False, "description": "Items per page.",
             "schema": {"type": "integer", "minimum": 1, "maximum": s.max_relations_page,
                        "default": s.max_relations_page}},
            {"name": "cursor", "in": "query", "required": False,
             "description": "The `cursor` of the previous page.", "schema": cursor}]


_ACCOUNT_ID = _path_param("account_id", _ID, "Account id.")
_NO_ACCOUNT = _error("No such account.")


def _relation_paths(s: Settings, kind: str) -> Json:
    name = kind.capitalize()
    return {
        f"/v1/me/{kind}": {"get": {
            "operationId": f"list{name}", "summary": f"Accounts the viewer {kind[:-1]}s, by id.",
            "security": _ME, "parameters": _page_params(s, _ID),
            "responses": {"200": _ok("AccountPage", "A page."), **_ME_ERRORS}}},
        f"/v1/me/{kind}/{{account_id}}": {
            "put": {"operationId": f"add{name}", "summary": f"The viewer {kind[:-1]}s an account.",
                    "security": _ME, "parameters": [_ACCOUNT_ID],
                    "responses": {"204": _DONE, "404": _NO_ACCOUNT, **_ME_ERRORS}},
            "delete": {"operationId": f"remove{name}", "summary": f"Undo {kind[:-1]}.",
                       "security": _ME, "parameters": [_ACCOUNT_ID],
                       "responses": {"204": _DONE, "404": _NO_ACCOUNT, **_ME_ERRORS}}},
    }


def _muted_word_paths(s: Settings) -> Json:
    cursor = {"type": "string", "minLength": 1, "maxLength": word_cursor_max(s),
              "pattern": TEXT_PATTERN}
    word = {"type": "string", "minLength": 1, "maxLength": s.max_muted_word_length,
            "pattern": WORD_PATTERN}
    return {
        "/v1/me/muted_words": {
            "get": {"operationId": "listMutedWords", "summary": "The viewer's muted words.",
                    "security": _ME, "parameters": _page_params(s, cursor),
                    "responses": {"200": _ok("MutedWordPage", "A page."), **_ME_ERRORS}},
            "post": {"operationId": "addMutedWord",
                     "summary": "Mute a word or phrase (stored lower-cased, spaces trimmed).",
                     "security": _ME, "requestBody": _body("MutedWordInput"),
                     "responses": {"200": _ok("MutedWord", "The word as stored."),
                                   **_ME_ERRORS}}},
        "/v1/me/muted_words/{word}": {"delete": {
            "operationId": "removeMutedWord", "summary": "Unmute a word or phrase.",
            "security": _ME, "parameters": [_path_param("word", word, "The word or phrase.")],
            "responses": {"204": _DONE, **_ME_ERRORS}}},
    }


def _admin_paths() -> Json:
    post_id = _path_param("post_id", _ID, "Post id.")
    label = _path_param("label", {"enum": list(LABELS)}, "The classifier label.")
    token_id = _path_param("token_id", {"type": "string", "pattern": TOKEN_ID_PATTERN},
                           "The token's id (the hex SHA-256 of the token).")
    return {
        "/v1/admin/accounts": {"post": {
            "operationId": "createAccount", "summary": "Create an account.", "security": _ADMIN,
            "requestBody": _body("NewAccount"),
            "responses": {"201": _ok("Account", "Created."),
                          "409": _error("The handle is taken."), **_ADMIN_ERRORS}}},
        "/v1/admin/accounts/{account_id}": {
            "get": {"operationId": "getAccount", "summary": "An account.", "security": _ADMIN,
                    "parameters": [_ACCOUNT_ID],
                    "responses": {"200": _ok("Account", "The account."), "404": _NO_ACCOUNT,
                                  **_ADMIN_ERRORS}},
            "patch": {"operationId": "updateAccount",
                      "summary": "Change an account's state, flags or display name.",
                      "security": _ADMIN, "parameters": [_ACCOUNT_ID],
                      "requestBody": _body("AccountChange"),
                      "responses": {"200": _ok("Account", "The account as changed."),
                                    "404": _NO_ACCOUNT, **_ADMIN_ERRORS}}},
        "/v1/admin/accounts/{account_id}/tokens": {"post": {
            "operationId": "createToken",
            "summary": "A new bearer token for the account (shown once).",
            "security": _ADMIN, "parameters": [_ACCOUNT_ID],
            "requestBody": _body("NewToken", required=False),
            "responses": {"201": _ok("Token", "Created."), "404": _NO_ACCOUNT,
                          **_ADMIN_ERRORS}}},
        "/v1/admin/tokens/{token_id}": {"delete": {
            "operationId": "revokeToken", "summary": "Revoke a token.", "security": _ADMIN,
            "parameters": [token_id],
            "responses": {"204": _DONE, "404": _error("No such token."), **_ADMIN_ERRORS}}},
        "/v1/admin/posts/{post_id}/labels/{label}": {
            "put": {"operationId": "putLabel", "summary": "Set a classifier label's score.",
                    "security": _ADMIN, "parameters": [post_id, label],
                    "requestBody": _body("LabelScore"),
                    "responses": {"200": _ok("Label", "The label."),
                                  "404": _error("No such post."), **_ADMIN_ERRORS}},
            "delete": {"operationId": "deleteLabel", "summary": "Remove a classifier label.",
                       "security": _ADMIN, "parameters": [post_id, label],
                       "responses": {"204": _DONE, "404": _error("No such post."),
                                     **_ADMIN_ERRORS}}},
    }


def viewer_paths(s: Settings) -> Json:
    paths: Json = {}
    for kind in KINDS:
        paths.update(_relation_paths(s, kind))
    return {**paths, **_muted_word_paths(s), **_admin_paths()}
