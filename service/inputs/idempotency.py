"""The `Idempotency-Key` request header of writes (service/http/idempotency.py runs the
write once per key) and the header that marks a replayed answer. Pure."""
from __future__ import annotations

import re

from service.core.errors import bad_request

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# 1-200 printable ASCII characters, not starting or ending with a space (HTTP would trim it).
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]{0,198}[\x21-\x7e])?$"
_KEY = re.compile(KEY_PATTERN.removeprefix("^").removesuffix("$"))


def parse_key(values: list[str]) -> str | None:
    """The header's values -> the key, None without one; 400 when malformed or repeated."""
    if not values:
        return None
    if len(values) > 1 or not _KEY.fullmatch(values[0]):
        raise bad_request("invalid_idempotency_key",
                          "Idempotency-Key must be given once, as 1-200 printable ASCII "
                          "characters (no leading or trailing space)")
    return values[0]
