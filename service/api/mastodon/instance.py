"""/api/v1/instance and /api/v2/instance: what Mastodon clients read first (Mastodon.py reads
`version` to decide which endpoints exist: "4.5.0 (compatible; Arbor x.y.z)"). No database
work, no viewer. Also with a trailing slash, as Mastodon.py asks for them."""
from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from service.http.keys import SETTINGS
from service.http.mastodon import site
from service.http.responses import json_response
from service.pipeline.mastodon_entities import instance_v1, instance_v2


async def get_instance_v1(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    where = site(s)
    return json_response(instance_v1(where, domain=urlsplit(where.base_url).netloc,
                                     max_characters=s.max_post_length))


async def get_instance_v2(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    where = site(s)
    return json_response(instance_v2(where, domain=urlsplit(where.base_url).netloc,
                                     max_characters=s.max_post_length))


# Mastodon (Rails) ignores a trailing slash, and Mastodon.py asks for /api/v1/instance/.
ROUTES = [
    web.get("/api/v1/instance", get_instance_v1),
    web.get("/api/v1/instance/", get_instance_v1),
    web.get("/api/v2/instance", get_instance_v2),
    web.get("/api/v2/instance/", get_instance_v2),
]
