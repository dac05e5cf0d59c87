"""What every part of the contract uses: schema builders, the shared parameters and error
answers, the bearer schemes, and the response headers that middlewares and the read path add
to every operation (with_headers).
"""
from __future__ import annotations

import copy
from typing import Any

from service.core.settings import Settings
from service.inputs.idempotency import HEADER as IDEMPOTENCY_HEADER, KEY_PATTERN, REPLAYED_HEADER
from service.inputs.pages import ID_PATTERN

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: Json, required: list[str] | None = None) -> Json:
    return {"type": "object", "properties": props, "required": required or list(props),
            "additionalProperties": False}


def optional(props: Json) -> Json:
    """An object whose properties may all be left out (`obj` reads [] as "all required")."""
    return {**obj(props), "required": []}


NULL = {"type": "null"}
ID = {"type": "string", "pattern": "^[0-9]+$"}  # an id in a response
REQUEST_ID = {"type": "string", "pattern": ID_PATTERN}  # an id the server accepts


def nullable(schema: Json) -> Json:
    return {"oneOf": [schema, NULL]}


def error(description: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": ref("Error")}}}


def ok(schema: str, description: str) -> Json:
    return {"description": description,
            "content": {"application/json": {"schema": ref(schema)}}}


def int_param(name: str, lo: int, hi: int, default: int, description: str) -> Json:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": lo, "maximum": hi, "default": default}}


def path_param(name: str, schema: Json, description: str) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def body(schema: str, required: bool = True) -> Json:
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


ERROR_SCHEMA = obj({"error": obj({"code": {"type": "string"}, "message": {"type": "string"}})})

POST_ID = {"name": "post_id", "in": "path", "required": True,
           "description": "Post id: a positive 64-bit integer in decimal.",
           "schema": {"type": "string", "pattern": "^([1-9][0-9]{0,17}|[1-8][0-9]{18})$"}}
CURSOR = {"name": "cursor", "in": "query", "required": True,
          "description": "An opaque cursor from a previous response.",
          "schema": {"type": "string", "minLength": 1}}
# Anonymous or a signed-in viewer: views are rendered for whoever asks.
OPTIONAL_VIEWER = [{}, {"bearer": []}]
THREAD_ERRORS = {"401": error("The bearer token is not valid."),
                 "400": error("Invalid parameter or cursor."),
                 "404": error("No such post, or not visible to the viewer."),
                 "503": error("The database is unavailable (`database_unavailable`) or the "
                              "service is shedding load (`overloaded`); see Retry-After.")}

# The admin API: its scheme and the answers every admin operation has.
ADMIN = [{"adminBearer": []}]
DONE = {"description": "Done (also when it already was so)."}
UNAVAILABLE = error("Database unavailable; see Retry-After.")
ADMIN_ERRORS = {"400": error("Invalid parameter or body; the message names it."),
                "401": error("No admin token, or a wrong one."),
                "403": error("The admin API is disabled (admin_token is not set)."),
                "503": UNAVAILABLE}
ACCOUNT_ID = path_param("account_id", REQUEST_ID, "Account id.")
NO_ACCOUNT = error("No such account.")


def security_schemes() -> Json:
    return {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An account's token (`arb_...`), from the admin API or "
                                  "`arbor accounts token`."},
        "adminBearer": {"type": "http", "scheme": "bearer",
                        "description": "The admin_token setting."},
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "arbor-session",
                          "description": "The HTML pages' session (POST /login): an account "
                                         "token, kept HttpOnly and SameSite=Lax."},
    }


# Response headers the service sends, documented on every operation by with_headers.
SERVER_TIMING = {"description": "Database time and round trips of this request "
                                "(`db;dur=…;desc=\"round_trips=N\", total;dur=…`). Not on 404s, "
                                "whose round-trip count would tell a hidden post from a missing "
                                "one, nor on shed 503s.",
                 "schema": {"type": "string"}}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "required": True,
               "schema": {"type": "string", "pattern": "^[0-9]+$"}}
READ_HEADERS = {
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
# On every answer that passes the middlewares (service/http/request_ids.py)
REQUEST_ID_HEADER = {
    "description": "The request's id: the client's `X-Request-Id` when it was valid (at most "
                   "`request_id_max_length` characters of letters, digits and `._:+=/-`), "
                   "else a generated one (32 hex digits). Every log line of the request names "
                   "it.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:+=/-]+$"}}
