"""/ : what Arbor is, links to the API docs and /readyz, and the demo conversations of the
seeds loaded in this database (storage/seeding.seeded_roots).

Cost: at most two round trips (seed_runs, the roots' posts), and none while the list is
fresh (kept `HOME_TTL_S` per app) or while the database breaker is open; when the database
fails, the last list is shown (or none) under a banner, never an error page.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from storage import post_queries, seeding

from service.http.auth import session_token
from service.http.html import page
from service.http.keys import DB, PAGES, READS
from service.pipeline import page_view, visibility_rules as rules
from service.resilience.failures import DATABASE_ERRORS

log = logging.getLogger("arbor.pages")
HOME_TTL_S = 30.0
MAX_DEMOS = 60  # links on the page, whatever the seeds hold
_TIMEOUT_S = 1.0


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


async def _load(request: web.Request) -> list[dict]:
    db = request.app[DB]
    seeds = await seeding.seeded_roots(db)
    wanted = [(preset, name, post_id) for preset, roots in seeds.items()
              for name, post_id in roots.items()][:MAX_DEMOS]
    posts = await post_queries.posts_by_id(db, [post_id for _, _, post_id in wanted])
    presets: dict[str, list] = {}
    for preset, name, post_id in wanted:
        post = posts.get(post_id)
        visible = rules.post_verdict(post) is None  # as an anonymous reader sees it
        text = post.text if visible else None
        presets.setdefault(preset, []).append({
            "label": _label(name), "href": page_view.conversation_url(str(post_id)),
            "text": (text[:120] + "…") if text and len(text) > 120 else text,
            "replies": page_view.plural(sum(post.replies), "reply", "replies")
            if visible else None})
    return [{"name": name, "roots": roots} for name, roots in presets.items()]


async def home(request: web.Request) -> web.Response:
    state = request.app[PAGES]
    banners = []
    cached = state.get("home")
    if cached is None or time.monotonic() - cached[0] > HOME_TTL_S:
        if request.app[READS].database.state == "open":
            banners.append("Arbor cannot reach its database right now; the list of demo "
                           "conversations may be out of date or missing.")
        else:
            try:
                state["home"] = cached = (time.monotonic(),
                                          await asyncio.wait_for(_load(request), _TIMEOUT_S))
            except (*DATABASE_ERRORS, asyncio.TimeoutError) as e:
                log.warning("home page: demo list unavailable: %s: %s", type(e).__name__, e)
                banners.append("Arbor cannot reach its database right now; the list of demo "
                               "conversations may be out of date or missing.")
    presets = cached[1] if cached else []
    signed_in = "yes" if session_token(request) else None
    return page(request, "index.html", {"presets": presets, "banners": banners,
                                        "viewer_handle": signed_in})


ROUTES = [web.get("/", home)]
