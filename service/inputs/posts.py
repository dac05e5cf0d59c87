"""The body of `POST /v1/posts`, checked. Pure: every problem is a 400 that names it.

The checks are the OpenAPI schema's (POST_TEXT_PATTERN, maxLength = max_post_length, the
post id pattern), so whatever the contract calls valid the server accepts, and the other way
round.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.core.errors import bad_request

from .query import parse_post_id

FIELDS = ("text", "in_reply_to_id", "quote_of_id")
# Any character but control characters (tab, line feed and carriage return are fine), and at
# least one that is not whitespace (Python's str.isspace(), as `\s` and str.strip() use it).
_ALLOWED = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_VISIBLE = r"[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
POST_TEXT_PATTERN = f"^{_ALLOWED}*{_VISIBLE}{_ALLOWED}*$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class NewPostInput:
    text: str
    in_reply_to_id: int | None
    quote_of_id: int | None


def parse_text(body: dict[str, Any], max_length: int) -> str:
    if "text" not in body:
        raise bad_request("invalid_field", "text is required")
    text = body["text"]
    if not isinstance(text, str):
        raise bad_request("invalid_field", "text must be a string")
    if len(text) > max_length:
        raise bad_request("invalid_text", f"text must be at most {max_length} characters, "
                                          f"got {len(text)}")
    if _CONTROL.search(text):
        raise bad_request("invalid_text", "text must not contain control characters (tab, "
                                          "line feed and carriage return are allowed)")
    if not text.strip():
        raise bad_request("invalid_text", "text must not be empty or only whitespace")
    return text


def _post_id(body: dict[str, Any], name: str) -> int | None:
    if name not in body:
        return None
    raw = body[name]
    if not isinstance(raw, str):
        raise bad_request("invalid_field", f"{name} must be a post id: a string of decimal digits")
    return parse_post_id(raw, name)


def parse_new_post(body: dict[str, Any], max_length: int) -> NewPostInput:
    """A JSON object whose fields are among FIELDS (service/inputs/bodies.json_object checked
    that)."""
    return NewPostInput(parse_text(body, max_length), _post_id(body, "in_reply_to_id"),
                        _post_id(body, "quote_of_id"))