TRACEPARENT_HEADER = {
    "description": "The client's W3C `traceparent`, echoed when it was valid (its trace id is "
                   "in the request's log lines).",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"}}
# Reads that go through the render cache (service/http/cached_render.py)
CACHED_READS = ("/v1/conversations/{post_id}", "/v1/conversations/{post_id}/replies",
                "/v1/conversations/{post_id}/ancestors", "/v1/posts/{post_id}/quotes",
                "/v1/posts/{post_id}",
                # the HTML pages of the same reads (service/api/pages)
                "/conversations/{post_id}", "/conversations/{post_id}/replies",
                "/conversations/{post_id}/ancestors")


# HTTP conventions on every successful GET (service/http/conventions.py, links.py, cors.py)
GET_HEADERS = {
    "ETag": {"description": "Strong validator: a hash of the body, suffixed `-gzip`/`-br` for "
                            "the compressed forms. Send it back in If-None-Match for a 304.",
             "required": True, "schema": {"type": "string", "pattern": '^"[0-9a-f]+(-gzip|-br)?"$'}},
    "Cache-Control": {"description": "`public, max-age=<render_cache_ttl_s>, stale-if-error="
                                     "<stale_ttl_s>` for an anonymous read through the render "
                                     "cache; `private, no-cache` with Authorization; `no-cache` "
                                     "otherwise.",
                      "required": True, "schema": {"type": "string"}},
    "Vary": {"description": "`Authorization, Accept-Encoding` (and `Origin` when CORS origins "
                            "are listed).", "required": True, "schema": {"type": "string"}},
    "Content-Encoding": {"description": "`br` or `gzip` as Accept-Encoding prefers (q-values), "
                                        "for bodies of at least `http_compress_min_bytes`.",
                         "schema": {"enum": ["br", "gzip"]}},
    "Link": {"description": "RFC 8288: `<url>; rel=\"next\"` for the next page (a "
                            "conversation's: its focal replies' next page; `rel=\"prev\"` for "
                            "its omitted ancestors).", "schema": {"type": "string"}},
}
NOT_MODIFIED = {"description": "Not modified: If-None-Match names this body's ETag (or is `*`).",
                "headers": {k: GET_HEADERS[k] for k in ("ETag", "Cache-Control", "Vary")}}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                 "description": "ETags of copies the client holds (or `*`): a 304 when one is "
                                "this body's.", "schema": {"type": "string"}}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": {
        "description": "With an Origin request header that `http_cors_origins` (anonymous reads) "
                       "or `http_cors_auth_origins` (with Authorization, and writes) allows.",
        "schema": {"type": "string"}},
    "Access-Control-Expose-Headers": {"description": "The headers a page may read.",
                                      "schema": {"type": "string"}},
}


def with_headers(paths: Json) -> Json:
    """Add the headers that middlewares and the read path send to every response they send
    them on (an operation's own header entries win)."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            # operations may share response objects; what is added below is per operation
            operation["responses"] = copy.deepcopy(operation["responses"])
            if method == "get" and "200" in operation["responses"]:
                operation["responses"].setdefault("304", copy.deepcopy(NOT_MODIFIED))
                operation["parameters"] = [*operation.get("parameters", []), IF_NONE_MATCH]
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-Id", REQUEST_ID_HEADER)
                headers.setdefault("traceparent", TRACEPARENT_HEADER)
                if status != "404":
                    headers.setdefault("Server-Timing", SERVER_TIMING)
                if status in ("429", "503") and path != "/readyz":
                    headers.setdefault("Retry-After", RETRY_AFTER)
                if status == "200" and path in CACHED_READS:
                    for name, header in READ_HEADERS.items():
                        headers.setdefault(name, header)
                if status == "200" and method == "get":
                    for name, header in GET_HEADERS.items():
                        headers.setdefault(name, header)
                for name, header in CORS_HEADERS.items():
                    headers.setdefault(name, header)
                if not headers:
                    del response["headers"]
    return paths


# Idempotency-Key on writes (/v1/posts and Mastodon's statuses alike)
IDEMPOTENCY_KEY = {
    "name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
    "description": "Makes a retry safe: the same key with the same request replays the first "
                   "answer (with `Idempotent-Replayed: true`) and writes nothing; with another "
                   "request it is a 422. Per account; remembered for `idempotency_ttl_s`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN}}
REPLAYED = {REPLAYED_HEADER: {"description": "`true` when this is the stored answer of an "
                                             "earlier request with the same Idempotency-Key.",
                              "schema": {"const": "true"}}}


def view_params(s: Settings, max_nodes_description: str) -> list[Json]:
    """A conversation view's parameters and their bounds (the JSON view and its page alike)."""
    return [
        POST_ID,
        int_param("depth", 0, s.max_depth, s.default_depth, "Reply levels below the focal post."),
        int_param("branching", 1, s.max_branching, s.default_branching, "Replies per node."),
        int_param("max_nodes", 1, s.max_max_nodes, s.default_max_nodes, max_nodes_description),
        int_param("ancestors", 1, s.max_ancestors, s.default_ancestors,
                  "Most ancestors shown; the root is always one of them."),
        {"name": "sort", "in": "query", "required": False, "description": "Order of replies.",
         "schema": {"enum": ["ranked", "newest", "oldest"], "default": "ranked"}},
    ]
