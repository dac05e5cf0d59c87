"""A response body and what HTTP derives from it: its strong ETag, its compressed forms (made
at most once each, then kept with the body: a cached conversation is compressed once per
coding, not once per request), the `Link` to its next page, and the pure rules that pick
among them: Accept-Encoding negotiation (RFC 9110 §12.5.3, q-values), If-None-Match
(§13.1.2, weak comparison, `*` and lists), the Cache-Control for a viewer.

No aiohttp here: service/http/conventions.py applies these to responses.

ETag: `"<SHA-256 of the identity body, its first 96 bits>"`, and `"<same>-gzip"` / `"<same>-br"` for the
compressed forms (a strong validator differs per representation, RFC 9110 §8.8.1). Being a
hash of the bytes, it is the same in every process and changes exactly when the body does
(counts, the viewer's own state, anything a render shows). If-None-Match matches on the hash,
whatever the suffix: every form decodes to the same bytes.
Cost: hashing is ~0.6 us/KB, done once per body; gzip (level `http_gzip_level`) ~15 us/KB,
brotli (quality `http_brotli_quality`) ~25 us/KB at the defaults, once per cached body and coding.
"""
from __future__ import annotations

import gzip
import hashlib
import time
from typing import Callable

import brotli

from service.core.ops_metrics import CompressionStats

GZIP, BROTLI = "gzip", "br"
CODINGS = (BROTLI, GZIP)  # preference on a q-value tie: smaller first
COMPRESSION = CompressionStats(CODINGS)   # per process, as the CPU it counts


def etag_of(body: bytes) -> str:
    # SHA-256 rather than BLAKE2: with the SHA extensions of current x86 and ARM CPUs it hashes
    # a 141-KB body in ~80 us here against ~175 us (BLAKE2 has no such instructions)
    return hashlib.sha256(body).hexdigest()[:24]


class Representation:
    """A body, its ETag, its Link, and its compressed forms, filled lazily. `on_grow`, when
    given, is called after a form is added (the render cache re-counts the entry's bytes)."""

    __slots__ = ("body", "tag", "link", "variants", "on_grow")

    def __init__(self, body: bytes, link: str | None = None,
                 on_grow: Callable[[], None] | None = None):
        self.body, self.link, self.on_grow = body, link, on_grow
        self.tag = etag_of(body)
        self.variants: dict[str, bytes] = {}

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.variants.values()) + len(self.link or "")

    def etag(self, coding: str | None) -> str:
        return f'"{self.tag}-{coding}"' if coding else f'"{self.tag}"'

    def encoded(self, coding: str, *, gzip_level: int, brotli_quality: int) -> bytes:
        data = self.variants.get(coding)
        if data is None:
            data = compress(self.body, coding, gzip_level=gzip_level,
                            brotli_quality=brotli_quality)
            self.variants[coding] = data
            if self.on_grow is not None:
                self.on_grow()
        return data


def compress(body: bytes, coding: str, *, gzip_level: int, brotli_quality: int) -> bytes:
    started = time.thread_time()   # CPU, not wall: what a slow machine's compressing costs
    if coding == GZIP:
        data = gzip.compress(body, compresslevel=gzip_level, mtime=0)  # mtime 0: same bytes
    elif coding == BROTLI:
        data = brotli.compress(body, mode=brotli.MODE_TEXT, quality=brotli_quality)
    else:
        raise ValueError(f"unknown content coding {coding!r}")
    stats = COMPRESSION
    stats.seconds[coding] += time.thread_time() - started
    stats.bodies[coding] += 1
    stats.bytes_in[coding] += len(body)
    stats.bytes_out[coding] += len(data)
    return data


def _q(params: list[str]) -> float:
    for p in params:
        name, _, value = p.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0  # unreadable: not acceptable
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def negotiate(accept_encoding: str | None) -> str | None:
    """The coding to send (br or gzip), or None for the identity body. Highest q wins, br on
    a tie; `*` stands for any coding not named; q=0 refuses. No header: identity."""
    if not accept_encoding:
        return None
    named: dict[str, float] = {}
    star: float | None = None
    for item in accept_encoding.split(","):
        token, *params = item.split(";")
        token = token.strip().lower()
        if not token:
            continue
        q = _q(params)
        if token == "*":
            star = q
        elif token == "x-gzip":
            named.setdefault(GZIP, q)
        else:
            named[token] = q
    best, best_q = None, 0.0
    for coding in CODINGS:
        q = named.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    return best


def _opaque(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    base, _, suffix = tag.rpartition("-")
    return base if base and suffix in CODINGS else tag


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """Whether If-None-Match names this body (any of its forms), or is `*`."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(_opaque(t) == tag for t in if_none_match.split(",") if t.strip())


def cache_control(*, shared: bool, signed_in: bool, max_age_s: float,
                  stale_if_error_s: float) -> str:
    """`shared`: a read through the render cache, the same for every anonymous viewer, so a
    CDN may keep it as long as this process does (and serve it when this fails, as this
    process serves its stale copies). A signed-in viewer's answer is theirs alone and
    revalidated each time (an ETag makes that a 304); other reads are revalidated too."""
    if signed_in:
        return "private, no-cache"
    if shared and max_age_s > 0:
        return f"public, max-age={int(max_age_s)}, stale-if-error={int(stale_if_error_s)}"
    return "no-cache"
