"""Mastodon's entities (Status, Account, Context, Instance) from what Arbor's own pipeline
rendered: a presenter over the JSON of service/pipeline/conversation.py, so the Mastodon API
shows exactly what /v1/conversations shows, with the same visibility rules, the same bounds
and the same cursors. Pure: no I/O; the accounts shown come in as rows.

Where Arbor and Mastodon differ (README, "Mastodon-compatible API"):
- A hidden post (deleted, unavailable, blocked, muted: an Arbor tombstone) is left out of
  `ancestors` and `descendants`, but its replies stay, in place, with `in_reply_to_id`
  naming it (Mastodon drops them). `in_reply_to_account_id` is null whenever the status
  replied to is not shown in the same response (a hidden author is never named).
- `descendants` is Arbor's bounded tree flattened depth-first (pre-order: a status, then its
  replies), in Arbor's order within each list (`sort=ranked` unless asked otherwise); replies
  ranked into the low-quality and offensive sections are not in it, but reachable.
- Where the view was cut, `more` lists every continuation (a link to the same context
  endpoint with the cut's cursor), and the Link header the first `mastodon_context_max_links`
  of them. `partial` and `degraded` say what Arbor's own responses say.

Cost: linear in the nodes of the view (bounded by max_nodes + ancestors).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from storage.rows import AccountRow

Json = dict[str, Any]

# What Mastodon.py (and other clients) parse the version from: "X.Y.Z" before the first space.
MASTODON_VERSION = "4.5.0"
# A 1x1 transparent GIF: Arbor has no images, and clients put these in <img src>.
NO_IMAGE = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
CONTEXT_PATH = "/api/v1/statuses/{id}/context"

# Arbor's quote states (presenters.quote_json) -> Mastodon 4.5's Quote.state. An embed that
# could not be loaded just now is accepted with no quoted_status (and `degraded: ["quotes"]`).
QUOTE_STATES = {"ok": "accepted", "deleted": "deleted", "unavailable": "unauthorized",
                "blocked": "blocked_account", "muted": "muted_account",
                "temporarily_unavailable": "accepted"}
# Arbor's reply sections -> the Link relation's `section` parameter.
SECTIONS = ("normal", "low_quality", "offensive")


@dataclass(frozen=True, kw_only=True)
class Site:
    """What the entities' URLs start with (a setting, never the request's Host header: bodies
    are cached and shared) and the version reported."""
    base_url: str
    arbor_version: str

    @property
    def version(self) -> str:
        return f"{MASTODON_VERSION} (compatible; Arbor {self.arbor_version})"


def content_html(text: str) -> str:
    """Plain text as Mastodon's `content`: escaped, paragraphs at blank lines, <br /> at line
    breaks."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join("<p>" + html.escape(p.strip("\n"), quote=True).replace("\n", "<br />")
                   + "</p>" for p in paragraphs)


def account_entity(row: AccountRow, site: Site) -> Json:
    """Arbor keeps no per-account counters: the counts are 0 and `hide_collections` true."""
    url = f"{site.base_url}/api/v1/accounts/{row.id}"
    return {
        "id": str(row.id), "username": row.handle, "acct": row.handle,
        "display_name": row.display_name, "locked": row.protected, "bot": False,
        "discoverable": False, "indexable": False, "group": False,
        "created_at": row.created_at, "note": "", "url": url, "uri": url,
        "avatar": NO_IMAGE, "avatar_static": NO_IMAGE, "header": NO_IMAGE,
        "header_static": NO_IMAGE, "followers_count": 0, "following_count": 0,
        "statuses_count": 0, "last_status_at": None, "hide_collections": True,
        "noindex": False, "emojis": [], "roles": [], "fields": [],
    }


def credential_account(row: AccountRow, site: Site) -> Json:
    """verify_credentials: the Account with its `source` and `role`."""
    return {**account_entity(row, site),
            "source": {"privacy": "public", "sensitive": False, "language": None, "note": "",
                       "fields": [], "follow_requests_count": 0,
                       "quote_policy": "public"},
            "role": {"id": "-99", "name": "", "permissions": "0", "color": "",
                     "highlighted": False}}


def author_ids(view: Any) -> set[int]:
    """Every author id an Arbor JSON tree shows (posts and their embedded quotes)."""
    found: set[int] = set()
    for node in posts_in(view):
        found.add(int(node["author"]["id"]))
    return found


def posts_in(value: Any) -> Iterator[Json]:
    """Every Post node of an Arbor JSON tree, quoted ones included."""
    if isinstance(value, dict):
        if value.get("type") == "post":
            yield value
        for child in value.values():
            if isinstance(child, (dict, list)):
                yield from posts_in(child)
    elif isinstance(value, list):
        for child in value:
            yield from posts_in(child)


