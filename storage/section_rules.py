"""Which quality section a reply belongs to. Pure: facts in, section out (DESIGN §5).

The section is viewer-independent and stored with the post; it is recomputed whenever one of
its inputs changes (storage/section_updates.py). Replies by the conversation's author are
never demoted here; replies by the focal post's author, the viewer and the accounts the viewer
follows are promoted back per request (the "head" of service/pipeline/skeleton.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

NORMAL, LOW_QUALITY, OFFENSIVE = 0, 1, 2


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    spam: float = 0.7                 # spam label score at or over: low_quality
    abusive: float = 0.8              # abusive label score at or over: offensive
    new_account_days: int = 7         # "new": the reply was written this soon after sign-up
    shunned_by: int = 3               # blocked or muted by this many conversation participants


@dataclass(frozen=True)
class ReplyFacts:
    is_reply: bool
    by_conversation_author: bool
    spam: float | None
    abusive: float | None
    duplicate: bool                   # same normalized text as an earlier reply in the conversation
    has_avatar: bool
    verified: bool
    account_age: timedelta            # age of the author's account when the reply was written
    shunned_by: int                   # distinct participants blocking or muting the author (capped)


def section_of(f: ReplyFacts, t: Thresholds) -> int:
    if not f.is_reply or f.by_conversation_author:
        return NORMAL
    if f.abusive is not None and f.abusive >= t.abusive:
        return OFFENSIVE
    if f.spam is not None and f.spam >= t.spam:
        return LOW_QUALITY
    if f.duplicate:
        return LOW_QUALITY
    if not f.has_avatar and not f.verified and f.account_age < timedelta(days=t.new_account_days):
        return LOW_QUALITY
    if f.shunned_by >= t.shunned_by:
        return LOW_QUALITY
    return NORMAL


def rank_key(likes: int, reposts: int, quotes: int) -> int:
    """Engagement score for sort=ranked: round(1000 * ln(1 + likes + 2*reposts + 3*quotes)).
    Logarithmic so that a reply with 10x the engagement gains a fixed step rather than burying
    everything; integer so that keyset cursors compare exactly. Ties are broken by id."""
    return round(1000 * math.log1p(max(0, likes) + 2 * max(0, reposts) + 3 * max(0, quotes)))
