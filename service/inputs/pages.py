"""Ids and keyset pages of the /v1/me and /v1/admin endpoints. Pure: raises ApiError(400).

Each check here is the same as its schema in the OpenAPI document (ID_PATTERN and friends),
so whatever the contract calls valid the server accepts, and the other way round.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from service.core.errors import bad_request
from service.core.settings import Settings

from .bodies import TEXT_PATTERN
from .query import parse_int, reject_unknown

# A positive 64-bit id in decimal without leading zeros (ids from 9e18 up are centuries away).
ID_PATTERN = r"^([1-9][0-9]{0,17}|[1-8][0-9]{18})$"
_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))
_TEXT = re.compile(TEXT_PATTERN.removeprefix("^").removesuffix("$"))


# A token's id: the hex SHA-256 of the token (storage/account_tokens.py).
TOKEN_ID_PATTERN = r"^[0-9a-f]{64}$"
_TOKEN_ID = re.compile(TOKEN_ID_PATTERN.removeprefix("^").removesuffix("$"))


def parse_id(raw: str, name: str) -> int:
    if not _ID.fullmatch(raw or ""):
        raise bad_request("invalid_id", f"{name} must be a positive 64-bit integer in decimal, "
                                        f"got {raw[:40]!r}")
    return int(raw)


@dataclass(frozen=True)
class Page:
    limit: int
    after: int | str | None  # the last id (or word) of the previous page


def parse_account_page(query: Mapping[str, str], s: Settings) -> Page:
    reject_unknown(query, ("cursor", "limit"))
    raw = query.get("cursor")
    if raw is not None and not _ID.fullmatch(raw):
        raise bad_request("invalid_cursor", "cursor must be the cursor of a previous page")
    return Page(_limit(query, s), int(raw) if raw is not None else None)


def word_cursor_max(s: Settings) -> int:
    return 4 * s.max_muted_word_length  # lower-casing can lengthen a word


def parse_word_page(query: Mapping[str, str], s: Settings) -> Page:
    reject_unknown(query, ("cursor", "limit"))
    raw = query.get("cursor")
    if raw is not None and not (0 < len(raw) <= word_cursor_max(s) and _TEXT.fullmatch(raw)):
        raise bad_request("invalid_cursor", "cursor must be the cursor of a previous page")
    return Page(_limit(query, s), raw)


def _limit(query: Mapping[str, str], s: Settings) -> int:
    return parse_int(query, "limit", s.max_relations_page, 1, s.max_relations_page)


def parse_token_id(raw: str) -> bytes:
    """A token id of the admin API -> the token's hash."""
    if not _TOKEN_ID.fullmatch(raw):
        raise bad_request("invalid_id", "token_id must be 64 lower-case hex digits")
    return bytes.fromhex(raw)
