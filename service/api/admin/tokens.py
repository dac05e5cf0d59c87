"""/v1/admin/tokens/{token_id}: revoking a bearer token (admin token only). New tokens are
made under their account (service/api/admin/accounts.py)."""
from __future__ import annotations

from aiohttp import web

from storage import account_tokens

from service.core.errors import ApiError
from service.http.auth import require_admin
from service.http.keys import DB, VIEWERS
from service.inputs.pages import parse_token_id


async def revoke_token(request: web.Request) -> web.Response:
    require_admin(request)
    token_hash = parse_token_id(request.match_info["token_id"])
    if await account_tokens.revoke_token(request.app[DB], token_hash) is None:
        raise ApiError(404, "not_found", "token not found")
    request.app[VIEWERS].forget_token(token_hash)
    return web.Response(status=204)


ROUTES = [
    web.delete("/v1/admin/tokens/{token_id}", revoke_token),
]
