"""Walking rendered JSON: collect nodes, follow every cursor."""
from __future__ import annotations

from typing import Any, Iterator

Json = dict[str, Any]


def iter_nodes(replies: Json | None) -> Iterator[Json]:
    """Every node in a Replies object, depth first."""
    if not replies:
        return
    for item in replies["items"]:
        yield item
        yield from iter_nodes(item.get("replies"))


def cursors_in(replies: Json | None) -> Iterator[str]:
    """Every continuation cursor (more and sections) in a Replies object and below."""
    if not replies:
        return
    if replies.get("more"):
        yield replies["more"]["cursor"]
    for ref in (replies.get("sections") or {}).values():
        if ref:
            yield ref["cursor"]
    for item in replies["items"]:
        yield from cursors_in(item.get("replies"))


async def collect_all_replies(client, focal_id: int, first: Json, *, between=None,
                              max_pages: int = 10_000) -> list[str]:
    """Ids of every node reached from a conversation view by following every cursor
    (breadth first). `between` is awaited before each page request."""
    seen = [n["id"] for n in iter_nodes(first["focal"]["replies"])]
    queue = list(cursors_in(first["focal"]["replies"]))
    pages = 0
    while queue:
        pages += 1
        assert pages <= max_pages, "cursor chain does not end"
        if between is not None:
            await between()
        resp = await client.get(f"/v1/conversations/{focal_id}/replies",
                                params={"cursor": queue.pop(0)})
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        seen.extend(n["id"] for n in iter_nodes(page))
        queue.extend(cursors_in(page))
    return seen
