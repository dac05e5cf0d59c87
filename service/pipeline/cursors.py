"""Opaque, signed, keyset cursors.

A cursor is base64url(AES-SIV(key, payload)): the payload packed in binary (struct), then
encrypted and authenticated in one step by the `cryptography` library's AES-SIV (RFC 5297),
whose 16-byte synthetic IV is the signature. Nothing in a cursor reads in the clear (no
account ids), and it is about a third of the size of the signed JSON it replaces. AES-SIV
needs no nonce, so processes sharing `cursor_secret` cannot collide on one; the cost is that
equal payloads give equal cursors, which tells nothing a client does not already hold.
The payload names where to continue (a parent and section, or an ancestor chain) and the
keyset position after the last item shown, so a page is stable while new replies arrive.
Anything altered, truncated, expired or of an unknown version (the JSON cursors of Arbor
before version 2 included) is rejected as a 400.

Cost: a render encodes a cursor per cut node, so `CursorCodec.replies()` packs what all of
one view's cursors share once, and each cursor then costs one struct.pack, one AES-SIV call
and one base64 (a few microseconds).
"""
from __future__ import annotations

import base64
import binascii
import struct
import time
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.core.errors import bad_request

VERSION = 2
_MAX_LEN = 4096
_SORTS = ("ranked", "newest", "oldest")
_SORT_CODE = {s: i for i, s in enumerate(_SORTS)}


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


# The layouts, little-endian. Every payload starts with version, kind and issue time.
_HEAD = struct.Struct("<BBI")
# RepliesCursor: what one view's cursors share (focal, conversation, sort, branching,
# flags: 1 viewer set, 2 max_nodes set; viewer, focal_author, max_nodes) ...
_R_SHARED = struct.Struct("<qqBIBqqI")
# ... then each cursor's own: parent, section, depth, has-after, after, consumed, head_shown,
# head_from, head length, then the head ids (q each).
_R_OWN = struct.Struct("<qBIBqqIIIIIH")
_A = struct.Struct("<qqqI")      # focal, conversation, start, page
_Q = struct.Struct("<qqBq")      # quoted, before, has-viewer, viewer
_KIND = {RepliesCursor: ord("r"), AncestorsCursor: ord("a"), QuotesCursor: ord("q")}
_TAG = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


ReplyCursorMaker = Callable[..., str]


