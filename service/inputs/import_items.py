"""Validating posts for import (admin bulk endpoint and `arbor import`). Pure: no I/O.

An item: {"id", "author_id", "text", "created_at", "in_reply_to_id"?, "quote_of_id"?,
"deleted_at"?}; ids are positive 64-bit integers (strings or numbers), times RFC 3339 with
an offset. A bad item is reported by index and the others are still imported.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.ingestion import ImportedPost

from .query import MAX_POST_ID

FIELDS = ("id", "author_id", "text", "created_at", "in_reply_to_id", "quote_of_id", "deleted_at")
REQUIRED = ("id", "author_id", "text", "created_at")


class ItemError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _id(item: dict[str, Any], name: str) -> int | None:
    raw = item.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ItemError("invalid_id", f"{name} must be a decimal id string")
    text = str(raw)
    if not text.isdigit() or not 0 < int(text) <= MAX_POST_ID:
        raise ItemError("invalid_id", f"{name} must be a positive 64-bit integer, got {text[:30]!r}")
    return int(text)


def _time(item: dict[str, Any], name: str) -> datetime | None:
    raw = item.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ItemError("invalid_time", f"{name} must be an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ItemError("invalid_time", f"{name} needs a UTC offset (e.g. Z)")
    return value


def parse_item(item: Any, max_text: int) -> ImportedPost:
    if not isinstance(item, dict):
        raise ItemError("invalid_item", "each item must be a JSON object")
    unknown = sorted(set(item) - set(FIELDS))
    if unknown:
        raise ItemError("invalid_item", f"unknown field(s): {', '.join(unknown)[:200]}")
    missing = [name for name in REQUIRED if item.get(name) is None]
    if missing:
        raise ItemError("invalid_item", f"missing field(s): {', '.join(missing)}")
    text = item["text"]
    if not isinstance(text, str) or len(text) > max_text:
        raise ItemError("invalid_text", f"text must be a string of at most {max_text} characters")
    post = ImportedPost(_id(item, "id"), _id(item, "author_id"), text, _time(item, "created_at"),
                        _id(item, "in_reply_to_id"), _id(item, "quote_of_id"),
                        _time(item, "deleted_at"))
    if post.in_reply_to_id == post.id or post.quote_of_id == post.id:
        raise ItemError("invalid_item", "a post cannot reply to or quote itself")
    return post
