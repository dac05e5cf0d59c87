"""The contract of /v1/admin/settings (service/api/admin/settings.py): every setting, and the
live ones changeable. Each setting's schema comes from the settings table itself."""
from __future__ import annotations

from service.core.settings import BY_NAME, LIVE, Settings

from ..common import ADMIN, Json, error, obj


def schemas(s: Settings) -> Json:
    return {}


def _setting_schema(name: str) -> Json:
    setting = BY_NAME[name]
    schema: Json = {"type": {int: "integer", float: "number", str: "string",
                             bool: "boolean"}[setting.type], "description": setting.help}
    if setting.min is not None:
        schema["minimum"] = setting.min
    if setting.max is not None:
        schema["maximum"] = setting.max
    return schema


def paths(s: Settings) -> Json:
    row = {"type": "object", "required": ["name", "value", "default", "source", "live", "help"]}
    listing = {"description": "Every setting: value (secrets redacted), default, where the value "
                              "came from, whether it can change while running.",
               "content": {"application/json": {"schema": obj({"settings": {
                   "type": "array", "items": row}})}}}
    errors = {"401": error("No admin token, or a wrong one."),
              "403": error("The admin API is disabled (admin_token is not set)."),
              "503": error("The service is shedding load (`overloaded`); see Retry-After.")}
    # null restores a setting as the process was configured (environment, --setting, else
    # its default)
    change = {"type": "object", "minProperties": 1, "additionalProperties": False,
              "properties": {name: {"oneOf": [_setting_schema(name), {"type": "null"}]}
                             for name in sorted(LIVE)}}
    return {"/v1/admin/settings": {
        "get": {"operationId": "listSettings", "summary": "The settings and their values.",
                "security": ADMIN, "responses": {"200": listing, **errors}},
        "patch": {"operationId": "changeSettings",
                  "summary": "Change live settings; applies to the next request, not persisted.",
                  "description": "A value of null restores the setting as the process was "
                                 "configured (environment or --setting, else its default).",
                  "security": ADMIN,
                  "requestBody": {"required": True,
                                  "content": {"application/json": {"schema": change}}},
                  "responses": {"200": listing,
                                "400": error("Unknown, not live, or invalid (a default above "
                                             "its maximum, say); nothing was changed."),
                                **errors}}}}
