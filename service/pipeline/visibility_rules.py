"""Who may see what. Pure functions over hydrated rows and the viewer: no I/O.

A verdict of None means "show it"; otherwise it is the tombstone reason. The reason for an
account's state (suspended, deactivated, locked) is never revealed: all are "unavailable",
and so is a protected author the viewer does not follow.
"""
from __future__ import annotations

import re
from functools import lru_cache

from storage.rows import ANONYMOUS, Author, PostRow, QuotedSummary, Viewer

DELETED, UNAVAILABLE, BLOCKED, MUTED = "deleted", "unavailable", "blocked", "muted"


def author_verdict(author: Author, viewer: Viewer) -> str | None:
    """What the viewer's relations and the author's state say of anything by this author."""
    if author.id == viewer.id:
        return None if author.state == "active" else UNAVAILABLE
    if author.state != "active":
        return UNAVAILABLE
    if author.id in viewer.blocks or author.id in viewer.blocked_by:
        return BLOCKED
    if author.protected and author.id not in viewer.follows:
        return UNAVAILABLE
    if author.id in viewer.mutes:
        return MUTED
    return None


def post_verdict(post: PostRow | None, viewer: Viewer = ANONYMOUS) -> str | None:
    if post is None or post.deleted:
        return DELETED
    verdict = author_verdict(post.author, viewer)
    if verdict is None and post.author.id != viewer.id and has_muted_word(post.text, viewer.muted_words):
        return MUTED
    return verdict


@lru_cache(maxsize=4096)
def _muted_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a viewer's muted words: each a whole word (or phrase), case-insensitive.
    \\b would fail on words that start or end with punctuation (#tag, c++), so word edges are
    spelled out as "not preceded / followed by a word character"."""
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def has_muted_word(text: str, muted_words: tuple[str, ...]) -> bool:
    pattern = _muted_pattern(muted_words)
    return pattern is not None and pattern.search(text) is not None


def quote_state(summary: QuotedSummary, viewer: Viewer = ANONYMOUS) -> str:
    """State of a quoted post: ok, deleted, unavailable or blocked."""
    if not summary.exists or summary.deleted:
        return DELETED
    author = Author(summary.author_id or 0, "", "", summary.author_state or "active",
                    summary.author_protected)
    verdict = author_verdict(author, viewer)
    if verdict == MUTED:  # a muted author's quote is still shown: muting hides replies, not embeds
        return "ok"
    return verdict or "ok"
