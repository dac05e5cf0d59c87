"""The Mastodon subset's shared contract: its entities as Arbor serves them
(service/pipeline/mastodon_entities.py), its Error (`{"error": "..."}`: every answer under
/api/ that is an error has it, service/http/mastodon.py), and use_mastodon_errors, which
points every error answer of an /api/ operation (429 and 403 `denied` included) at it.
"""
from __future__ import annotations

from service.core.settings import Settings

from ..common import ID, NULL, READ_HEADERS, Json, nullable, obj, optional, ref

ERROR = "MastodonError"
_ANY_ID = {"name": "status_id", "in": "path", "required": True,
           "description": "A status id; anything else is the uniform 404.",
           "schema": {"type": "string", "minLength": 1, "maxLength": 40,
                      "pattern": "^[A-Za-z0-9_-]+$"}}
STATUS_ID = _ANY_ID
ACCOUNT_ID = {**_ANY_ID, "name": "account_id",
              "description": "An account id; anything else is the uniform 404."}
VIEWER = [{"bearer": []}]
OPTIONAL_VIEWER = [{}, {"bearer": []}]
_QUOTE_STATES = ["pending", "accepted", "rejected", "revoked", "deleted", "unauthorized",
                 "blocked_account", "blocked_domain", "muted_account"]
CONTEXT_HEADERS = {
    **READ_HEADERS,
    "Link": {"description": "RFC 8288 links to the first `mastodon_context_max_links` "
                            "continuations of a cut view: `<…/context?ancestors_cursor=…>; "
                            "rel=\"up\"` for the ancestors' gap, `<…/context?replies_cursor=…>; "
                            "rel=\"replies\"; anchor=\"/api/v1/statuses/{id}\"; "
                            "section=\"normal|low_quality|offensive\"` for a reply list. "
                            "Absent when nothing was cut.",
             "schema": {"type": "string"}},
}


