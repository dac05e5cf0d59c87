"""Who is asking: `Authorization: Bearer <token>` -> Viewer; and the admin API's token check.

No header: the anonymous viewer. A malformed header, an unknown or revoked token, or a token of
an account that is not active: 401 `unauthorized` with `WWW-Authenticate: Bearer`, and the same
message for all of those, so a caller never learns why an account is unavailable.
"""
from __future__ import annotations

import hmac
import re

from aiohttp import web

from storage import relation_queries
from storage.account_tokens import hash_token
from storage.rows import ANONYMOUS, Viewer

from service.core.clients import Client, client, client_address, parse_networks
from service.core.errors import ApiError, unauthorized

from .keys import CLIENT, DB, DENY_LIST, FAULTS, SETTINGS, VIEWER, VIEWERS

# RFC 6750 b64token, bounded so a huge header costs nothing.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]{1,512}=*) *")
_INVALID = "the bearer token is not valid"


# viewer_of's default: the token of the Authorization header. The HTML pages pass the token
# of their session cookie instead (session_token).
FROM_HEADER = object()
# The pages' session cookie (service/api/pages/session.py sets it: HttpOnly, SameSite=Lax).
SESSION_COOKIE = "arbor-session"
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,512}=*")


def session_token(request: web.Request) -> str | None:
    """The token of the pages' session cookie; None without one or when it is not a token
    (a cookie is not an API input to refuse: the page is then the anonymous view)."""
    raw = request.cookies.get(SESSION_COOKIE)
    return raw if raw and _TOKEN.fullmatch(raw) else None


def is_token(raw: str) -> bool:
    return _TOKEN.fullmatch(raw) is not None


def parse_bearer(values) -> str | None:
    """The token of Authorization header values (given once, `Bearer <token>`), else None."""
    match = _BEARER.fullmatch(values[0]) if len(values) == 1 else None
    return None if match is None else match.group(1)


def bearer_token(request: web.Request) -> str | None:
    """The token of the Authorization header; None when there is no header; 401 when malformed."""
    values = request.headers.getall("Authorization", [])
    if not values:
        return None
    match = _BEARER.fullmatch(values[0]) if len(values) == 1 else None
    if match is None:
        raise unauthorized("the Authorization header must be 'Bearer <token>', given once")
    return match.group(1)


def client_of(request: web.Request) -> Client:
    """The client this request counts against (service/core/clients.py), resolved once per request
    and without I/O: the account of a token the viewer cache knows, else the address (through
    `trusted_proxies` only)."""
    found = request.get(CLIENT)
    if found is not None:
        return found
    found = request[CLIENT] = client_from(request.app, request.remote, request.headers)
    return found


def client_from(app: web.Application, remote: str | None, headers) -> Client:
    """client_of before a request object exists: its peer's address and its headers."""
    address = client_address(remote, tuple(headers.getall("Forwarded", ())),
                             tuple(headers.getall("X-Forwarded-For", ())),
                             parse_networks(app[SETTINGS].values["trusted_proxies"]))
    account_id = None
    values = headers.getall("Authorization", ())
    if values:
        match = _BEARER.fullmatch(values[0]) if len(values) == 1 else None
        if match is not None and VIEWERS in app:
            account_id = app[VIEWERS].client_of(hash_token(match.group(1)))
    return client(address, account_id, token=bool(values))


async def viewer_of(request: web.Request, token=FROM_HEADER) -> Viewer:
    """The viewer of this request (ANONYMOUS without a token), resolved once per request."""
    viewer = request.get(VIEWER)
    if viewer is None:
        if token is FROM_HEADER:
            token = bearer_token(request)
        viewer = await viewer_for_token(request.app, token)
        deny = request.app.get(DENY_LIST)
        if deny is not None and viewer.id is not None and viewer.id in deny.deny_accounts:
            raise ApiError(403, "denied", "requests from this client are refused")
        request[VIEWER] = viewer
    return viewer


async def require_viewer(request: web.Request) -> Viewer:
    """The signed-in viewer; 401 for an anonymous request."""
    viewer = await viewer_of(request)
    if viewer.anonymous:
        raise unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
    return viewer


async def viewer_for_token(app: web.Application, token: str | None) -> Viewer:
    """Cached: token -> account id -> Viewer. On a miss, one round trip resolves both."""
    if token is None:
        return ANONYMOUS
    cache, db = app[VIEWERS], app[DB]
    token_hash = hash_token(token)
    account_id = cache.account_of(token_hash)
    if account_id is not None:
        viewer = cache.viewer(account_id)
        if viewer is None:
            _injected_fault(app)
            viewer = await relation_queries.viewer_relations(db, account_id)
            cache.remember(None, viewer)
        return viewer
    _injected_fault(app)
    owner = await relation_queries.token_owner(db, token_hash)
    if owner is None or owner.state != "active":
        raise unauthorized(_INVALID)
    cache.remember(token_hash, owner.viewer)
    return owner.viewer


def _injected_fault(app: web.Application) -> None:
    """Tests make loading a viewer's relations fail (service/resilience/faults.py) to check that the
    rules fail closed: no relations, no personalized answer (never an anonymous one)."""
    fault = app[FAULTS].viewer_relations if FAULTS in app else None
    if fault is not None:
        raise fault


def require_admin(request: web.Request) -> None:
    """The admin API's gate: 403 `admin_disabled` when no admin_token is configured, 401 when
    the request does not carry it (compared in constant time)."""
    expected = request.app[SETTINGS].admin_token
    if not expected:
        raise ApiError(403, "admin_disabled", "the admin API is disabled (set admin_token)")
    token = bearer_token(request)
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise unauthorized("the admin API needs 'Authorization: Bearer <admin_token>'",
                           realm="arbor-admin")
