"""How the rate-limit settings are written, checked where the settings table is validated
(service/core/settings.py) and used by the rate limiter (service/resilience/): a rate such
as `3000/5minutes` (limits' notation), and the URL of the shared counter store.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import limits

SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "valkey": "async+redis",
           "valkeys": "async+rediss", "unix": "async+redis+unix"}


def parse_rate(text: str) -> limits.RateLimitItem:
    """`"3000/5minutes"`, `"3000 per 5 minutes"`, `"60 per hour"` -> a limits item; ValueError
    naming the problem for anything else (one rate, at least 1 per at least 1 second)."""
    try:
        items = limits.parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1:
        raise ValueError(f"{text!r} is not a rate such as '3000/5minutes' or '60 per hour'")
    item = items[0]
    if item.amount < 1:
        raise ValueError(f"{text!r}: the amount must be at least 1")
    return item


def limits_uri(url: str) -> str:
    """`redis://host:6379/0` (or rediss, valkey, unix) -> the URI limits expects."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r}: the scheme must be one of {', '.join(sorted(SCHEMES))}")
    return SCHEMES[parts.scheme] + url[len(parts.scheme):]


def check_url(url: str) -> None:
    """Settings check: empty (in process) or a Redis URL."""
    if url:
        limits_uri(url)
