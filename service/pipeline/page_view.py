"""The HTML presenter's pure half: from the JSON a read renders (DESIGN §4) to what the page
templates (service/templates/) show, in words a reader understands.

The nodes (posts, tombstones, quote embeds, "show more" links) are written here as markup in
one pass over the body, and the templates put the page around them. Why not a Jinja loop or
macro per node: 300 nodes cost 8-13 ms through the template (attribute lookups and escaping
per output, ~30 µs a node on this 2-CPU machine), more than the JSON render it presents;
these f-strings cost ~3.5 µs a node (bench/page_render.py measures the page against the
JSON). Every value from the body is escaped (`_e`) before it touches markup.

Each "show more" link is a real URL following the API's cursor (`replies_url`,
`ancestors_url`), so it works without JavaScript and can be shared.
Cost: linear in the nodes of the body (at most max_nodes plus the ancestors shown), one pass.
No I/O, no aiohttp.
"""
from __future__ import annotations

from html import escape
from typing import Any, Iterable
from urllib.parse import quote, urlencode

from markupsafe import Markup

Json = dict[str, Any]
FOCAL = ' class="focal"'
_e = escape  # html.escape: & < > " ' (C string replaces; cheaper per call than markupsafe's)

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

# Said beside a section's link: why these replies are down here.
SECTION_HINT = {
    "low_quality": "ranked lower: possibly spam or low quality",
    "offensive": "hidden by default: flagged as possibly abusive",
}


def conversation_url(post_id: str, **query: Any) -> str:
    url = f"{PAGE_PREFIX}/{quote(str(post_id), safe='')}" if not str(post_id).isdigit() \
        else f"{PAGE_PREFIX}/{post_id}"
    query = {k: v for k, v in query.items() if v is not None}
    return f"{url}?{urlencode(query)}" if query else url


def replies_url(focal_id: str, cursor: str) -> str:
    return f"{PAGE_PREFIX}/{quote(str(focal_id), safe='')}/replies?{urlencode({'cursor': cursor})}"


def ancestors_url(focal_id: str, cursor: str) -> str:
    return (f"{PAGE_PREFIX}/{quote(str(focal_id), safe='')}/ancestors?"
            f"{urlencode({'cursor': cursor})}")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def when(created_at: Any) -> tuple[str, str]:
    """(machine-readable, readable) forms of a post's time: the API's UTC ISO 8601 time
    (`2024-03-01T10:00:00.123456Z`, or the datetime a render holds before it is written) as
    `2024-03-01 10:00 UTC`, by slicing (a parse or strftime per node would cost more than
    the node's markup). Not user text: safe in markup (digits, `-`, `:`, `.`, `T`, `Z`)."""
    if not created_at:
        return "", ""
    if not isinstance(created_at, str):
        created_at = created_at.isoformat().replace("+00:00", "Z")
    if len(created_at) >= 16 and created_at[10] == "T" and created_at.endswith("Z"):
        return created_at, f"{created_at[:10]} {created_at[11:16]} UTC"
    return _e(created_at), _e(created_at)


def counts_text(counts: Json) -> str:
    """Numbers only (no user text): safe in markup as they are. One f-string: this runs per
    node."""
    r, k = int(counts.get("replies", 0)), int(counts.get("likes", 0))
    p, q = int(counts.get("reposts", 0)), int(counts.get("quotes", 0))
    return (f"{r:,} {'reply' if r == 1 else 'replies'} · {k:,} {'like' if k == 1 else 'likes'}"
            f" · {p:,} {'repost' if p == 1 else 'reposts'} · {q:,} "
            f"{'quote' if q == 1 else 'quotes'}")


