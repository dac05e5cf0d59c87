"""Cursor codec: opaque, signed, expiring, typed. Pure, no server."""
from __future__ import annotations

import base64

import pytest

from service.pipeline.cursors import AncestorsCursor, CursorCodec, RepliesCursor
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


def test_tampered_payload_is_rejected():
    c = codec()
    body, sig = c.encode(CURSOR).split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(b'"parent":5', b'"parent":6')
    forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + sig
    assert "signature" in rejects(c, forged)


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
