"""The view limits a conversation request asks for, and the caps an SRE set on a conversation
(storage/rows.Caps) that bound them."""
from __future__ import annotations

from dataclasses import dataclass, replace

from storage.rows import Caps


@dataclass(frozen=True, kw_only=True)
class ViewLimits:
    """What a conversation view asks for (service/inputs/query.parse_view_limits)."""
    depth: int
    branching: int
    max_nodes: int
    ancestors: int
    sort: str


def capped(limits: ViewLimits, caps: Caps) -> ViewLimits:
    """The view limits within the conversation's caps (set by SREs for a viral post): a
    request asking for more gets the cap, and cursors reach the rest."""
    def cap(value: int, limit: int | None) -> int:
        return value if limit is None else min(value, limit)
    return replace(limits, depth=cap(limits.depth, caps.depth),
                   branching=cap(limits.branching, caps.branching),
                   max_nodes=cap(limits.max_nodes, caps.max_nodes),
                   ancestors=cap(limits.ancestors, caps.ancestors))
