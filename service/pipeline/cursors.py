"""Opaque, signed, keyset cursors.

A cursor is base64url(JSON payload) "." base64url(HMAC-SHA256(secret, payload)[:16]).
The payload names where to continue (a parent and section, or an ancestor chain) and the
keyset position after the last item shown, so a page is stable while new replies arrive.
Anything altered, truncated, expired or of an unknown version is rejected as a 400.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass, fields

import orjson

from service.core.errors import bad_request

VERSION = 1
_MAX_LEN = 4096


@dataclass(frozen=True, kw_only=True)
class RepliesCursor:
    """The rest of `parent`'s replies in `section`, after keyset `after` (None: from the start).
    `focal` is the conversation view it came from; `depth` the subtree depth under each item."""
    focal: int
    conversation: int
    parent: int
    section: int
    sort: str
    depth: int
    branching: int
    after: tuple[int, int] | None
    consumed: int
    viewer: int | None = None       # the viewer it was issued to: lists are personal
    focal_author: int = 0
    head: tuple[int, ...] = ()      # the node's head replies, in order; skipped in every list
    head_shown: int = 0             # how many of them earlier pages showed
    head_from: tuple[int, int, int] = (0, 0, 0)
    max_nodes: int | None = None    # the conversation's cap when it was issued (SRE limits)


@dataclass(frozen=True, kw_only=True)
class AncestorsCursor:
    """Ancestors of `focal` from `start` upwards (the root excluded: it is always shown)."""
    focal: int
    conversation: int
    start: int
    page: int


@dataclass(frozen=True, kw_only=True)
class QuotesCursor:
    """The quotes of `quoted` with ids below `before`, for `viewer`."""
    quoted: int
    before: int
    viewer: int | None = None


_KINDS = {"r": RepliesCursor, "a": AncestorsCursor, "q": QuotesCursor}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _KINDS.values()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, secret: str, ttl_s: int, clock=time.time):
        self._key = hashlib.sha256(b"arbor-cursor:" + secret.encode()).digest()
        self._ttl = ttl_s
        self._clock = clock

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def encode(self, cursor: RepliesCursor | AncestorsCursor | QuotesCursor) -> str:
        # A shallow dict: dataclasses.asdict deep-copies every field, and a render encodes a
        # cursor per cut node (it was 40% of a render's CPU). Fields are ints, strs, tuples.
        body = {"v": VERSION, "k": _KIND_OF[type(cursor)], "t": int(self._clock()),
                **{name: getattr(cursor, name) for name in _FIELDS[type(cursor)]}}
        payload = orjson.dumps(body)
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, text: str, expected: type, viewer: int | None = None
               ) -> RepliesCursor | AncestorsCursor:
        if not text or len(text) > _MAX_LEN or text.count(".") != 1:
            raise bad_request("invalid_cursor", "cursor is malformed")
        body_part, sig_part = text.split(".")
        try:
            payload, sig = _unb64(body_part), _unb64(sig_part)
        except (binascii.Error, ValueError):
            raise bad_request("invalid_cursor", "cursor is malformed") from None
        if not hmac.compare_digest(sig, self._sign(payload)):
            raise bad_request("invalid_cursor", "cursor signature does not match")
        try:
            body = orjson.loads(payload)
            if body.pop("v") != VERSION:
                raise bad_request("invalid_cursor", "cursor is from another version of Arbor")
            kind, issued = body.pop("k"), body.pop("t")
            cls = _KINDS[kind]
            for name in ("after", "head", "head_from"):
                if body.get(name) is not None:
                    body[name] = tuple(body[name])
            cursor = cls(**body)
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            raise bad_request("invalid_cursor", "cursor is malformed") from None
        if cls is not expected:
            raise bad_request("invalid_cursor", "cursor belongs to another endpoint")
        if self._clock() - issued > self._ttl:
            raise bad_request("invalid_cursor", "cursor has expired; reload the conversation")
        if isinstance(cursor, (RepliesCursor, QuotesCursor)) and cursor.viewer != viewer:
            raise bad_request("invalid_cursor", "cursor was issued to another viewer")
        return cursor
