"""The contract of /v1/me (service/api/me.py): the viewer's account, and their follows,
blocks, mutes and muted words.

Every pattern and bound here is the one the server checks (service/inputs/pages.py,
service/inputs/relations.py), so the contract and the server accept exactly the same input.
"""
from __future__ import annotations

from service.core.settings import Settings
from service.inputs.bodies import TEXT_PATTERN
from service.inputs.pages import word_cursor_max
from service.inputs.relations import KINDS, WORD_PATTERN

from .common import (ACCOUNT_ID, DONE, NO_ACCOUNT, REQUEST_ID, UNAVAILABLE, Json, body, error,
                     nullable, obj, ok, path_param, ref)

_ME_ERRORS = {"400": error("Invalid parameter or body; the message names it."),
              "401": error("No valid bearer token."), "503": UNAVAILABLE}
_ME = [{"bearer": []}]


def schemas(s: Settings) -> Json:
    word = {"type": "string", "minLength": 1, "maxLength": s.max_muted_word_length,
            "pattern": WORD_PATTERN}
    return {
        "AccountPage": obj({"items": {"type": "array", "items": ref("Author")},
                            "cursor": nullable({"type": "string"})}),
        "Me": obj({
            "id": {"type": "string", "pattern": "^[0-9]+$"}, "handle": {"type": "string"},
            "display_name": {"type": "string"}, "protected": {"type": "boolean"},
            "has_avatar": {"type": "boolean"}, "verified": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "relations": obj({k: {"type": "integer", "minimum": 0}
                              for k in ("follows", "blocks", "mutes", "muted_words")})}),
        "MutedWord": obj({"word": {"type": "string"}}),
        "MutedWordPage": obj({"items": {"type": "array", "items": ref("MutedWord")},
                              "cursor": nullable({"type": "string"})}),
        "MutedWordInput": obj({"word": word}),
    }


def _page_params(s: Settings, cursor: Json) -> list[Json]:
    return [{"name": "limit", "in": "query", "required": False, "description": "Items per page.",
             "schema": {"type": "integer", "minimum": 1, "maximum": s.max_relations_page,
                        "default": s.max_relations_page}},
            {"name": "cursor", "in": "query", "required": False,
             "description": "The `cursor` of the previous page.", "schema": cursor}]


def _relation_paths(s: Settings, kind: str) -> Json:
    name = kind.capitalize()
    return {
        f"/v1/me/{kind}": {"get": {
            "operationId": f"list{name}", "summary": f"Accounts the viewer {kind[:-1]}s, by id.",
            "security": _ME, "parameters": _page_params(s, REQUEST_ID),
            "responses": {"200": ok("AccountPage", "A page."), **_ME_ERRORS}}},
        f"/v1/me/{kind}/{{account_id}}": {
            "put": {"operationId": f"add{name}", "summary": f"The viewer {kind[:-1]}s an account.",
                    "security": _ME, "parameters": [ACCOUNT_ID],
                    "responses": {"204": DONE, "404": NO_ACCOUNT, **_ME_ERRORS}},
            "delete": {"operationId": f"remove{name}", "summary": f"Undo {kind[:-1]}.",
                       "security": _ME, "parameters": [ACCOUNT_ID],
                       "responses": {"204": DONE, "404": NO_ACCOUNT, **_ME_ERRORS}}},
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
                    "responses": {"200": ok("MutedWordPage", "A page."), **_ME_ERRORS}},
            "post": {"operationId": "addMutedWord",
                     "summary": "Mute a word or phrase (stored lower-cased, spaces trimmed).",
                     "security": _ME, "requestBody": body("MutedWordInput"),
                     "responses": {"200": ok("MutedWord", "The word as stored."),
                                   **_ME_ERRORS}}},
        "/v1/me/muted_words/{word}": {"delete": {
            "operationId": "removeMutedWord", "summary": "Unmute a word or phrase.",
            "security": _ME, "parameters": [path_param("word", word, "The word or phrase.")],
            "responses": {"204": DONE, **_ME_ERRORS}}},
    }


def paths(s: Settings) -> Json:
    found: Json = {"/v1/me": {"get": {
        "operationId": "getMe", "summary": "The viewer's own account and the sizes of their "
                                           "relations.",
        "security": _ME, "responses": {"200": ok("Me", "The viewer's account."), **_ME_ERRORS}}}}
    for kind in KINDS:
        found.update(_relation_paths(s, kind))
    return {**found, **_muted_word_paths(s)}
