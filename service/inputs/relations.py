"""The viewer's relations and muted words (/v1/me): their kinds, and a muted word as given in
a body or a path. Pure: every problem is a 400 that names it."""
from __future__ import annotations

import re

from storage.relation_writes import normalize_muted_word

from service.core.errors import bad_request

KINDS = ("follows", "blocks", "mutes")
# At least one character that is neither a control character nor a space.
WORD_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
_WORD = re.compile(WORD_PATTERN.removeprefix("^").removesuffix("$"))


def parse_muted_word(raw: str, limit: int) -> str:
    """The word as stored (lower-cased, spaces trimmed); at most `limit` characters given."""
    if len(raw) > limit:
        raise bad_request("invalid_field", f"word must be at most {limit} characters")
    if not _WORD.fullmatch(raw):
        raise bad_request("invalid_field",
                          "word must have a character other than a space, and no control characters")
    return normalize_muted_word(raw)
