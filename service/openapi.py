"""The OpenAPI 3.1 document: the contract, served at /openapi.json and checked by schemathesis."""
from __future__ import annotations

from typing import Any

from .settings import Settings

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: Json, required: list[str] | None = None) -> Json:
    return {"type": "object", "properties": props, "required": required or list(props),
            "additionalProperties": False}


_NULL = {"type": "null"}
_ID = {"type": "string", "pattern": "^[0-9]+$"}


def _nullable(schema: Json) -> Json:
    return {"oneOf": [schema, _NULL]}


def _schemas() -> Json:
    section_ref = _obj({
        "count": {"type": "integer", "minimum": 1,
                  "description": "Replies left in this list for the viewer: exactly what the "
                                 "cursor's pages reach when `exact`, else an upper bound."},
        "exact": {"type": "boolean",
                  "description": "True when the view read the rest of the list to its end. "
                                 "False: `count` comes from stored counters (never a count at "
                                 "request time), with the replies lifted out of or into the list "
                                 "for this viewer already moved, and it still includes the "
                                 "replies this viewer's rules will hide (blocked, muted, "
                                 "unavailable or protected authors, muted words, tombstones with "
                                 "nothing visible below). A section's count is always a bound."},
        "cursor": {"type": "string"}})
    return {
        "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}})}),
        "Author": _obj({"id": _ID, "handle": {"type": "string"}, "display_name": {"type": "string"}}),
        "Counts": _obj({k: {"type": "integer", "minimum": 0}
                        for k in ("replies", "likes", "reposts", "quotes")}),
        "Post": _obj({
            "type": {"const": "post"}, "id": _ID, "conversation_id": _ID,
            "in_reply_to_id": _nullable(_ID), "author": _ref("Author"), "text": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"}, "counts": _ref("Counts"),
            "quote": _nullable(_ref("Quote")), "replies": _nullable(_ref("Replies"))}),
        "Tombstone": _obj({
            "type": {"const": "tombstone"}, "id": _ID,
            "reason": {"enum": ["deleted", "unavailable", "blocked", "muted"]},
            "replies": _nullable(_ref("Replies"))}),
        "Node": {"oneOf": [_ref("Post"), _ref("Tombstone")]},
        "Quote": _obj({
            "state": {"enum": ["ok", "deleted", "unavailable", "blocked", "temporarily_unavailable"]},
            "id": _ID, "post": _nullable(_ref("Post"))}),
        "SectionRef": section_ref,
        "Replies": _obj({
            "items": {"type": "array", "items": _ref("Node")},
            "more": _nullable(_ref("SectionRef")),
            "sections": _obj({"low_quality": _nullable(_ref("SectionRef")),
                              "offensive": _nullable(_ref("SectionRef"))})}),
        "Ancestors": _obj({
            "items": {"type": "array", "items": _ref("Node")},
            "omitted": {"type": "integer", "minimum": 0},
            "cursor": _nullable({"type": "string"})}),
        "Conversation": _obj({
            "focal_id": _ID, "ancestors": _ref("Ancestors"), "focal": _ref("Post"),
            "degraded": {"type": "array", "items": {"type": "string"}},
            "partial": {"type": "boolean"}}),
        "Health": _obj({"status": {"type": "string"}}),
        "Ready": _obj({"status": {"enum": ["ok", "degraded"]},
                       "degraded": {"type": "array", "items": {
                           "enum": ["database", "ranking", "overloaded",
                                    "rate_limit_store"]}},
                       "details": {"type": "object"}}),
    }


def _error(description: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(schema: str, description: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}}