class _Walk:
    """One pass over a body, writing the markup of its nodes straight from the JSON (no
    intermediate objects: the page must cost about what the JSON render does), and noting
    whether any quote embed is temporarily unavailable (a continuation page has no
    `degraded` member of its own).

    Safety by construction: every value taken from the body goes through `_e` (html.escape,
    quotes included) before it touches markup, and every attribute is double-quoted."""

    def __init__(self, focal_id: str):
        self.focal_id = focal_id
        self.quotes_failed = False
        self.out: list[str] = []

    def quote(self, q: Json) -> None:
        state = q.get("state")
        if state == "temporarily_unavailable":
            self.quotes_failed = True
        post = q.get("post")
        if state == "ok" and post:
            a, href = post["author"], conversation_url(post["id"])
            stamp, readable = when(post.get("created_at"))
            inner = post.get("quote")
            inner = (f'<p class="quote gone">'
                     f'{_e(QUOTE_TEXT.get(inner["state"], "A quoted post."))}</p>'
                     if inner is not None else "")
            self.out.append(
                f'<blockquote class="quote" cite="{_e(href)}"><div class="h">'
                f'<bdi class="n">{_e(a["display_name"])}</bdi> <bdi>@{_e(a["handle"])}</bdi>'
                f'</div><p class="t" dir="auto">{_e(post["text"])}</p>{inner}'
                f'<p class="m"><a href="{_e(href)}">Quoted post, <time datetime="{stamp}">'
                f'{readable}</time></a></p></blockquote>')
        else:
            text = QUOTE_TEXT.get(state, "The quoted post is unavailable.")
            self.out.append(f'<p class="quote gone" data-quote-id="{_e(str(q.get("id")))}">'
                            f'{_e(text)}</p>')

    def node(self, node: Json, focal: bool = False) -> None:
        """A node's `<li>` and article; its replies are the caller's, then `</li>`."""
        node_id = node["id"]
        node_id = node_id if node_id.isdigit() else _e(node_id)
        if node.get("type") != "post":
            text = TOMBSTONE_TEXT.get(node.get("reason"), TOMBSTONE_TEXT["deleted"])
            self.out.append(f'<li><article id="p{node_id}" class="tombstone"><p>{text}</p>'
                            f'</article>')
            return
        a = node["author"]
        stamp, readable = when(node.get("created_at"))
        self.out.append(
            f'<li><article id="p{node_id}"{FOCAL if focal else ""}><div class="h"><bdi class="n">'
            f'{_e(a["display_name"])}</bdi> <bdi>@{_e(a["handle"])}</bdi></div>'
            f'<p class="t" dir="auto">{_e(node["text"])}</p>')
        if node.get("quote") is not None:
            self.quote(node["quote"])
        self.out.append(
            f'<p class="m"><a href="{PAGE_PREFIX}/{node_id}"><time datetime="{stamp}">'
            f'{readable}</time></a> <span>{counts_text(node.get("counts") or {})}</span></p>'
            f'</article>')

    def more(self, href: str, text: str, kind: str) -> None:
        hint = SECTION_HINT.get(kind)
        hint = f' <span class="hint">({hint})</span>' if hint else ""
        self.out.append(f'<li class="more {kind}"><a href="{_e(href)}" data-more>{_e(text)}'
                        f'</a>{hint}</li>\n')

    def replies(self, replies: Json | None, *, own_list: bool = True) -> None:
        if not replies:
            return
        out = self.out
        if own_list:
            out.append('<ol class="replies">\n')
        for item in replies.get("items") or ():
            self.node(item)
            if item.get("replies"):
                self.replies(item["replies"])
            out.append("</li>")
        more = replies.get("more")
        if more:
            count = more.get("count", 0)
            text = (f"Show {plural(count, 'more reply', 'more replies')}"
                    if more.get("exact", True) else
                    f"Show up to {plural(count, 'more reply', 'more replies')}")
            self.more(replies_url(self.focal_id, more["cursor"]), text, "more")
        sections = replies.get("sections") or {}
        for name in ("low_quality", "offensive"):
            ref = sections.get(name)
            if ref:
                self.more(replies_url(self.focal_id, ref["cursor"]),
                          f"{SECTION_TEXT[name]} (up to {ref['count']:,})", name)
        if own_list:
            out.append("</ol>\n")

    def markup(self) -> Markup:
        html, self.out = "".join(self.out), []
        return Markup(html)


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
    """The conversation page: ancestors (root first, the gap as a link under the root), the
    focal post, its replies (markup), and the banners."""
    focal_id = body["focal_id"]
    walk = _Walk(focal_id)
    anc = body.get("ancestors") or {}
    for i, item in enumerate(anc.get("items") or ()):
        walk.node(item)
        walk.out.append("</li>")
        if i == 0 and anc.get("omitted") and anc.get("cursor"):
            walk.more(ancestors_url(focal_id, anc["cursor"]),
                      f"Show {plural(anc['omitted'], 'more post')} in between", "ancestors")
    ancestors = walk.markup()
    focal = body["focal"]
    walk.node(focal, focal=True)
    walk.out.append("</li>")
    focal_html = walk.markup()
    walk.replies(focal.get("replies"), own_list=False)
    replies = walk.markup()
    degraded = list(body.get("degraded") or ())
    if walk.quotes_failed and "quotes" not in degraded:
        degraded.append("quotes")
    if headers.get("Arbor-Degraded") == "stale" and "stale" not in degraded:
        degraded.append("stale")
    return {"focal_id": focal_id, "ancestors": ancestors, "focal": focal_html,
            "author": focal["author"], "text": focal["text"], "replies": replies,
            "reply_count": (focal.get("counts") or {}).get("replies", 0),
            "banners": banners(degraded, bool(body.get("partial")), headers.get("Age"))}


def replies_page_view(focal_id: str, body: Json, headers: dict[str, str]) -> Json:
    """A continuation page (`Replies`): its items with their subtrees, and its next link."""
    walk = _Walk(focal_id)
    walk.replies(body, own_list=False)
    return {"focal_id": focal_id, "rows": walk.markup(), "banners": _page_banners(walk, headers)}


def ancestors_page_view(focal_id: str, body: Json, headers: dict[str, str]) -> Json:
    """A page of the ancestors' gap: the link further up first (the gap is above), then the
    page's posts, root-side first."""
    walk = _Walk(focal_id)
    if body.get("cursor") and body.get("omitted"):
        walk.more(ancestors_url(focal_id, body["cursor"]),
                  f"Show {plural(body['omitted'], 'more post')} in between", "ancestors")
    for item in body.get("items") or ():
        walk.node(item)
        walk.out.append("</li>")
    return {"focal_id": focal_id, "rows": walk.markup(), "banners": _page_banners(walk, headers)}


def _page_banners(walk: _Walk, headers: dict[str, str]) -> list[str]:
    degraded = ["quotes"] if walk.quotes_failed else []
    if headers.get("Arbor-Degraded") == "stale":
        degraded.append("stale")
    return banners(degraded, False, headers.get("Age"))
