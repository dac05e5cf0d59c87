"""/login and /logout: the pages' optional signed-in view.

GET /login shows a form with one field, an account token; POST /login checks the token
(service/http/auth.viewer_for_token: unknown, revoked and inactive all get the same answer)
and keeps it in the `arbor-session` cookie: HttpOnly (no script reads it), SameSite=Lax (no
other site's POST or subresource carries it), Secure when the request came over TLS, Path=/.
The pages then render for that viewer, exactly as the API does for `Authorization: Bearer`.

CSRF: the pages change nothing but the session itself. The login and logout POSTs are
refused (403) when the browser says they come from another site (`Origin` not this host,
or `Sec-Fetch-Site: cross-site`), so another site can neither sign a reader in to its own
account nor sign them out. `next` is followed only to a path on this site.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from service.core.errors import ApiError
from service.http.auth import SESSION_COOKIE, is_token, session_token, viewer_for_token
from service.http.html import error_page, page
from service.resilience.failures import DATABASE_ERRORS

SESSION_MAX_AGE_S = 7 * 24 * 3600
_NO_STORE = {"Cache-Control": "no-store"}
MAX_FORM_BYTES = 4096


def _next(request: web.Request) -> str:
    """Where to go after signing in: a path on this site, else the home page."""
    raw = request.query.get("next", "/")
    parts = urlsplit(raw)
    if (not raw.startswith("/") or raw.startswith("//") or "\\" in raw or parts.scheme
            or parts.netloc or len(raw) > 2000):
        return "/"
    return raw


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    parts = urlsplit(origin)
    return parts.netloc.lower() != (request.host or "").lower()


def _refused(request: web.Request) -> web.Response:
    return error_page(request, ApiError(403, "cross_site", "Signing in or out from another "
                                        "site is refused. Use this site's own form."))


def _form(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    return page(request, "login.html", {"next": _next(request), "error": error,
                                        "viewer_handle": "yes" if session_token(request)
                                        else None}, status=status, headers=_NO_STORE)


async def login_form(request: web.Request) -> web.Response:
    return _form(request)


async def login(request: web.Request) -> web.Response:
    if _cross_site(request):
        return _refused(request)
    if request.content_type != "application/x-www-form-urlencoded":
        return _form(request, error="Send the sign-in form (application/x-www-form-urlencoded).",
                     status=400)
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return _form(request, error="The form is too large.", status=400)
    form = await request.post()
    token = form.get("token")
    token = token.strip() if isinstance(token, str) else ""
    if not token or not is_token(token):
        return _form(request, error="That is not an account token.", status=400)
    try:
        await viewer_for_token(request.app, token)
    except ApiError as e:
        if e.status != 401:
            raise
        return _form(request, error="That token is not valid.", status=401)
    except DATABASE_ERRORS:
        return error_page(request, ApiError(503, "database_unavailable", "", retry_after=1))
    response = web.Response(status=303, headers={"Location": _next(request), **_NO_STORE})
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, path="/",
                        httponly=True, samesite="Lax", secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    if _cross_site(request):
        return _refused(request)
    response = web.Response(status=303, headers={"Location": "/", **_NO_STORE})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


ROUTES = [
    web.get("/login", login_form),
    web.post("/login", login),
    web.post("/logout", logout),
]
