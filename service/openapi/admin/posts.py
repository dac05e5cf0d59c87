"""The contract of /v1/admin/posts (service/api/admin/posts.py): importing posts, and a
post's classifier labels."""
from __future__ import annotations

from storage.label_writes import LABELS

from service.core.settings import Settings
from service.inputs.import_items import FIELDS

from ..common import (ADMIN, ADMIN_ERRORS, DONE, REQUEST_ID, Json, body, error, obj, ok, path_param,
                      ref)


def schemas(s: Settings) -> Json:
    error_item = obj({"index": {"type": "integer", "minimum": 0}, "code": {"type": "string"},
                      "message": {"type": "string"}})
    return {
        "ImportRequest": obj({"posts": {
            "type": "array", "maxItems": s.import_max_batch,
            # Items are checked one by one and refused by index in the report, so that one
            # bad item does not sink a batch: the schema of an item is in the description.
            "items": {},
            "description": "Posts: {" + ", ".join(FIELDS) + "}; ids are decimal strings, "
                           "times RFC 3339 with an offset; in_reply_to_id, quote_of_id and "
                           "deleted_at are optional."}}),
        "ImportReport": obj({
            "imported": {"type": "integer", "minimum": 0},
            "pending": {"type": "integer", "minimum": 0},
            "duplicate": {"type": "integer", "minimum": 0},
            "errors": {"type": "array", "items": error_item}}),
        "LabelScore": obj({"score": {"type": "number", "minimum": 0, "maximum": 1}}),
        "Label": obj({"post_id": REQUEST_ID, "label": {"enum": list(LABELS)},
                      "score": {"type": "number", "minimum": 0, "maximum": 1}}),
    }


def paths(s: Settings) -> Json:
    post_id = path_param("post_id", REQUEST_ID, "Post id.")
    label = path_param("label", {"enum": list(LABELS)}, "The classifier label.")
    return {
        "/v1/admin/posts/import": {"post": {
            "operationId": "importPosts",
            "summary": "Import posts from another system, with their own ids, in any order.",
            "description": "A reply whose parent has not arrived is stored and attached when "
                           "the parent arrives. Refused items are listed by index; the others "
                           "are imported.",
            "security": ADMIN,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": ref("ImportRequest")}}},
            "responses": {
                "200": {"description": "What happened to each item.",
                        "content": {"application/json": {"schema": ref("ImportReport")}}},
                "400": error("The body is not {\"posts\": [...]} or is too large."),
                "401": error("No admin token, or a wrong one."),
                "403": error("The admin API is disabled (admin_token is not set)."),
                "503": error("Database unavailable; see Retry-After.")}}},
        "/v1/admin/posts/{post_id}/labels/{label}": {
            "put": {"operationId": "putLabel", "summary": "Set a classifier label's score.",
                    "security": ADMIN, "parameters": [post_id, label],
                    "requestBody": body("LabelScore"),
                    "responses": {"200": ok("Label", "The label."),
                                  "404": error("No such post."), **ADMIN_ERRORS}},
            "delete": {"operationId": "deleteLabel", "summary": "Remove a classifier label.",
                       "security": ADMIN, "parameters": [post_id, label],
                       "responses": {"204": DONE, "404": error("No such post."),
                                     **ADMIN_ERRORS}}},
    }