def _int_param(name: str, lo: int, hi: int, default: int, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": lo, "maximum": hi, "default": default}}


_POST_ID = {"name": "post_id", "in": "path", "required": True,
            "description": "Post id: a positive 64-bit integer in decimal.",
            "schema": {"type": "string", "pattern": "^([1-9][0-9]{0,17}|[1-8][0-9]{18})$"}}
_CURSOR = {"name": "cursor", "in": "query", "required": True,
           "description": "An opaque cursor from a previous response.",
           "schema": {"type": "string", "minLength": 1}}
# Anonymous or a signed-in viewer: views are rendered for whoever asks.
_OPTIONAL_VIEWER = [{}, {"bearer": []}]
_THREAD_ERRORS = {"401": _error("The bearer token is not valid."),
                  "400": _error("Invalid parameter or cursor."),
                  "404": _error("No such post, or not visible to the viewer."),
                  "503": _error("The database is unavailable (`database_unavailable`) or the "
                                "service is shedding load (`overloaded`); see Retry-After.")}


# Response headers the service sends, documented on every operation by _with_headers.
_SERVER_TIMING = {"description": "Database time and round trips of this request "
                                 "(`db;dur=…;desc=\"round_trips=N\", total;dur=…`). Not on 404s, "
                                 "whose round-trip count would tell a hidden post from a missing "
                                 "one, nor on shed 503s.",
                  "schema": {"type": "string"}}
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"}}
_READ_HEADERS = {
    "Arbor-Cache": {"description": "`hit`: served from the render cache without reading the "
                                   "database; `miss`: rendered now; `stale`: the database is "
                                   "unavailable and this is an older copy.",
                    "required": True, "schema": {"enum": ["hit", "miss", "stale"]}},
    "Arbor-Degraded": {"description": "`stale` when the answer is an older copy (the body's "
                                      "`degraded` says so too).",
                       "schema": {"enum": ["stale"]}},
    "Age": {"description": "With `Arbor-Degraded: stale`: the copy's age in seconds.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}
# Reads that go through the render cache (service/cached_render.py)
_CACHED_READS = ("/v1/conversations/{post_id}", "/v1/conversations/{post_id}/replies",
                 "/v1/conversations/{post_id}/ancestors", "/v1/posts/{post_id}/quotes")


def _with_headers(paths: Json) -> Json:
    """Add the headers that middlewares and the read path send to every response they send
    them on (an operation's own header entries win)."""
    for path, operations in paths.items():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                if status != "404":
                    headers.setdefault("Server-Timing", _SERVER_TIMING)
                if status in ("429", "503") and path != "/readyz":
                    headers.setdefault("Retry-After", _RETRY_AFTER)
                if status == "200" and path in _CACHED_READS:
                    for name, header in _READ_HEADERS.items():
                        headers.setdefault(name, header)
                if not headers:
                    del response["headers"]
    return paths


def build_spec(s: Settings) -> Json:
    from .openapi_post_writes import post_write_paths, post_write_schemas
    from .openapi_posts import post_paths, post_schemas
    from .openapi_rate_limits import add_rate_limit_answers, rate_limit_paths, rate_limit_schemas
    from .openapi_viewers import security_schemes, viewer_paths, viewer_schemas

    conversation_params = [
        _POST_ID,
        _int_param("depth", 0, s.max_depth, s.default_depth, "Reply levels below the focal post."),
        _int_param("branching", 1, s.max_branching, s.default_branching, "Replies per node."),
        _int_param("max_nodes", 1, s.max_max_nodes, s.default_max_nodes,
                   "Most reply nodes in the response."),
        _int_param("ancestors", 1, s.max_ancestors, s.default_ancestors,
                   "Most ancestors shown; the root is always one of them."),
        {"name": "sort", "in": "query", "required": False, "description": "Order of replies.",
         "schema": {"enum": ["ranked", "newest", "oldest"], "default": "ranked"}},
    ]
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "Arbor", "version": "1",
                 "description": "Reply-thread rendering: ancestors, the focal post, and a bounded "
                                "tree of replies with cursors for everything cut."},
        "paths": _with_headers({
            "/v1/conversations/{post_id}": {"get": {
                "operationId": "getConversation", "security": _OPTIONAL_VIEWER, "summary": "A conversation around a post.",
                "parameters": conversation_params,
                "responses": {"200": _ok("Conversation", "The conversation."), **_THREAD_ERRORS}}},
            "/v1/conversations/{post_id}/replies": {"get": {
                "operationId": "getReplies", "security": _OPTIONAL_VIEWER,
                "summary": "The next page of a node's replies, or of one of its sections.",
                "parameters": [_POST_ID, _CURSOR,
                               _int_param("max_nodes", 1, s.max_max_nodes, s.default_max_nodes,
                                          "Most reply nodes in the response.")],
                "responses": {"200": _ok("Replies", "A page of replies."), **_THREAD_ERRORS}}},
            "/v1/conversations/{post_id}/ancestors": {"get": {
                "operationId": "getAncestors", "security": _OPTIONAL_VIEWER,
                "summary": "Ancestors omitted from a conversation view, nearest to the root first.",
                "parameters": [_POST_ID, _CURSOR],
                "responses": {"200": _ok("Ancestors", "A page of ancestors."), **_THREAD_ERRORS}}},
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process is alive.",
                                 "responses": {"200": _ok("Health", "Alive.")}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "The service can serve.",
                                "responses": {"200": _ok("Ready", "Ready."),
                                              "503": _ok("Ready", "Degraded.")}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document.",
                                      "responses": {"200": {
                                          "description": "OpenAPI document.",
                                          "content": {"application/json": {
                                              "schema": {"type": "object"}}}}}}},
            **viewer_paths(s),
            **post_paths(s),
            **post_write_paths(s),
        }),
        "components": {"schemas": {**_schemas(), **viewer_schemas(s), **post_schemas(s),
                                   **post_write_schemas(s), **rate_limit_schemas()},
                       "securitySchemes": security_schemes()},
    }
    spec["paths"].update(_with_headers(rate_limit_paths()))
    add_rate_limit_answers(spec["paths"])
    return spec
