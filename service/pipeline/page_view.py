"""The HTML presenter's pure half: from the JSON a read renders (DESIGN §4) to what the page
templates (service/templates/) show, in words a reader understands.

A tree becomes a flat list of rows (`(kind, value)`), so the template is one loop instead of
a recursive macro (a macro call per node costs several times the node's own markup):
  OPEN / CLOSE        a list of replies begins / ends (`<ol>` / `</ol>`)
  NODE, view          a post or tombstone begins (`<li><article>…</article>`); its replies,
                      if any, follow as a nested OPEN … CLOSE
  END                 the node's `</li>`
  MORE, link          a "show more" link: a real URL following the API's cursor, so it works
                      without JavaScript and can be shared
Cost: linear in the nodes of the body (at most max_nodes plus the ancestors shown), one pass.
No I/O, no aiohttp: URLs are built from the focal id and the cursors the body carries.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable
from urllib.parse import quote, urlencode

Json = dict[str, Any]
OPEN, CLOSE, NODE, END, MORE = "open", "close", "node", "end", "more"

PAGE_PREFIX = "/conversations"  # the pages mirror the API's /v1/conversations URLs

TOMBSTONE_TEXT = {
    "deleted": "This post was deleted.",
    "unavailable": "This post is unavailable.",
    "blocked": "This post is hidden because of a block between you and its author.",
    "muted": "This post is hidden by your mutes.",
}
QUOTE_TEXT = {
    "deleted": "The quoted post was deleted.",
    "unavailable": "The quoted post is unavailable.",
    "blocked": "The quoted post is hidden because of a block between you and its author.",
    "muted": "The quoted post is hidden by your mutes.",
    "temporarily_unavailable": "The quoted post could not be loaded right now. "
                               "Reload the page in a moment to see it.",
}
# What each entry of `degraded` (and `partial`) means to a reader; the banner's words.
DEGRADED_TEXT = {
    "stale": "Arbor cannot reach its database right now, so this is a saved copy{age}. "
             "Newer replies and recent changes may be missing.",
    "ranking": "Ranking is unavailable right now, so replies are shown in the order they "
               "were posted instead of best first.",
    "quotes": "Quoted posts could not be loaded right now; they are shown as unavailable "
              "for the moment.",
    "partial": "This conversation took too long to put together, so only part of it is "
               "shown. Use the \u201cshow more\u201d links to load the rest.",
}
SECTION_TEXT = {
    "low_quality": "Show more replies",
    "offensive": "Show additional replies, including those that may contain offensive content",
}


def conversation_url(post_id: str, **query: Any) -> str:
    url = f"{PAGE_PREFIX}/{quote(str(post_id), safe='')}"
    query = {k: v for k, v in query.items() if v is not None}
    return f"{url}?{urlencode(query)}" if query else url


def replies_url(focal_id: str, cursor: str) -> str:
    return f"{PAGE_PREFIX}/{quote(str(focal_id), safe='')}/replies?{urlencode({'cursor': cursor})}"


def ancestors_url(focal_id: str, cursor: str) -> str:
    return (f"{PAGE_PREFIX}/{quote(str(focal_id), safe='')}/ancestors?"
            f"{urlencode({'cursor': cursor})}")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def when(created_at: str | None) -> tuple[str, str]:
    """(machine-readable, readable) forms of a post's time."""
    if not created_at:
        return "", ""
    try:
        t = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return created_at, created_at
    return created_at, t.strftime("%d %b %Y, %H:%M UTC")


def counts_text(counts: Json) -> str:
    return " · ".join((plural(counts.get("replies", 0), "reply", "replies"),
                       plural(counts.get("likes", 0), "like"),
                       plural(counts.get("reposts", 0), "repost"),
                       plural(counts.get("quotes", 0), "quote")))


