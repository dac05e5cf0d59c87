"""The OpenAPI part for posts: the admin import endpoint (and, later, writes and quotes)."""
from __future__ import annotations

from typing import Any

from .import_items import FIELDS
from .openapi import _error, _obj, _ref
from .settings import Settings

Json = dict[str, Any]


def post_schemas(s: Settings) -> Json:
    error_item = _obj({"index": {"type": "integer", "minimum": 0}, "code": {"type": "string"},
                       "message": {"type": "string"}})
    return {
        "QuotesPage": _obj({"items": {"type": "array", "items": _ref("Post")},
                            "count": {"type": "integer", "minimum": 0},
                            "cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]}}),
        "ImportRequest": _obj({"posts": {
            "type": "array", "maxItems": s.import_max_batch,
            # Items are checked one by one and refused by index in the report, so that one
            # bad item does not sink a batch: the schema of an item is in the description.
            "items": {},
            "description": "Posts: {" + ", ".join(FIELDS) + "}; ids are decimal strings, "
                           "times RFC 3339 with an offset; in_reply_to_id, quote_of_id and "
                           "deleted_at are optional."}}),
        "ImportReport": _obj({
            "imported": {"type": "integer", "minimum": 0},
            "pending": {"type": "integer", "minimum": 0},
            "duplicate": {"type": "integer", "minimum": 0},
            "errors": {"type": "array", "items": error_item}}),
    }


def _setting_schema(name: str) -> Json:
    from .settings import BY_NAME

    setting = BY_NAME[name]
    schema: Json = {"type": {int: "integer", float: "number", str: "string",
                             bool: "boolean"}[setting.type], "description": setting.help}
    if setting.min is not None:
        schema["minimum"] = setting.min
    if setting.max is not None:
        schema["maximum"] = setting.max
    return schema


def settings_paths() -> Json:
    from .settings import LIVE

    row = {"type": "object", "required": ["name", "value", "default", "source", "live", "help"]}
    listing = {"description": "Every setting: value (secrets redacted), default, where the value "
                              "came from, whether it can change while running.",
               "content": {"application/json": {"schema": _obj({"settings": {
                   "type": "array", "items": row}})}}}
    errors = {"401": _error("No admin token, or a wrong one."),
              "403": _error("The admin API is disabled (admin_token is not set)."),
              "503": _error("The service is shedding load (`overloaded`); see Retry-After.")}
    # null restores a setting as the process was configured (environment, --setting, else
    # its default)
    change = {"type": "object", "minProperties": 1, "additionalProperties": False,
              "properties": {name: {"oneOf": [_setting_schema(name), {"type": "null"}]}
                             for name in sorted(LIVE)}}
    return {"/metrics": {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text format).",
        "responses": {"200": {"description": "Metrics.", "content": {
            "text/plain": {"schema": {"type": "string"}}}}}}},
            "/v1/admin/settings": {
        "get": {"operationId": "listSettings", "summary": "The settings and their values.",
                "security": [{"adminBearer": []}], "responses": {"200": listing, **errors}},
        "patch": {"operationId": "changeSettings",
                  "summary": "Change live settings; applies to the next request, not persisted.",
                  "description": "A value of null restores the setting as the process was "
                                 "configured (environment or --setting, else its default).",
                  "security": [{"adminBearer": []}],
                  "requestBody": {"required": True,
                                  "content": {"application/json": {"schema": change}}},
                  "responses": {"200": listing,
                                "400": _error("Unknown, not live, or invalid (a default above "
                                              "its maximum, say); nothing was changed."),
                                **errors}}}}


def conversation_limits_paths() -> Json:
    from .conversation_limits_admin import RANGES
    from .openapi import _POST_ID

    caps = {"type": "object", "additionalProperties": False, "properties": {
        name: {"oneOf": [{"type": "integer", "minimum": lo, "maximum": hi}, {"type": "null"}]}
        for name, (lo, hi) in RANGES.items()}}
    shown = _obj({"conversation_id": {"type": "string"},
                  **{name: {"oneOf": [{"type": "integer"}, {"type": "null"}]} for name in RANGES}})
    ok = {"description": "The conversation's caps (null: no cap).",
          "content": {"application/json": {"schema": shown}}}
    errors = {"400": _error("Invalid body."), "401": _error("No admin token, or a wrong one."),
              "403": _error("The admin API is disabled (admin_token is not set)."),
              "404": _error("No such post."),
              "503": _error("The database is unavailable (`database_unavailable`) or the "
                            "service is shedding load (`overloaded`); see Retry-After.")}
    common = {"security": [{"adminBearer": []}], "parameters": [_POST_ID]}
    return {"/v1/admin/conversations/{post_id}/limits": {
        "get": {"operationId": "getConversationLimits", "summary": "A conversation's caps.",
                **common, "responses": {"200": ok, **errors}},
        "put": {"operationId": "putConversationLimits",
                "summary": "Cap the view limits of the post's conversation (a viral post).",
                **common, "requestBody": {"required": True, "content": {
                    "application/json": {"schema": caps}}},
                "responses": {"200": ok, **errors}},
        "delete": {"operationId": "deleteConversationLimits", "summary": "Remove the caps.",
                   **common, "responses": {"204": {"description": "Removed."}, **errors}}}}


def post_paths(s: Settings) -> Json:
    from .openapi import _CURSOR, _POST_ID, _THREAD_ERRORS, _int_param

    cursor = {**_CURSOR, "required": False}
    return {
        **settings_paths(),
        **conversation_limits_paths(),
        "/v1/posts/{post_id}/quotes": {"get": {
            "operationId": "getQuotes",
            "summary": "The quote posts of a post, newest first, that the viewer may see.",
            "security": [{}, {"bearer": []}],
            "parameters": [_POST_ID, cursor,
                           _int_param("limit", 1, s.max_quotes_page, min(20, s.max_quotes_page),
                                      "Most quote posts per page.")],
            "responses": {"200": {"description": "A page of quote posts.", "content": {
                "application/json": {"schema": _ref("QuotesPage")}}}, **_THREAD_ERRORS}}},
        "/v1/admin/posts/import": {"post": {
            "operationId": "importPosts",
            "summary": "Import posts from another system, with their own ids, in any order.",
            "description": "A reply whose parent has not arrived is stored and attached when "
                           "the parent arrives. Refused items are listed by index; the others "
                           "are imported.",
            "security": [{"adminBearer": []}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("ImportRequest")}}},
            "responses": {
                "200": {"description": "What happened to each item.",
                        "content": {"application/json": {"schema": _ref("ImportReport")}}},
                "400": _error("The body is not {\"posts\": [...]} or is too large."),
                "401": _error("No admin token, or a wrong one."),
                "403": _error("The admin API is disabled (admin_token is not set)."),
                "503": _error("Database unavailable; see Retry-After.")}}},
    }
