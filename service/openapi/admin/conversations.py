"""The contract of /v1/admin/conversations/{post_id}/limits
(service/api/admin/conversations.py): caps on one conversation's view limits, in the ranges
the server checks (service/inputs/caps.py)."""
from __future__ import annotations

from service.core.settings import Settings
from service.inputs.caps import RANGES

from ..common import ADMIN, POST_ID, Json, error, obj


def schemas(s: Settings) -> Json:
    return {}


def paths(s: Settings) -> Json:
    caps = {"type": "object", "additionalProperties": False, "properties": {
        name: {"oneOf": [{"type": "integer", "minimum": lo, "maximum": hi}, {"type": "null"}]}
        for name, (lo, hi) in RANGES.items()}}
    shown = obj({"conversation_id": {"type": "string"},
                 **{name: {"oneOf": [{"type": "integer"}, {"type": "null"}]} for name in RANGES}})
    ok = {"description": "The conversation's caps (null: no cap).",
          "content": {"application/json": {"schema": shown}}}
    errors = {"400": error("Invalid body."), "401": error("No admin token, or a wrong one."),
              "403": error("The admin API is disabled (admin_token is not set)."),
              "404": error("No such post."),
              "503": error("The database is unavailable (`database_unavailable`) or the "
                           "service is shedding load (`overloaded`); see Retry-After.")}
    common = {"security": ADMIN, "parameters": [POST_ID]}
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
