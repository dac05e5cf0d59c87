"""How a reader finds where to read on: the cursors of a conversation view or of a page, by
kind. Pure (JSON in, (kind, path) out); loadtest/users.py spends them.

    more       the focal post's (or the page's) next replies
    sections   the low_quality and offensive sections ("show additional replies")
    nested     a reply's own cut replies, inside the tree
    ancestors  the middle of a long ancestor chain

Bounded: looks at most `max_nodes` nodes of the tree, keeps at most `limit` cursors.
"""
from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import quote

KINDS = ("more", "sections", "nested", "ancestors")


def _replies_path(focal: str, cursor: str) -> str:
    return f"/v1/conversations/{focal}/replies?cursor={quote(cursor, safe='')}"


def _replies_cursors(focal: str, replies: Any, kind_more: str) -> Iterator[tuple[str, str]]:
    if not isinstance(replies, dict):
        return
    more = replies.get("more")
    if isinstance(more, dict) and more.get("cursor"):
        yield kind_more, _replies_path(focal, more["cursor"])
    sections = replies.get("sections") or {}
    for name in ("low_quality", "offensive"):
        section = sections.get(name)
        if isinstance(section, dict) and section.get("cursor"):
            yield "sections", _replies_path(focal, section["cursor"])


def _nested(focal: str, items: Any, budget: list[int]) -> Iterator[tuple[str, str]]:
    for node in items or ():
        if budget[0] <= 0:
            return
        budget[0] -= 1
        replies = node.get("replies") if isinstance(node, dict) else None
        if isinstance(replies, dict):
            yield from _replies_cursors(focal, replies, "nested")
            yield from _nested(focal, replies.get("items"), budget)


def page_cursors(focal: str, page: Any, *, max_nodes: int = 100,
                 limit: int = 8) -> list[tuple[str, str]]:
    """The cursors of a `Replies` page (its own `more`, then nested ones)."""
    if not isinstance(page, dict):
        return []
    found = list(_replies_cursors(focal, page, "more"))
    found += _nested(focal, page.get("items"), [max_nodes])
    return found[:limit]


def view_cursors(view: Any, *, max_nodes: int = 100, limit: int = 8) -> list[tuple[str, str]]:
    """The cursors of a conversation view: ancestors, the focal post's more and sections,
    then nested ones."""
    if not isinstance(view, dict) or not isinstance(view.get("focal"), dict):
        return []
    focal = str(view.get("focal_id"))
    found: list[tuple[str, str]] = []
    ancestors = view.get("ancestors") or {}
    if isinstance(ancestors, dict) and ancestors.get("cursor"):
        found.append(("ancestors", f"/v1/conversations/{focal}/ancestors?cursor="
                                   f"{quote(ancestors['cursor'], safe='')}"))
    replies = view["focal"].get("replies")
    found += _replies_cursors(focal, replies, "more")
    if isinstance(replies, dict):
        found += _nested(focal, replies.get("items"), [max_nodes])
    return found[:limit]


def ancestors_cursor(focal: str, page: Any) -> list[tuple[str, str]]:
    """The next ancestors page of an ancestors page, if any."""
    cursor = page.get("cursor") if isinstance(page, dict) else None
    if not cursor:
        return []
    return [("ancestors", f"/v1/conversations/{focal}/ancestors?cursor={quote(cursor, safe='')}")]