def _quote_entity(quote: Json | None, accounts: dict[int, AccountRow], site: Site,
                  signed_in: bool, conversations: set[int], nested: bool) -> Json | None:
    if quote is None:
        return None
    state = QUOTE_STATES.get(quote["state"], "unauthorized")
    if nested:  # Mastodon's ShallowQuote: a quote inside a quoted status
        return {"state": state, "quoted_status_id": quote["id"] if state == "accepted" else None}
    post = quote.get("post")
    status = None
    if post is not None:
        status = status_entity(post, accounts, site, signed_in=signed_in,
                               conversations=conversations, nested=True)
    return {"state": state, "quoted_status": status}


def status_entity(node: Json, accounts: dict[int, AccountRow], site: Site, *,
                  signed_in: bool, conversations: set[int], parent_account: str | None = None,
                  nested: bool = False) -> Json:
    """An Arbor Post node as Mastodon's Status. `conversations` collects the conversation ids
    shown (the render cache's dependencies)."""
    conversations.add(int(node["conversation_id"]))
    counts = node["counts"]
    author = accounts.get(int(node["author"]["id"]))
    status = {
        "id": node["id"], "created_at": node["created_at"],
        "in_reply_to_id": node["in_reply_to_id"],
        "in_reply_to_account_id": parent_account if node["in_reply_to_id"] else None,
        "sensitive": False, "spoiler_text": "", "visibility": "public", "language": None,
        "uri": f"{site.base_url}/api/v1/statuses/{node['id']}",
        "url": f"{site.base_url}/v1/conversations/{node['id']}",
        "replies_count": counts["replies"], "reblogs_count": counts["reposts"],
        "favourites_count": counts["likes"], "quotes_count": counts["quotes"],
        "edited_at": None, "content": content_html(node["text"]), "reblog": None,
        "account": account_entity(author, site) if author is not None else None,
        "media_attachments": [], "mentions": [], "tags": [], "emojis": [], "card": None,
        "poll": None,
        "quote": _quote_entity(node.get("quote"), accounts, site, signed_in, conversations,
                               nested),
        "quote_approval": {"automatic": ["public"], "manual": [],
                           "current_user": "automatic" if signed_in else "unknown"},
    }
    if signed_in:  # as Mastodon: the viewer's own state only for a signed-in viewer
        status.update(favourited=bool(node.get("liked", False)),
                      reblogged=bool(node.get("reposted", False)),
                      muted=False, bookmarked=False, filtered=[])
    return status


@dataclass
class _Flattening:
    """State of one walk: the statuses found, the cuts, the conversations shown."""
    accounts: dict[int, AccountRow]
    site: Site
    signed_in: bool
    focal_id: str
    statuses: list[Json]
    more: list[Json]
    conversations: set[int]

    def cut(self, kind: str, status_id: str, count: int, exact: bool, cursor: str) -> None:
        param = "ancestors_cursor" if kind == "ancestors" else "replies_cursor"
        self.more.append({
            "kind": kind, "status_id": status_id, "count": count, "exact": exact,
            "href": f"{CONTEXT_PATH.format(id=self.focal_id)}?{param}={cursor}"})

    def status(self, node: Json, parent: Json | None) -> Json:
        parent_account = None
        if parent is not None and parent.get("type") == "post" \
                and parent["id"] == node["in_reply_to_id"]:
            parent_account = parent["author"]["id"]
        return status_entity(node, self.accounts, self.site, signed_in=self.signed_in,
                             conversations=self.conversations, parent_account=parent_account)

    def replies(self, replies: Json | None, parent: Json) -> None:
        """Depth-first: each status, then its replies; a tombstone's replies in its place."""
        if replies is None:
            return
        for item in replies["items"]:
            if item["type"] == "post":
                self.statuses.append(self.status(item, parent))
            self.replies(item.get("replies"), item)
        self.cuts_of(replies, parent["id"])

    def cuts_of(self, replies: Json, parent_id: str) -> None:
        more = replies.get("more")
        if more:
            self.cut("replies", parent_id, more["count"], more.get("exact", True),
                     more["cursor"])
        for name in SECTIONS[1:]:
            section = (replies.get("sections") or {}).get(name)
            if section:
                self.cut(name, parent_id, section["count"], section.get("exact", False),
                         section["cursor"])


def _walk(accounts: dict[int, AccountRow], site: Site, signed_in: bool,
          focal_id: str) -> _Flattening:
    return _Flattening(accounts, site, signed_in, focal_id, [], [], set())


def _ancestor_statuses(walk: _Flattening, items: Iterable[Json]) -> list[Json]:
    out, previous = [], None
    for item in items:
        if item["type"] == "post":
            out.append(walk.status(item, previous))
        previous = item
    return out


