"""The contract of /api/v1/statuses (service/api/mastodon/statuses.py): a status, its
context, posting, deleting, favourite and reblog.

Every pattern and bound here is the one the server checks (service/inputs/mastodon.py,
service/inputs/posts.py, service/inputs/idempotency.py, service/inputs/query.py).
"""
from __future__ import annotations

from service.core.settings import Settings
from service.inputs.posts import POST_TEXT_PATTERN

from ..common import IDEMPOTENCY_KEY, POST_ID, REPLAYED, Json, int_param, obj
from .common import (BAD_TOKEN, CONTEXT_HEADERS, NOT_FOUND, OPTIONAL_VIEWER, STATUS_ID,
                     UNAVAILABLE, VIEWER, error, ok)

_ID = {"type": "string", "pattern": POST_ID["schema"]["pattern"]}
_BAD_INPUT = error("A body that is not JSON or a form, or a malformed Idempotency-Key.")
_REUSED = error("The Idempotency-Key was used for a different request.")


def _cursor(name: str, what: str) -> Json:
    return {"name": name, "in": "query", "required": False,
            "description": f"Continue {what}: a cursor from `more` or the Link header.",
            "schema": {"type": "string", "minLength": 1}}


def schemas(s: Settings) -> Json:
    new = obj({
        "status": {"type": "string", "minLength": 1, "maxLength": s.max_post_length,
                   "pattern": POST_TEXT_PATTERN,
                   "description": "The text (plain). Not only whitespace; no control "
                                  "characters but tab, line feed and carriage return."},
        "in_reply_to_id": {"anyOf": [_ID, {"const": ""}, {"type": "null"}],
                           "description": "The status this one replies to (empty or null: "
                                          "none, as Mastodon reads a blank form field)."},
        "quoted_status_id": {"anyOf": [_ID, {"const": ""}, {"type": "null"}],
                             "description": "The status this one quotes (Mastodon 4.5; "
                                            "empty or null: none)."},
        "visibility": {"enum": ["public", "unlisted"],
                       "description": "Arbor's posts are all public (`unlisted` is the same "
                                      "here); `private` and `direct` are a 422."},
        "sensitive": {"type": "boolean", "description": "Ignored: Arbor has no media (in a "
                                                         "form: true, false, 1 or 0)."},
        "language": {"type": "string", "maxLength": 16, "description": "Ignored."},
        "quote_approval_policy": {"enum": ["public"],
                                  "description": "Anyone may quote an Arbor post."},
    }, required=["status"])
    new["additionalProperties"] = True  # as Mastodon: parameters it does not know are ignored
    return {"MastodonNewStatus": new}


def _status_op(op_id: str, summary: str, *, errors: Json, params: list | None = None,
               security=VIEWER, answer: str = "The status.") -> Json:
    op = {"operationId": op_id, "security": security, "summary": summary,
          "parameters": [STATUS_ID, *(params or [])],
          "responses": {"200": ok("MastodonStatus", answer), **errors}}
    return op


def paths(s: Settings) -> Json:
    write_errors = {"400": _BAD_INPUT, "401": BAD_TOKEN, "404": NOT_FOUND, "422": _REUSED,
                    "503": UNAVAILABLE}
    react_errors = {"401": BAD_TOKEN, "404": NOT_FOUND, "503": UNAVAILABLE}

    def reaction(op_id: str, summary: str) -> Json:
        return {"post": _status_op(op_id, summary, errors=react_errors,
                                   answer="The status, with the viewer's state and exact "
                                          "counts.")}
    body = {"required": True, "content": {
        media: {"schema": {"$ref": "#/components/schemas/MastodonNewStatus"}}
        for media in ("application/x-www-form-urlencoded", "application/json")}}
    return {
        "/api/v1/statuses": {"post": {
            "operationId": "mastodonPostStatus", "security": VIEWER,
            "summary": "Post a status (a root, a reply, a quote) as the viewer.",
            "parameters": [IDEMPOTENCY_KEY], "requestBody": body,
            "responses": {
                "200": {**ok("MastodonStatus", "The new status (also on a replay)."),
                        "headers": REPLAYED},
                "400": _BAD_INPUT, "401": BAD_TOKEN, "404": error(
                    "`Record not found`: the status replied to or quoted does not exist or "
                    "is not visible to the viewer."),
                "422": error("`Validation failed: ...`: a text that is empty, too long or "
                             "has control characters; media, polls, scheduling, content "
                             "warnings, a visibility but public; or an Idempotency-Key used "
                             "for a different request."),
                "503": UNAVAILABLE}}},
        "/api/v1/statuses/{status_id}": {
            "get": _status_op("mastodonGetStatus", "A status.", security=OPTIONAL_VIEWER,
                              errors={"401": BAD_TOKEN, "404": NOT_FOUND,
                                      "503": UNAVAILABLE}),
            "delete": {**_status_op(
                "mastodonDeleteStatus", "Delete one of the viewer's statuses (it stays as a "
                "tombstone, invisible here, while it has replies); someone else's is a 404.",
                errors=write_errors, params=[IDEMPOTENCY_KEY],
                answer="The deleted status, with its source `text`."),
                "responses": {"200": {**ok("MastodonStatus", "The deleted status, with its "
                                                             "source `text`."),
                                      "headers": REPLAYED}, **write_errors}}},
        "/api/v1/statuses/{status_id}/context": {"get": {
            "operationId": "mastodonStatusContext", "security": OPTIONAL_VIEWER,
            "summary": "The status's ancestors (root first) and descendants (depth-first), "
                       "bounded by Arbor's limits; every cut in `more` and the Link header.",
            "parameters": [
                STATUS_ID,
                int_param("depth", 0, s.max_depth, s.default_depth, "Reply levels below it."),
                int_param("branching", 1, s.max_branching, s.default_branching,
                          "Replies shown per status."),
                int_param("max_nodes", 1, s.max_max_nodes, s.default_max_nodes,
                          "Most descendants (also of a continuation)."),
                int_param("ancestors", 1, s.max_ancestors, s.default_ancestors,
                          "Most ancestors (the root is one of them)."),
                {"name": "sort", "in": "query", "required": False,
                 "description": "Order of each reply list.",
                 "schema": {"enum": ["ranked", "newest", "oldest"], "default": "ranked"}},
                _cursor("replies_cursor", "one status's replies (a Context of descendants)"),
                _cursor("ancestors_cursor", "the ancestors (a Context of ancestors)")],
            "responses": {
                "200": ok("MastodonContext", "The context.", CONTEXT_HEADERS),
                "400": error("An invalid parameter or cursor (tampered, expired, of another "
                             "status or viewer), or both cursors."),
                "401": BAD_TOKEN, "404": NOT_FOUND, "503": UNAVAILABLE}}},
        "/api/v1/statuses/{status_id}/favourite": reaction(
            "mastodonFavourite", "Like the status as the viewer (again: no change)."),
        "/api/v1/statuses/{status_id}/unfavourite": reaction(
            "mastodonUnfavourite", "Undo the viewer's like (none: no change)."),
        "/api/v1/statuses/{status_id}/reblog": reaction(
            "mastodonReblog", "Repost the status as the viewer (again: no change). Arbor's "
                              "reposts are not statuses: the answer is the status itself, "
                              "`reblogged: true`, not a wrapper."),
        "/api/v1/statuses/{status_id}/unreblog": reaction(
            "mastodonUnreblog", "Undo the viewer's repost (none: no change)."),
    }
