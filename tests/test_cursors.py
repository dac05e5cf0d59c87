"""Cursor codec: opaque, signed, expiring, typed. Pure, no server."""
from __future__ import annotations

import base64

import pytest

from service.pipeline.cursors import AncestorsCursor, CursorCodec, QuotesCursor, RepliesCursor
from service.core.errors import ApiError

CURSOR = RepliesCursor(focal=1, conversation=1, parent=5, section=0, sort="ranked", depth=3,
                       branching=10, after=(7, 99), consumed=10)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def codec(secret="s", ttl=60, clock=None):
    return CursorCodec(secret, ttl, clock or Clock())


def rejects(codec_, text, kind=RepliesCursor) -> str:
    with pytest.raises(ApiError) as e:
        codec_.decode(text, kind)
    assert e.value.status == 400 and e.value.code == "invalid_cursor"
    return e.value.message


def test_round_trip():
    c = codec()
    assert c.decode(c.encode(CURSOR), RepliesCursor) == CURSOR


def _raw(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("at", [0, 15, 16, 20, -1])
def test_tampered_payload_is_rejected(at):
    # any byte: the synthetic IV (the first 16) or the ciphertext after it
    c = codec()
    raw = bytearray(_raw(c.encode(CURSOR)))
    raw[at] ^= 0x01
    assert "signature" in rejects(c, _text(bytes(raw)))


def test_truncated_or_extended_cursor_is_rejected():
    c = codec()
    raw = _raw(c.encode(CURSOR))
    rejects(c, _text(raw[:-1]))
    rejects(c, _text(raw + b"\0"))


FULL = RepliesCursor(focal=551191972942344192, conversation=551191972942344100,
                     parent=551191972942349999, section=2, sort="oldest", depth=19,
                     branching=100, after=(-5, 551191972942350000), consumed=123_456,
                     viewer=551191972942300001, focal_author=551191972942300002,
                     head=(551191972942360001, 551191972942360002, 7), head_shown=2,
                     head_from=(1, 1, 1), max_nodes=250)


@pytest.mark.parametrize("cursor", [
    CURSOR, FULL,
    AncestorsCursor(focal=9, conversation=8, start=7, page=40),
    QuotesCursor(quoted=551191972942344192, before=551191972942344190, viewer=None),
    QuotesCursor(quoted=3, before=2, viewer=551191972942300001),
])
def test_every_kind_round_trips(cursor):
    c = codec()
    viewer = getattr(cursor, "viewer", None)
    assert c.decode(c.encode(cursor), type(cursor), viewer) == cursor


def test_view_encoder_matches_encode():
    c = codec()
    make = c.replies(focal=FULL.focal, conversation=FULL.conversation, sort=FULL.sort,
                     branching=FULL.branching, viewer=FULL.viewer,
                     focal_author=FULL.focal_author, max_nodes=FULL.max_nodes)
    text = make(parent=FULL.parent, section=FULL.section, depth=FULL.depth, after=FULL.after,
                consumed=FULL.consumed, head=FULL.head, head_shown=FULL.head_shown,
                head_from=FULL.head_from)
    assert text == c.encode(FULL)
    assert c.decode(text, RepliesCursor, FULL.viewer) == FULL


def test_cursor_is_opaque_and_compact():
    """No id reads in the clear, in decimal or in binary, and the cursor of a personal view
    with a head fits in 200 characters (the signed JSON of version 1 took ~520)."""
    text = codec().encode(FULL)
    raw = _raw(text)
    for value in (FULL.viewer, FULL.focal_author, FULL.focal, *FULL.head[:2]):
        assert str(value) not in text
        assert value.to_bytes(8, "little") not in raw and value.to_bytes(8, "big") not in raw
    assert len(text) <= 200, len(text)


def test_version_1_cursor_is_rejected():
    """The signed JSON cursors issued before version 2: a 400, as after a secret rotation."""
    v1 = ("eyJ2IjoxLCJrIjoiciIsInQiOjEwMDAwMDAsImZvY2FsIjoxLCJjb252ZXJzYXRpb24iOjEsInBhcmVud"
          "CI6NX0.q83vEjRWeJCrze8SNFZ4kA")
    assert rejects(codec(), v1)


def test_other_secret_is_rejected():
    assert "signature" in rejects(codec("other"), codec("s").encode(CURSOR))


def test_expired_cursor_is_rejected():
    clock = Clock()
    c = codec(ttl=60, clock=clock)
    text = c.encode(CURSOR)
    clock.now += 61
    assert "expired" in rejects(c, text)


def test_cursor_of_another_kind_is_rejected():
    c = codec()
    text = c.encode(AncestorsCursor(focal=1, conversation=1, start=3, page=10))
    assert "another endpoint" in rejects(c, text, RepliesCursor)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.???", "x" * 5000, "eyJ2IjoxfQ.AAAA"])
def test_garbage_is_rejected(garbage):
    rejects(codec(), garbage)