def context_entity(view: Json, accounts: dict[int, AccountRow], site: Site, *,
                   signed_in: bool) -> tuple[Json, set[int]]:
    """A conversation view (conversation.render_conversation) as Mastodon's Context, and the
    conversations it shows."""
    focal = view["focal"]
    walk = _walk(accounts, site, signed_in, view["focal_id"])
    ancestors = view["ancestors"]
    if ancestors.get("cursor"):  # the gap between the root and the nearest ancestors
        walk.cut("ancestors", view["focal_id"], ancestors["omitted"], True, ancestors["cursor"])
    ancestor_statuses = _ancestor_statuses(walk, ancestors["items"])
    walk.conversations.add(int(focal["conversation_id"]))
    walk.replies(focal.get("replies"), focal)
    return _context(ancestor_statuses, walk, view), walk.conversations


def replies_page_context(page: Json, parent_id: int, focal_id: int,
                         accounts: dict[int, AccountRow], site: Site, *,
                         signed_in: bool) -> tuple[Json, set[int]]:
    """A continuation of one node's replies (conversation.render_replies_page) as a Context:
    no ancestors; the page's statuses and their replies as descendants."""
    walk = _walk(accounts, site, signed_in, str(focal_id))
    walk.replies(page, {"type": "tombstone", "id": str(parent_id)})
    return _context([], walk, page), walk.conversations


def ancestors_page_context(page: Json, focal_id: int, accounts: dict[int, AccountRow],
                           site: Site, *, signed_in: bool) -> tuple[Json, set[int]]:
    """A continuation of the ancestors (conversation.render_ancestors_page), root-most first."""
    walk = _walk(accounts, site, signed_in, str(focal_id))
    if page.get("cursor"):
        walk.cut("ancestors", str(focal_id), page["omitted"], True, page["cursor"])
    return _context(_ancestor_statuses(walk, page["items"]), walk, page), walk.conversations


def _context(ancestors: list[Json], walk: _Flattening, view: Json) -> Json:
    # `partial` and `degraded` last, as top-level members: the read path does not cache a
    # degraded answer (service/http/cached_render.py), and link_header_of finds them there.
    return {"ancestors": ancestors, "descendants": walk.statuses, "more": walk.more,
            "partial": bool(view.get("partial", False)),
            "degraded": list(view.get("degraded", []))}


def link_header(more: list[Json], limit: int) -> str | None:
    """RFC 8288 links to the first `limit` continuations: rel="up" for the ancestors' gap,
    rel="replies" (anchored at the status whose replies continue) for a reply list."""
    links = []
    for cut in more[:limit]:
        if cut["kind"] == "ancestors":
            links.append(f'<{cut["href"]}>; rel="up"')
        else:
            section = "normal" if cut["kind"] == "replies" else cut["kind"]
            links.append(f'<{cut["href"]}>; rel="replies"; '
                         f'anchor="/api/v1/statuses/{cut["status_id"]}"; section="{section}"')
    return ", ".join(links) or None


def instance_v1(site: Site, *, domain: str, max_characters: int) -> Json:
    return {
        "uri": domain, "title": "Arbor", "short_description": "Reply threads, bounded.",
        "description": "Arbor: reply-thread rendering with a Mastodon-compatible API subset.",
        "email": "", "version": site.version, "urls": {"streaming_api": None},
        # Arbor counts nothing per instance at request time (no count(*)): not reported.
        "stats": {"user_count": 0, "status_count": 0, "domain_count": 0},
        "thumbnail": None, "languages": [], "registrations": False,
        "approval_required": False, "invites_enabled": False,
        "configuration": _configuration(max_characters), "contact_account": None, "rules": [],
    }


def instance_v2(site: Site, *, domain: str, max_characters: int) -> Json:
    return {
        "domain": domain, "title": "Arbor", "version": site.version,
        "source_url": f"{site.base_url}/openapi.json", "description":
            "Arbor: reply-thread rendering with a Mastodon-compatible API subset.",
        "usage": {"users": {"active_month": 0}},
        "thumbnail": {"url": NO_IMAGE}, "icon": [], "languages": [],
        "configuration": {**_configuration(max_characters),
                          "urls": {"streaming": None, "status": None},
                          "vapid": {"public_key": ""},
                          "accounts": {"max_featured_tags": 0, "max_pinned_statuses": 0},
                          "translation": {"enabled": False}},
        "registrations": {"enabled": False, "approval_required": False, "message": None},
        "api_versions": {"mastodon": 0},
        "contact": {"email": "", "account": None}, "rules": [],
    }


def _configuration(max_characters: int) -> Json:
    return {
        "statuses": {"max_characters": max_characters, "max_media_attachments": 0,
                     "characters_reserved_per_url": 0},
        "media_attachments": {"supported_mime_types": [], "image_size_limit": 0,
                              "image_matrix_limit": 0, "video_size_limit": 0,
                              "video_frame_rate_limit": 0, "video_matrix_limit": 0},
        "polls": {"max_options": 0, "max_characters_per_option": 0,
                  "min_expiration": 0, "max_expiration": 0},
    }
