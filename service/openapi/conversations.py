"""The contract of /v1/conversations/{post_id} and its /replies and /ancestors pages
(service/api/conversations.py): the conversation's schemas (DESIGN §4) and its view limits,
whose bounds are the settings'."""
from __future__ import annotations

from service.core.settings import Settings

from .common import (CURSOR, ID, OPTIONAL_VIEWER, POST_ID, THREAD_ERRORS, Json, int_param,
                     nullable, obj, ok, ref, view_params)


def schemas(s: Settings) -> Json:
    section_ref = obj({
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
        "Author": obj({"id": ID, "handle": {"type": "string"}, "display_name": {"type": "string"}}),
        "Counts": obj({k: {"type": "integer", "minimum": 0}
                       for k in ("replies", "likes", "reposts", "quotes")}),
        "Post": obj({
            "type": {"const": "post"}, "id": ID, "conversation_id": ID,
            "in_reply_to_id": nullable(ID), "author": ref("Author"), "text": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"}, "counts": ref("Counts"),
            "liked": {"type": "boolean", "description": "The viewer likes this post (false for "
                                                        "an anonymous viewer)."},
            "reposted": {"type": "boolean", "description": "The viewer reposted this post."},
            "quote": nullable(ref("Quote")), "replies": nullable(ref("Replies"))}),
        "Tombstone": obj({
            "type": {"const": "tombstone"}, "id": ID,
            "reason": {"enum": ["deleted", "unavailable", "blocked", "muted"]},
            "replies": nullable(ref("Replies"))}),
        "Node": {"oneOf": [ref("Post"), ref("Tombstone")]},
        "Quote": obj({
            "state": {"enum": ["ok", "deleted", "unavailable", "blocked", "temporarily_unavailable"]},
            "id": ID, "post": nullable(ref("Post"))}),
        "SectionRef": section_ref,
        "Replies": obj({
            "items": {"type": "array", "items": ref("Node")},
            "more": nullable(ref("SectionRef")),
            "sections": obj({"low_quality": nullable(ref("SectionRef")),
                             "offensive": nullable(ref("SectionRef"))})}),
        "Ancestors": obj({
            "items": {"type": "array", "items": ref("Node")},
            "omitted": {"type": "integer", "minimum": 0},
            "cursor": nullable({"type": "string"})}),
        "Conversation": obj({
            "focal_id": ID, "ancestors": ref("Ancestors"), "focal": ref("Post"),
            "degraded": {"type": "array", "items": {"type": "string"}},
            "partial": {"type": "boolean"}}),
    }


def paths(s: Settings) -> Json:
    conversation_params = view_params(s, "Most reply nodes in the response.")
    return {
        "/v1/conversations/{post_id}": {"get": {
            "operationId": "getConversation", "security": OPTIONAL_VIEWER, "summary": "A conversation around a post.",
            "parameters": conversation_params,
            "responses": {"200": ok("Conversation", "The conversation."), **THREAD_ERRORS}}},
        "/v1/conversations/{post_id}/replies": {"get": {
            "operationId": "getReplies", "security": OPTIONAL_VIEWER,
            "summary": "The next page of a node's replies, or of one of its sections.",
            "parameters": [POST_ID, CURSOR,
                           int_param("max_nodes", 1, s.max_max_nodes, s.default_max_nodes,
                                     "Most reply nodes in the response.")],
            "responses": {"200": ok("Replies", "A page of replies."), **THREAD_ERRORS}}},
        "/v1/conversations/{post_id}/ancestors": {"get": {
            "operationId": "getAncestors", "security": OPTIONAL_VIEWER,
            "summary": "Ancestors omitted from a conversation view, nearest to the root first.",
            "parameters": [POST_ID, CURSOR],
            "responses": {"200": ok("Ancestors", "A page of ancestors."), **THREAD_ERRORS}}},
    }
