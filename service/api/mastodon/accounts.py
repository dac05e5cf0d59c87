"""/api/v1/accounts: the signed-in account (`verify_credentials`, Mastodon's CredentialAccount)
and an account by id. An account that is not active (suspended, deactivated, locked) is the
same 404 as one that does not exist: nobody learns why an account is unavailable."""
from __future__ import annotations

from aiohttp import web

from storage import account_queries

from service.core.errors import not_found
from service.http.auth import require_viewer, viewer_of
from service.http.keys import DB, SETTINGS
from service.http.mastodon import site
from service.http.responses import json_response
from service.inputs.mastodon import status_id as record_id
from service.pipeline.mastodon_entities import account_entity, credential_account


async def verify_credentials(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    row = await account_queries.account_by_id(request.app[DB], viewer.id)
    if row is None:  # deleted since the token was resolved: as if the token were unknown
        raise not_found()
    return json_response(credential_account(row, site(request.app[SETTINGS])))


async def get_account(request: web.Request) -> web.Response:
    account_id = record_id(request.match_info["account_id"])
    await viewer_of(request)  # a bad token is a 401, as everywhere
    row = await account_queries.account_by_id(request.app[DB], account_id)
    if row is None or row.state != "active":
        raise not_found()
    return json_response(account_entity(row, site(request.app[SETTINGS])))


ROUTES = [  # the fixed path first: aiohttp matches in order
    web.get("/api/v1/accounts/verify_credentials", verify_credentials),
    web.get("/api/v1/accounts/{account_id}", get_account),
]
