"""Faults that tests inject into a running app, to see it degrade (never set in production).

Only what cannot be provoked from outside lives here: a failure of one hydration step while
the rest of the database works. Database outages and latency are injected from outside, by
a TCP proxy between the service and PostgreSQL.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class Faults:
    quote_hydration: BaseException | None = None  # raised instead of loading quoted posts
    ranking: BaseException | None = None          # raised by score-ordered lookups
    viewer_relations: BaseException | None = None  # raised instead of loading blocks/mutes
