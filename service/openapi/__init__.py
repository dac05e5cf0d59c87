"""openapi: the OpenAPI 3.1 document, the contract: served at /openapi.json, checked against
the server by schemathesis, and equal to the routes (tests/test_docs.py). Its modules mirror
service/api/ (the URL tells the file), each with schemas(settings) and paths(settings);
common.py holds the shared parts and the response headers every operation documents,
rate_limits.py the 429/403 answers every limited operation has. build_spec() below puts
them together.

Pure data built from the settings. May import: service.inputs (the patterns and bounds the
handlers check), service.resilience (rate-limit budgets), service.core, storage; never
service.api (it mirrors it), service.http or aiohttp.
"""
from __future__ import annotations

from service.core.settings import Settings

from . import conversations, me, ops, pages, posts
from .admin import accounts, conversations as admin_conversations, deny_list, posts as admin_posts
from .admin import settings, tokens, top_clients
from .common import ERROR_SCHEMA, Json, security_schemes, with_headers
from .mastodon import accounts as mastodon_accounts, common as mastodon_common, instance, statuses
from .rate_limits import add_rate_limit_answers

# In the order of service/api/__init__.ROUTES.
PARTS = (conversations, posts, me, accounts, tokens, admin_posts, settings, admin_conversations,
         deny_list, top_clients, instance, mastodon_accounts, statuses, ops, pages)


def build_spec(s: Settings) -> Json:
    paths: Json = {}
    schemas: Json = {"Error": ERROR_SCHEMA, **mastodon_common.schemas(s)}
    for part in PARTS:
        for found, into in ((part.paths(s), paths), (part.schemas(s), schemas)):
            twice = set(found) & set(into)
            if twice:
                raise ValueError(f"{part.__name__} defines {sorted(twice)} again")
            into.update(found)
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "Arbor", "version": "1",
                 "description": "Reply-thread rendering: ancestors, the focal post, and a bounded "
                                "tree of replies with cursors for everything cut."},
        "paths": with_headers(paths),
        "components": {"schemas": schemas, "securitySchemes": security_schemes()},
    }
    add_rate_limit_answers(spec["paths"])
    mastodon_common.use_mastodon_errors(spec["paths"])  # after every error answer is there
    return spec