class _Walk:
    """One pass over a body: rows, and whether any quote embed is temporarily unavailable
    (a continuation page has no `degraded` member of its own)."""

    def __init__(self, focal_id: str):
        self.focal_id = focal_id
        self.quotes_failed = False

    def quote(self, q: Json | None) -> Json | None:
        if q is None:
            return None
        state = q.get("state")
        if state == "temporarily_unavailable":
            self.quotes_failed = True
        post = q.get("post")
        if state == "ok" and post:
            stamp, readable = when(post.get("created_at"))
            return {"ok": True, "id": post["id"], "href": conversation_url(post["id"]),
                    "author": post["author"], "text": post["text"], "time": stamp,
                    "time_text": readable,
                    # a quote inside a quote: its state only (embeds are one level deep)
                    "inner": None if post.get("quote") is None else
                    QUOTE_TEXT.get(post["quote"]["state"], "A quoted post.")}
        return {"ok": False, "id": q.get("id"),
                "text": QUOTE_TEXT.get(state, "The quoted post is unavailable.")}

    def node(self, node: Json, focal: bool = False) -> Json:
        if node.get("type") != "post":
            return {"post": False, "id": node["id"],
                    "text": TOMBSTONE_TEXT.get(node.get("reason"), TOMBSTONE_TEXT["deleted"])}
        stamp, readable = when(node.get("created_at"))
        return {"post": True, "id": node["id"], "focal": focal or node["id"] == self.focal_id,
                "href": conversation_url(node["id"]), "author": node["author"],
                "text": node["text"], "time": stamp, "time_text": readable,
                "counts": counts_text(node.get("counts") or {}),
                "quote": self.quote(node.get("quote"))}

    def replies(self, replies: Json | None, rows: list, *, own_list: bool = True) -> None:
        if not replies:
            return
        if own_list:
            rows.append((OPEN, None))
        for item in replies.get("items") or ():
            rows.append((NODE, self.node(item)))
            self.replies(item.get("replies"), rows)
            rows.append((END, None))
        more = replies.get("more")
        if more:
            count = more.get("count", 0)
            exact = more.get("exact", True)
            text = (f"Show {plural(count, 'more reply', 'more replies')}" if exact else
                    f"Show more replies (up to {count:,})")
            rows.append((MORE, {"href": replies_url(self.focal_id, more["cursor"]), "text": text,
                                "kind": "more"}))
        for name in ("low_quality", "offensive"):
            ref = (replies.get("sections") or {}).get(name)
            if ref:
                rows.append((MORE, {"href": replies_url(self.focal_id, ref["cursor"]),
                                    "text": f"{SECTION_TEXT[name]} (up to {ref['count']:,})",
                                    "kind": name}))
        if own_list:
            rows.append((CLOSE, None))


def banners(degraded: Iterable[str], partial: bool, age_s: str | None = None) -> list[str]:
    """The degraded banner's sentences, one per degraded part, in a fixed order."""
    found = set(degraded)
    if partial:
        found.add("partial")
    age = f" from {plural(int(age_s), 'second')} ago" if age_s and age_s.isdigit() else ""
    out = []
    for name in ("stale", "partial", "ranking", "quotes"):
        if name in found:
            out.append(DEGRADED_TEXT[name].format(age=age))
    for name in sorted(found - set(DEGRADED_TEXT)):  # a new part the words do not know yet
        out.append(f"Part of this answer is degraded: {name}.")
    return out


def conversation_view(body: Json, headers: dict[str, str]) -> Json:
    """The conversation page: ancestors (root first, the gap as a link), the focal post,
    its replies, and the banners."""
    focal_id = body["focal_id"]
    walk = _Walk(focal_id)
    ancestors: list = []
    anc = body.get("ancestors") or {}
    items = anc.get("items") or []
    for i, item in enumerate(items):
        ancestors.append((NODE, walk.node(item)))
        ancestors.append((END, None))
        if i == 0 and anc.get("omitted") and anc.get("cursor"):
            # the root is always kept: the gap is right under it
            ancestors.append((MORE, {"href": ancestors_url(focal_id, anc["cursor"]),
                                     "text": f"Show {plural(anc['omitted'], 'more post')} "
                                             "in between", "kind": "ancestors"}))
    focal = body["focal"]
    replies: list = []
    walk.replies(focal.get("replies"), replies, own_list=False)
    degraded = list(body.get("degraded") or ())
    if walk.quotes_failed and "quotes" not in degraded:
        degraded.append("quotes")
    if headers.get("Arbor-Degraded") == "stale" and "stale" not in degraded:
        degraded.append("stale")
    return {"focal_id": focal_id, "ancestors": ancestors, "focal": walk.node(focal, True),
            "replies": replies, "reply_count": (focal.get("counts") or {}).get("replies", 0),
            "banners": banners(degraded, bool(body.get("partial")), headers.get("Age"))}


def replies_page_view(focal_id: str, body: Json, headers: dict[str, str]) -> Json:
    """A continuation page (`Replies`): its items with their subtrees, and its next link."""
    walk = _Walk(focal_id)
    rows: list = []
    walk.replies(body, rows, own_list=False)
    return {"focal_id": focal_id, "rows": rows, "banners": _page_banners(walk, headers)}


def ancestors_page_view(focal_id: str, body: Json, headers: dict[str, str]) -> Json:
    """A page of the ancestors' gap: the link further up first (the gap is above), then the
    page's posts, root-side first."""
    walk = _Walk(focal_id)
    rows: list = []
    if body.get("cursor") and body.get("omitted"):
        rows.append((MORE, {"href": ancestors_url(focal_id, body["cursor"]),
                            "text": f"Show {plural(body['omitted'], 'more post')} in between",
                            "kind": "ancestors"}))
    for item in body.get("items") or ():
        rows.append((NODE, walk.node(item)))
        rows.append((END, None))
    return {"focal_id": focal_id, "rows": rows, "banners": _page_banners(walk, headers)}


def _page_banners(walk: _Walk, headers: dict[str, str]) -> list[str]:
    degraded = ["quotes"] if walk.quotes_failed else []
    if headers.get("Arbor-Degraded") == "stale":
        degraded.append("stale")
    return banners(degraded, False, headers.get("Age"))