def error(description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": ref(ERROR)}}}


NOT_FOUND = error("`Record not found`: no such record, or not visible to the viewer (the "
                  "same bytes).")
BAD_TOKEN = error("The bearer token is not valid (or, where one is needed, missing).")
UNAVAILABLE = error("The database is unavailable or the service is shedding load; see "
                    "Retry-After.")


def ok(schema: str, description: str, headers: Json | None = None) -> Json:
    answer = {"description": description,
              "content": {"application/json": {"schema": ref(schema)}}}
    if headers:
        answer["headers"] = headers
    return answer


def schemas(s: Settings) -> Json:
    text = {"type": "string"}
    account = {
        "id": ID, "username": text, "acct": text, "display_name": text,
        "locked": {"type": "boolean"}, "bot": {"type": "boolean"},
        "discoverable": {"type": "boolean"}, "indexable": {"type": "boolean"},
        "group": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"},
        "note": text, "url": text, "uri": text, "avatar": text, "avatar_static": text,
        "header": text, "header_static": text,
        "followers_count": {"type": "integer", "minimum": 0},
        "following_count": {"type": "integer", "minimum": 0},
        "statuses_count": {"type": "integer", "minimum": 0}, "last_status_at": NULL,
        "hide_collections": {"type": "boolean"}, "noindex": {"type": "boolean"},
        "emojis": {"type": "array", "maxItems": 0}, "roles": {"type": "array", "maxItems": 0},
        "fields": {"type": "array", "maxItems": 0},
    }
    count = {"type": "integer", "minimum": 0}
    status = {
        "id": ID, "created_at": {"type": "string", "format": "date-time"},
        "in_reply_to_id": nullable(ID), "in_reply_to_account_id": nullable(ID),
        "sensitive": {"type": "boolean"}, "spoiler_text": text,
        "visibility": {"enum": ["public"]}, "language": NULL, "uri": text, "url": text,
        "replies_count": count, "reblogs_count": count, "favourites_count": count,
        "quotes_count": count, "edited_at": NULL,
        "content": {**text, "description": "The text as HTML: escaped, <p> and <br />."},
        "reblog": NULL, "account": ref("MastodonAccount"),
        "media_attachments": {"type": "array", "maxItems": 0},
        "mentions": {"type": "array", "maxItems": 0}, "tags": {"type": "array", "maxItems": 0},
        "emojis": {"type": "array", "maxItems": 0}, "card": NULL, "poll": NULL,
        "quote": {"oneOf": [ref("MastodonQuote"), ref("MastodonShallowQuote"), NULL]},
        "quote_approval": obj({"automatic": {"type": "array", "items": text},
                               "manual": {"type": "array", "items": text},
                               "current_user": {"enum": ["automatic", "manual", "denied",
                                                         "unknown"]}}),
    }
    viewer_state = {"favourited": {"type": "boolean"}, "reblogged": {"type": "boolean"},
                    "muted": {"type": "boolean"}, "bookmarked": {"type": "boolean"},
                    "filtered": {"type": "array", "maxItems": 0},
                    "text": {**text, "description": "Only in DELETE's answer: the source "
                                                    "text, for delete and redraft."}}
    return {
        ERROR: obj({"error": text}),
        "MastodonAccount": obj(account),
        "MastodonCredentialAccount": obj({
            **account,
            "source": obj({"privacy": {"enum": ["public"]}, "sensitive": {"type": "boolean"},
                           "language": NULL, "note": text,
                           "fields": {"type": "array", "maxItems": 0},
                           "follow_requests_count": count, "quote_policy": text}),
            "role": obj({"id": text, "name": text, "permissions": text, "color": text,
                         "highlighted": {"type": "boolean"}})}),
        "MastodonStatus": {**obj({**status, **viewer_state}), "required": list(status),
                           "description": "Mastodon's Status. `favourited`, `reblogged`, "
                                          "`muted`, `bookmarked`, `filtered`: for a signed-in "
                                          "viewer only."},
        "MastodonQuote": obj({"state": {"enum": _QUOTE_STATES},
                              "quoted_status": nullable(ref("MastodonStatus"))}),
        "MastodonShallowQuote": obj({"state": {"enum": _QUOTE_STATES},
                                     "quoted_status_id": nullable(ID)}),
        "MastodonCut": obj({
            "kind": {"enum": ["ancestors", "replies", "low_quality", "offensive"]},
            "status_id": ID, "count": count, "exact": {"type": "boolean"},
            "href": {"type": "string", "description": "This endpoint with the cut's cursor: "
                                                      "the next page of that list, a Context."}}),
        "MastodonContext": obj({
            "ancestors": {"type": "array", "items": ref("MastodonStatus"),
                          "description": "Root first (the root is always kept)."},
            "descendants": {"type": "array", "items": ref("MastodonStatus"),
                            "description": "Depth-first: a status, then its replies."},
            "more": {"type": "array", "items": ref("MastodonCut"),
                     "description": "Arbor's: every place the view was cut."},
            "partial": {"type": "boolean",
                        "description": "Arbor's: the time budget cut the expansion short."},
            "degraded": {"type": "array", "items": {"type": "string"},
                         "description": "Arbor's: what was skipped (stale, ranking, quotes)."}}),
        "MastodonInstanceV1": {**optional({"uri": text, "title": text, "version": text}),
                               "required": ["uri", "title", "version"],
                               "additionalProperties": True},
        "MastodonInstanceV2": {**optional({"domain": text, "title": text, "version": text,
                                           "api_versions": {"type": "object"}}),
                               "required": ["domain", "title", "version"],
                               "additionalProperties": True},
    }


_ERROR_REF = "#/components/schemas/Error"


def use_mastodon_errors(paths: Json) -> None:
    """Every error answer of an /api/ operation (those added for all operations, like 429 and
    the deny list's 403, included) has Mastodon's Error shape. Answers are shared between
    operations (rate_limits.py): each is replaced by a copy, never changed in place."""
    for path, operations in paths.items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation["responses"]
            for status, answer in list(responses.items()):
                content = answer.get("content", {})
                if status[0] in "45" and any(m.get("schema", {}).get("$ref") == _ERROR_REF
                                             for m in content.values()):
                    responses[status] = {**answer, "content": {
                        name: {**media, "schema": ref(ERROR)} for name, media in content.items()}}
