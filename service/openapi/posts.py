"""The contract of /v1/posts (service/api/posts.py): a post and its quotes, writes (`POST
/v1/posts`, `DELETE /v1/posts/{post_id}`), and the viewer's like and repost.

Every pattern and bound is the one the server checks (service/inputs/posts.py,
service/inputs/idempotency.py), so the contract and the server accept exactly the same input.
"""
from __future__ import annotations

from service.core.settings import Settings
from service.inputs.posts import POST_TEXT_PATTERN

from .common import (CURSOR, ID, IDEMPOTENCY_KEY, POST_ID, REPLAYED, THREAD_ERRORS, Json, error,
                     int_param, obj, ref)

_ID = {"type": "string", "pattern": POST_ID["schema"]["pattern"]}
_WRITER = [{"bearer": []}]
_WRITE_ERRORS = {
    "400": error("Invalid body, id or Idempotency-Key; the message names it."),
    "401": error("No valid bearer token."),
    "404": error("No such post, or not visible to the viewer."),
    "422": error("The Idempotency-Key was used for a different request."),
    "503": error("Database unavailable or the write conflicted; see Retry-After."),
}


def schemas(s: Settings) -> Json:
    return {
        "QuotesPage": obj({"items": {"type": "array", "items": ref("Post")},
                           "count": {"type": "integer", "minimum": 0},
                           "cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]}}),
        "Reaction": obj({
            "id": ID, "liked": {"type": "boolean"}, "reposted": {"type": "boolean"},
            "counts": obj({"likes": {"type": "integer", "minimum": 0},
                           "reposts": {"type": "integer", "minimum": 0}},)},),
        "NewPost": obj({
            "text": {"type": "string", "minLength": 1, "maxLength": s.max_post_length,
                     "pattern": POST_TEXT_PATTERN,
                     "description": "Not only whitespace; no control characters but tab, line "
                                    "feed and carriage return."},
            "in_reply_to_id": {**_ID, "description": "The post this one replies to."},
            "quote_of_id": {**_ID, "description": "The post this one quotes."}},
            required=["text"]),
    }


def paths(s: Settings) -> Json:
    cursor = {**CURSOR, "required": False}
    return {
        "/v1/posts/{post_id}/quotes": {"get": {
            "operationId": "getQuotes",
            "summary": "The quote posts of a post, newest first, that the viewer may see.",
            "security": [{}, {"bearer": []}],
            "parameters": [POST_ID, cursor,
                           int_param("limit", 1, s.max_quotes_page, min(20, s.max_quotes_page),
                                     "Most quote posts per page.")],
            "responses": {"200": {"description": "A page of quote posts.", "content": {
                "application/json": {"schema": ref("QuotesPage")}}}, **THREAD_ERRORS}}},
        "/v1/posts": {"post": {
            "operationId": "createPost", "security": _WRITER,
            "summary": "Write a post (a root, a reply, a quote) as the viewer.",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": ref("NewPost"),
                "examples": {"root": {"value": {"text": "Hello, Arbor"}}}}}},
            "responses": {
                "201": {"description": "The post, as a conversation shows it.",
                        "headers": {**REPLAYED, "Location": {
                            "description": "The post's conversation view "
                                           "(`/v1/conversations/{id}`), also on a replay.",
                            "required": True, "schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": ref("Post")}}},
                **_WRITE_ERRORS}}},
        **_reaction_paths(),
        "/v1/posts/{post_id}": {"get": {
            "operationId": "getPost", "security": [{}, {"bearer": []}],
            "summary": "One post as a conversation shows it (its quote embedded, the viewer's "
                       "`liked` and `reposted`), with `replies: null`.",
            "parameters": [POST_ID],
            "responses": {"200": {"description": "The post.", "content": {
                "application/json": {"schema": ref("Post")}}}, **THREAD_ERRORS}}, "delete": {
            "operationId": "deletePost", "security": _WRITER,
            "summary": "Delete one of the viewer's posts (it stays as a tombstone while it has "
                       "replies).",
            "parameters": [POST_ID, IDEMPOTENCY_KEY],
            "responses": {
                "204": {"description": "Deleted.", "headers": REPLAYED},
                "403": error("The post is not the viewer's."),
                **_WRITE_ERRORS}}},
    }


def _reaction_paths() -> Json:
    def operation(verb: str, what: str, done: str) -> Json:
        return {
            "operationId": f"{verb}{what.capitalize()}", "security": _WRITER,
            "summary": f"{done} as the viewer. Idempotent: the same answer whether or not it "
                       "changed anything.",
            "parameters": [POST_ID],
            "responses": {
                "200": {"description": "The viewer's state and the post's exact counts (the "
                                       "counts in renders follow within "
                                       "`reactions_fold_interval_ms`).",
                        "content": {"application/json": {"schema": ref("Reaction")}}},
                "400": error("Invalid id."), "401": error("No valid bearer token."),
                "404": error("No such post, or not visible to the viewer."),
                "503": error("Database unavailable; see Retry-After.")}}
    return {f"/v1/posts/{{post_id}}/{what}": {
        "put": operation("put", what, f"{what.capitalize()} the post"),
        "delete": operation("delete", what, f"Take back the {what}")}
        for what in ("like", "repost")}
