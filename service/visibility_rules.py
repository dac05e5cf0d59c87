"""Who may see what. Pure functions over hydrated rows: no I/O, tested without a server.

A verdict of None means "show it"; otherwise it is the tombstone reason. The reason for an
account's state (suspended, deactivated, locked) is never revealed: all are "unavailable".
"""
from __future__ import annotations

from storage.post_queries import PostRow, QuotedSummary

DELETED, UNAVAILABLE = "deleted", "unavailable"


def post_verdict(post: PostRow | None) -> str | None:
    if post is None or post.deleted:
        return DELETED
    if post.author.state != "active":
        return UNAVAILABLE
    return None


def quote_state(summary: QuotedSummary) -> str:
    """State of a quoted post: "ok", "deleted" or "unavailable"."""
    if not summary.exists or summary.deleted:
        return DELETED
    if summary.author_state != "active":
        return UNAVAILABLE
    return "ok"
