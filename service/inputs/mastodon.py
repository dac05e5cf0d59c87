"""The Mastodon API's input: status ids in paths, `POST /api/v1/statuses` parameters (a form,
as Mastodon.py sends them, or JSON), and the context's query. Pure.

As Mastodon does: an id that is not a status id is a 404 (`Record not found`, the same as a
missing status), a parameter Arbor does not know is ignored, and a status that cannot be
posted is a 422 `Validation failed: ...`. What Arbor cannot honour is refused rather than
silently dropped: media, polls, scheduling, content warnings, and any visibility but public
(`unlisted` is the same here: Arbor has no public timelines to leave a post out of).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from service.core.errors import ApiError, bad_request, not_found

from .posts import NewPostInput, parse_text
from .query import parse_post_id

STATUS_PARAMS = ("status", "in_reply_to_id", "quoted_status_id", "visibility", "sensitive",
                 "spoiler_text", "language", "media_ids", "poll", "scheduled_at",
                 "quote_approval_policy", "content_type")
VISIBILITIES = ("public", "unlisted")
_REFUSED_VISIBILITIES = ("private", "direct")
CONTEXT_CURSORS = ("replies_cursor", "ancestors_cursor")
_BOOLEANS = ("true", "false", "1", "0")  # as a form sends them


def invalid(message: str) -> ApiError:
    return ApiError(422, "validation_failed", f"Validation failed: {message}")


def status_id(raw: str) -> int:
    """A status id from a path: anything else is the uniform 404."""
    try:
        return parse_post_id(raw)
    except ApiError:
        raise not_found() from None


@dataclass(frozen=True)
class NewStatus:
    post: NewPostInput

    def canonical(self) -> dict[str, Any]:
        """What the Idempotency-Key remembers of the request (form and JSON alike)."""
        return {"status": self.post.text, "in_reply_to_id": self.post.in_reply_to_id,
                "quoted_status_id": self.post.quote_of_id}


def _scalar(params: Mapping[str, Any], name: str) -> Any:
    getall = getattr(params, "getall", None)
    if getall is not None:
        values = getall(name, [])
        if len(values) > 1:
            raise invalid(f"{name} is given more than once")
        return values[0] if values else None
    return params.get(name)


def _reply_id(params: Mapping[str, Any], name: str) -> int | None:
    raw = _scalar(params, name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise invalid(f"{name} must be a status id")
    # a well-formed id of no status and a malformed one: both "not found", as Mastodon answers
    return status_id(str(raw))


def parse_new_status(params: Mapping[str, Any], max_length: int) -> NewStatus:
    """`params`: the form (a MultiDict) or the JSON object of the request."""
    raw_text = _scalar(params, "status")
    if raw_text is None:
        raise invalid("Text can't be blank")
    if not isinstance(raw_text, str):
        raise invalid("status must be a string")
    try:
        text = parse_text({"text": raw_text}, max_length)
    except ApiError as e:
        raise invalid(e.message) from None
    visibility = _scalar(params, "visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        if visibility in _REFUSED_VISIBILITIES:
            raise invalid(f"Arbor has only public posts; visibility {visibility} is not "
                          "supported")
        raise invalid("visibility must be one of public, unlisted, private, direct")
    if _scalar(params, "spoiler_text"):
        raise invalid("Arbor does not support content warnings (spoiler_text)")
    media = params.getall("media_ids[]", []) if hasattr(params, "getall") else []
    if media or _scalar(params, "media_ids"):
        raise invalid("Arbor does not support media attachments")
    if _scalar(params, "poll") is not None or any(
            str(k).startswith("poll[") for k in params.keys()):
        raise invalid("Arbor does not support polls")
    if _scalar(params, "scheduled_at"):
        raise invalid("Arbor does not support scheduled statuses")
    # ignored, but only when well-formed (the contract says what they may be)
    sensitive = _scalar(params, "sensitive")
    if sensitive is not None and not isinstance(sensitive, bool) and sensitive not in _BOOLEANS:
        raise invalid("sensitive must be true or false")
    language = _scalar(params, "language")
    if language is not None and not (isinstance(language, str) and len(language) <= 16):
        raise invalid("language must be a language code of at most 16 characters")
    policy = _scalar(params, "quote_approval_policy")
    if policy not in (None, "public"):
        raise invalid("Arbor lets anyone quote a post: quote_approval_policy must be public")
    return NewStatus(NewPostInput(text, _reply_id(params, "in_reply_to_id"),
                                  _reply_id(params, "quoted_status_id")))


def json_params(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as e:
        raise bad_request("invalid_json", f"the body is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "the body must be a JSON object")
    return body
