"""RFC 8288 `Link` headers for a page's next page: `<url>; rel="next"`, a relative URL.

Which cursor is "next" for each read (the shapes of DESIGN §4):
  a conversation: its focal post's replies (`focal.replies.more.cursor`), served by
      /v1/conversations/{id}/replies; the ancestors' cursor is `rel="prev"` (the page above);
  a replies page: `more.cursor`; an ancestors or quotes page, or a /v1/me list: `cursor`.
The other parameters of the request are kept (max_nodes, limit); the body keeps its cursors.
"""
from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import urlencode


def _url(path: str, query: Iterable[tuple[str, str]], cursor: str) -> str:
    params = [(k, v) for k, v in query if k != "cursor"] + [("cursor", cursor)]
    return f"{path}?{urlencode(params)}"


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def link_header(path: str, query: Iterable[tuple[str, str]], result: Any) -> str | None:
    """The Link header for a read's JSON result, or None when it has no next page."""
    if not isinstance(result, dict):
        return None
    query = list(query)
    links = []
    if "focal" in result:
        focal_id = result.get("focal_id")
        nxt = _get(result, "focal", "replies", "more", "cursor")
        if nxt and focal_id:
            keep = [(k, v) for k, v in query if k == "max_nodes"]
            links.append(f'<{_url(f"/v1/conversations/{focal_id}/replies", keep, nxt)}>; '
                         'rel="next"')
        prev = _get(result, "ancestors", "cursor")
        if prev and focal_id:
            links.append(f'<{_url(f"/v1/conversations/{focal_id}/ancestors", [], prev)}>; '
                         'rel="prev"')
    else:
        nxt = _get(result, "more", "cursor") if "more" in result else result.get("cursor")
        if isinstance(nxt, str) and nxt:
            links.append(f'<{_url(path, query, nxt)}>; rel="next"')
    return ", ".join(links) or None