class CursorCodec:
    def __init__(self, secret: str, ttl_s: int, clock=time.time):
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                   info=b"arbor-cursor v2").derive(secret.encode())
        self._siv = AESSIV(key)
        self._ttl = ttl_s
        self._clock = clock

    def _seal(self, payload: bytes) -> str:
        return _b64(self._siv.encrypt(payload, None))

    def replies(self, *, focal: int, conversation: int, sort: str, branching: int,
                viewer: int | None, focal_author: int, max_nodes: int | None
                ) -> ReplyCursorMaker:
        """The RepliesCursor encoder of one view: call it with the fields of each cursor
        (parent, section, depth, after, consumed, head, head_shown, head_from)."""
        flags = (1 if viewer is not None else 0) | (2 if max_nodes is not None else 0)
        shared = _HEAD.pack(VERSION, _KIND[RepliesCursor], int(self._clock()) & 0xFFFFFFFF) + \
            _R_SHARED.pack(focal, conversation, _SORT_CODE[sort], branching, flags,
                           viewer or 0, focal_author, max_nodes or 0)
        own, encrypt = _R_OWN.pack, self._siv.encrypt

        def make(*, parent: int, section: int, depth: int, after: tuple[int, int] | None,
                 consumed: int, head: tuple[int, ...], head_shown: int,
                 head_from: tuple[int, int, int]) -> str:
            a0, a1 = after if after is not None else (0, 0)
            payload = shared + own(parent, section, depth, after is not None, a0, a1, consumed,
                                   head_shown, *head_from, len(head))
            if head:
                payload += struct.pack(f"<{len(head)}q", *head)
            return _b64(encrypt(payload, None))
        return make

    def encode(self, cursor: RepliesCursor | AncestorsCursor | QuotesCursor) -> str:
        if isinstance(cursor, RepliesCursor):
            c = cursor
            return self.replies(focal=c.focal, conversation=c.conversation, sort=c.sort,
                                branching=c.branching, viewer=c.viewer,
                                focal_author=c.focal_author, max_nodes=c.max_nodes)(
                parent=c.parent, section=c.section, depth=c.depth, after=c.after,
                consumed=c.consumed, head=c.head, head_shown=c.head_shown,
                head_from=c.head_from)
        head = _HEAD.pack(VERSION, _KIND[type(cursor)], int(self._clock()) & 0xFFFFFFFF)
        if isinstance(cursor, AncestorsCursor):
            body = _A.pack(cursor.focal, cursor.conversation, cursor.start, cursor.page)
        else:
            body = _Q.pack(cursor.quoted, cursor.before, cursor.viewer is not None,
                           cursor.viewer or 0)
        return self._seal(head + body)

    def decode(self, text: str, expected: type, viewer: int | None = None
               ) -> RepliesCursor | AncestorsCursor | QuotesCursor:
        if not text or len(text) > _MAX_LEN:
            raise bad_request("invalid_cursor", "cursor is malformed")
        try:
            sealed = _unb64(text)
        except (binascii.Error, ValueError):
            raise bad_request("invalid_cursor", "cursor is malformed") from None
        if len(sealed) < _TAG + _HEAD.size:
            raise bad_request("invalid_cursor", "cursor is malformed")
        try:
            payload = self._siv.decrypt(sealed, None)
        except (InvalidTag, ValueError):
            raise bad_request("invalid_cursor", "cursor signature does not match") from None
        version, kind, issued = _HEAD.unpack_from(payload)
        if version != VERSION:
            raise bad_request("invalid_cursor", "cursor is from another version of Arbor")
        try:
            cursor = _unpack(kind, payload, _HEAD.size)
        except (struct.error, KeyError, IndexError, ValueError):
            raise bad_request("invalid_cursor", "cursor is malformed") from None
        if type(cursor) is not expected:
            raise bad_request("invalid_cursor", "cursor belongs to another endpoint")
        if (int(self._clock()) & 0xFFFFFFFF) - issued > self._ttl:
            raise bad_request("invalid_cursor", "cursor has expired; reload the conversation")
        if isinstance(cursor, (RepliesCursor, QuotesCursor)) and cursor.viewer != viewer:
            raise bad_request("invalid_cursor", "cursor was issued to another viewer")
        return cursor


def _unpack(kind: int, payload: bytes, at: int) -> RepliesCursor | AncestorsCursor | QuotesCursor:
    if kind == _KIND[AncestorsCursor]:
        if len(payload) != at + _A.size:
            raise ValueError("length")
        focal, conversation, start, page = _A.unpack_from(payload, at)
        return AncestorsCursor(focal=focal, conversation=conversation, start=start, page=page)
    if kind == _KIND[QuotesCursor]:
        if len(payload) != at + _Q.size:
            raise ValueError("length")
        quoted, before, has_viewer, viewer = _Q.unpack_from(payload, at)
        return QuotesCursor(quoted=quoted, before=before, viewer=viewer if has_viewer else None)
    if kind != _KIND[RepliesCursor]:
        raise KeyError(kind)
    (focal, conversation, sort, branching, flags, viewer, focal_author,
     max_nodes) = _R_SHARED.unpack_from(payload, at)
    at += _R_SHARED.size
    (parent, section, depth, has_after, a0, a1, consumed, head_shown, f0, f1, f2,
     n) = _R_OWN.unpack_from(payload, at)
    at += _R_OWN.size
    if len(payload) != at + 8 * n:
        raise ValueError("length")
    head = struct.unpack_from(f"<{n}q", payload, at) if n else ()
    return RepliesCursor(
        focal=focal, conversation=conversation, parent=parent, section=section,
        sort=_SORTS[sort], depth=depth, branching=branching,
        after=(a0, a1) if has_after else None, consumed=consumed,
        viewer=viewer if flags & 1 else None, focal_author=focal_author, head=tuple(head),
        head_shown=head_shown, head_from=(f0, f1, f2),
        max_nodes=max_nodes if flags & 2 else None)
