"""The contract of /v1/admin/deny_list (service/api/admin/deny_list.py)."""
from __future__ import annotations

from service.core.settings import Settings
from service.inputs.bodies import MAX_LABEL, TEXT_PATTERN
from service.inputs.pages import ID_PATTERN

from ..common import ADMIN, ADMIN_ERRORS, REQUEST_ID, Json, error, nullable, obj


def schemas(s: Settings) -> Json:
    return {
        "DenyEntry": obj({"id": REQUEST_ID, "network": nullable({"type": "string"}),
                          "account_id": nullable(REQUEST_ID), "note": {"type": "string"},
                          "created_at": {"type": "string", "format": "date-time"}}),
        "DenyList": obj({"items": {"type": "array",
                                   "items": {"$ref": "#/components/schemas/DenyEntry"}}}),
    }


def paths(s: Settings) -> Json:
    note = {"type": "string", "maxLength": MAX_LABEL, "pattern": TEXT_PATTERN}
    entry_ok = {"description": "The entry.", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/DenyEntry"}}}}
    return {
        "/v1/admin/deny_list": {
            "get": {"operationId": "listDenyList", "security": ADMIN,
                    "summary": "The deny list: addresses, CIDR ranges and accounts refused "
                               "with 403 `denied` before anything else.",
                    "responses": {"200": {"description": "Every entry.", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/DenyList"}}}}, **ADMIN_ERRORS}},
            "post": {"operationId": "addDenyListEntry", "security": ADMIN,
                     "summary": "Refuse an address or CIDR range (`network`) or an account "
                                "(`account_id`); persisted, applies at once here and within "
                                "rate_limit_reload_s in other processes.",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "additionalProperties": False,
                                    "minProperties": 1, "maxProperties": 2,
                                    "properties": {"network": {"type": "string",
                                                               "maxLength": 50},
                                                   "account_id": REQUEST_ID, "note": note}}}}},
                     "responses": {"201": entry_ok,
                                   "409": error("Already on the list (`already_denied`)."),
                                   **ADMIN_ERRORS}}},
        "/v1/admin/deny_list/{entry_id}": {
            "delete": {"operationId": "deleteDenyListEntry", "security": ADMIN,
                       "summary": "Take an entry off the deny list.",
                       "parameters": [{"name": "entry_id", "in": "path", "required": True,
                                       "schema": {"type": "string", "pattern": ID_PATTERN}}],
                       "responses": {"204": {"description": "Removed."},
                                     "404": error("No such entry."), **ADMIN_ERRORS}}},
    }
