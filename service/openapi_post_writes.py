"""The OpenAPI part for writes: `POST /v1/posts` and `DELETE /v1/posts/{post_id}`.

Every pattern and bound is the one the server checks (service/post_input.py,
service/idempotency.py), so the contract and the server accept exactly the same input.
"""
from __future__ import annotations

from typing import Any

from .idempotency import HEADER, KEY_PATTERN, REPLAYED_HEADER
from .openapi import _POST_ID, _error, _obj, _ref
from .post_input import POST_TEXT_PATTERN
from .settings import Settings

Json = dict[str, Any]

_ID = {"type": "string", "pattern": _POST_ID["schema"]["pattern"]}
_WRITER = [{"bearer": []}]
_KEY_PARAM = {
    "name": HEADER, "in": "header", "required": False,
    "description": "Makes a retry safe: the same key with the same request replays the first "
                   "answer (with `Idempotent-Replayed: true`) and writes nothing; with another "
                   "request it is a 422. Per account; remembered for `idempotency_ttl_s`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN}}
_REPLAYED = {REPLAYED_HEADER: {"description": "`true` when this is the stored answer of an "
                                              "earlier request with the same Idempotency-Key.",
                               "schema": {"const": "true"}}}
_WRITE_ERRORS = {
    "400": _error("Invalid body, id or Idempotency-Key; the message names it."),
    "401": _error("No valid bearer token."),
    "404": _error("No such post, or not visible to the viewer."),
    "422": _error("The Idempotency-Key was used for a different request."),
    "503": _error("Database unavailable or the write conflicted; see Retry-After."),
}


def post_write_schemas(s: Settings) -> Json:
    return {"NewPost": _obj({
        "text": {"type": "string", "minLength": 1, "maxLength": s.max_post_length,
                 "pattern": POST_TEXT_PATTERN,
                 "description": "Not only whitespace; no control characters but tab, line feed "
                                "and carriage return."},
        "in_reply_to_id": {**_ID, "description": "The post this one replies to."},
        "quote_of_id": {**_ID, "description": "The post this one quotes."}},
        required=["text"])}


def post_write_paths(s: Settings) -> Json:
    return {
        "/v1/posts": {"post": {
            "operationId": "createPost", "security": _WRITER,
            "summary": "Write a post (a root, a reply, a quote) as the viewer.",
            "parameters": [_KEY_PARAM],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("NewPost"),
                "examples": {"root": {"value": {"text": "Hello, Arbor"}}}}}},
            "responses": {
                "201": {"description": "The post, as a conversation shows it.",
                        "headers": {**_REPLAYED, "Location": {
                            "description": "The post's conversation view "
                                           "(`/v1/conversations/{id}`), also on a replay.",
                            "required": True, "schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": _ref("Post")}}},
                **_WRITE_ERRORS}}},
        "/v1/posts/{post_id}": {"delete": {
            "operationId": "deletePost", "security": _WRITER,
            "summary": "Delete one of the viewer's posts (it stays as a tombstone while it has "
                       "replies).",
            "parameters": [_POST_ID, _KEY_PARAM],
            "responses": {
                "204": {"description": "Deleted.", "headers": _REPLAYED},
                "403": _error("The post is not the viewer's."),
                **_WRITE_ERRORS}}},
    }
