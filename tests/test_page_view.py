"""service/pipeline/page_view.py, pure: the words of banners, tombstones and quotes, the links
that follow the cursors, and escaping by construction."""
from __future__ import annotations

from service.pipeline import page_view

from .test_pages import HOSTILE


def _post(i: str, text: str = "t", **extra) -> dict:
    return {"type": "post", "id": i, "conversation_id": "1", "in_reply_to_id": None,
            "author": {"id": "9", "handle": "h", "display_name": "D"}, "text": text,
            "created_at": "2024-03-01T10:00:00.123456Z",
            "counts": {"replies": 1, "likes": 2, "reposts": 0, "quotes": 1000},
            "quote": None, "replies": None, **extra}


def _body(replies: dict, **extra) -> dict:
    return {"focal_id": "1", "ancestors": {"items": [], "omitted": 0, "cursor": None},
            "focal": _post("1", replies=replies), "degraded": [], "partial": False, **extra}


def test_every_degraded_part_and_partial_has_words_in_a_fixed_order():
    texts = page_view.banners(["quotes", "ranking", "stale"], True, "12")
    assert [t.split()[0] for t in texts] == ["Arbor", "This", "Ranking", "Quoted"]
    assert "saved copy from 12 seconds ago" in texts[0]
    assert "only part of it is shown" in texts[1]
    assert page_view.banners([], False) == []
    assert page_view.banners(["something_new"], False) == [
        "Part of this answer is degraded: something_new."]


def test_a_stale_header_and_a_failed_quote_make_banners_on_any_page():
    replies = {"items": [_post("2", quote={"state": "temporarily_unavailable", "id": "5",
                                           "post": None})],
               "more": None, "sections": {"low_quality": None, "offensive": None}}
    view = page_view.replies_page_view("1", replies, {"Arbor-Degraded": "stale", "Age": "3"})
    assert len(view["banners"]) == 2 and "3 seconds ago" in view["banners"][0]
    assert "could not be loaded right now" in view["rows"]


def test_tombstones_sections_and_more_links():
    replies = {"items": [{"type": "tombstone", "id": "3", "reason": "blocked",
                          "replies": {"items": [_post("4")], "more": None,
                                      "sections": {"low_quality": None, "offensive": None}}}],
               "more": {"count": 7, "exact": True, "cursor": "abc+/="},
               "sections": {"low_quality": {"count": 2, "exact": False, "cursor": "lq"},
                            "offensive": {"count": 1, "exact": False, "cursor": "off"}}}
    html = str(page_view.conversation_view(_body(replies), {})["replies"])
    assert "hidden because of a block" in html
    assert 'href="/conversations/1/replies?cursor=abc%2B%2F%3D"' in html
    assert "Show 7 more replies" in html
    assert "Show more replies (up to 2)" in html
    assert ("Show additional replies, including those that may contain offensive content "
            "(up to 1)") in html
    assert html.index('id="p3"') < html.index('id="p4"')  # the reply stays under its tombstone
    assert "1,000 quotes" in html and "2024-03-01 10:00 UTC" in html


def test_every_quote_state_has_words():
    for state, words in page_view.QUOTE_TEXT.items():
        body = _body(None)
        body["focal"]["quote"] = {"state": state, "id": "8", "post": None}
        assert words in str(page_view.conversation_view(body, {})["focal"])


def test_hostile_text_is_escaped_everywhere_it_goes():
    for text in HOSTILE:
        post = _post("2", text)
        post["author"] = {"id": "9", "handle": text, "display_name": text}
        post["quote"] = {"state": "ok", "id": "5", "post": _post("5", text)}
        replies = {"items": [post], "more": None,
                   "sections": {"low_quality": None, "offensive": None}}
        html = str(page_view.conversation_view(_body(replies), {})["replies"])
        assert "<script" not in html and "<img" not in html and "<b>" not in html
        assert "' onmouseover" not in html and '"><img' not in html
        assert '&quot;&gt;&lt;img' in html or 'img' not in text
