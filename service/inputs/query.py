"""Parsing and validating request input. Pure: raises ApiError(400) naming the problem."""
from __future__ import annotations

import re
from typing import Mapping

from storage.thread_queries import SORTS

from service.core.errors import bad_request
from service.core.settings import Settings
from service.pipeline.limits import ViewLimits

_DIGITS = re.compile(r"^[0-9]{1,19}$")
MAX_POST_ID = (1 << 63) - 1


def parse_post_id(raw: str, name: str = "post_id") -> int:
    if not _DIGITS.match(raw or "") or not 0 < int(raw) <= MAX_POST_ID:
        raise bad_request("invalid_id", f"{name} must be a positive 64-bit integer in decimal, "
                                        f"got {raw[:40]!r}")
    return int(raw)


def parse_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,9}", raw):
        raise bad_request("invalid_parameter", f"{name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise bad_request("invalid_parameter", f"{name} must be between {lo} and {hi}, got {value}")
    return value


def parse_sort(query: Mapping[str, str]) -> str:
    raw = query.get("sort", "ranked")
    if raw not in SORTS:
        raise bad_request("invalid_parameter",
                          f"sort must be one of {', '.join(SORTS)}, got {raw[:40]!r}")
    return raw


def reject_unknown(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise bad_request("invalid_parameter",
                          f"unknown query parameter(s): {', '.join(u[:40] for u in unknown)}; "
                          f"allowed: {', '.join(allowed)}")
    getall = getattr(query, "getall", None)  # multidict: ?depth=1&depth=2 is ambiguous
    for name in allowed if getall else ():
        if len(getall(name, [])) > 1:
            raise bad_request("invalid_parameter", f"{name} is given more than once")


CONVERSATION_PARAMS = ("depth", "branching", "max_nodes", "ancestors", "sort")


def parse_view_limits(query: Mapping[str, str], s: Settings) -> ViewLimits:
    reject_unknown(query, CONVERSATION_PARAMS)
    return ViewLimits(
        depth=parse_int(query, "depth", s.default_depth, 0, s.max_depth),
        branching=parse_int(query, "branching", s.default_branching, 1, s.max_branching),
        max_nodes=parse_int(query, "max_nodes", s.default_max_nodes, 1, s.max_max_nodes),
        ancestors=parse_int(query, "ancestors", s.default_ancestors, 1, s.max_ancestors),
        sort=parse_sort(query),
    )
