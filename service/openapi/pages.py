"""The contract of the HTML pages (service/api/pages): `/`, `/conversations/{post_id}` with
its /replies and /ancestors pages, `/login` and `/logout`. Documented like every route (the
routes equal the document's operations), with text/html answers; errors raised before a
page handler (shedding, rate limits, a too-large body) are the API's JSON errors."""
from __future__ import annotations

from service.core.settings import Settings

from .common import CURSOR, POST_ID, Json, int_param, ref, view_params as view_params_of

SESSION = [{}, {"sessionCookie": []}]  # anonymous, or signed in through /login
_HTML = {"text/html": {"schema": {"type": "string"}}}
_JSON_ERROR = {"application/json": {"schema": ref("Error")}}


def html(description: str, *, json_too: bool = False) -> Json:
    return {"description": description, "content": {**_HTML, **(_JSON_ERROR if json_too else {})}}


PAGE_ERRORS = {
    "400": html("An invalid parameter or cursor, named on the page (the API's 400s)."),
    "401": html("The session's token is no longer valid; the session cookie is removed."),
    "404": html("No such post, or not visible to the viewer: the same page, byte for byte."),
    "503": html("The database is unavailable and no saved copy exists (text/html), or the "
                "service is shedding load (`overloaded`, the API's JSON error); see "
                "Retry-After.", json_too=True),
}
SHED = html("The service is shedding load (`overloaded`, the API's JSON error); see "
             "Retry-After.", json_too=True)
_REDIRECT = {"description": "Done; go to `Location`.",
             "headers": {"Location": {"description": "A path on this site.", "required": True,
                                      "schema": {"type": "string", "pattern": "^/"}}}}
_CROSS_SITE = html("A POST from another site (`Origin` or `Sec-Fetch-Site`), refused.",
                   json_too=True)
_PAGE_HEADERS = {
    "Content-Security-Policy": {"description": "Only the page's own inline style and script "
                                               "(by hash); nothing else loads.",
                                "required": True, "schema": {"type": "string"}},
}


def schemas(s: Settings) -> Json:
    return {"LoginForm": {"type": "object", "required": ["token"],
                          "properties": {"token": {"type": "string", "maxLength": 600,
                                                   "description": "An account token."}}}}


def _page(op_id: str, summary: str, parameters: list, ok: str, *, errors: bool = True,
          security: list | None = None) -> Json:
    responses = {"200": {**html(ok), "headers": dict(_PAGE_HEADERS)},
                 **(PAGE_ERRORS if errors else {"503": SHED})}
    return {"get": {"operationId": op_id, "summary": summary, "security": security or SESSION,
                    "parameters": parameters, "responses": responses}}


def paths(s: Settings) -> Json:
    view_params = view_params_of(s, "Most reply nodes on the page.")
    next_param = {"name": "next", "in": "query", "required": False,
                  "description": "Where to go after signing in: a path on this site (anything "
                                 "else goes to /).", "schema": {"type": "string"}}
    return {
        "/": _page("homePage", "HTML: what Arbor is, the demo conversations, links to the "
                               "API docs and /readyz.", [], "The home page.", errors=False),
        "/conversations/{post_id}": _page(
            "conversationPage", "HTML: GET /v1/conversations/{post_id} as a page for people.",
            view_params, "The conversation: ancestors, the focal post, the reply tree, "
                         "\"show more\" links (the API's cursors) and a banner when degraded."),
        "/conversations/{post_id}/replies": _page(
            "repliesPage", "HTML: GET /v1/conversations/{post_id}/replies as a page.",
            [POST_ID, CURSOR, int_param("max_nodes", 1, s.max_max_nodes, s.default_max_nodes,
                                        "Most reply nodes on the page.")],
            "A page of replies, with its next link."),
        "/conversations/{post_id}/ancestors": _page(
            "ancestorsPage", "HTML: GET /v1/conversations/{post_id}/ancestors as a page.",
            [POST_ID, CURSOR], "A page of the ancestors between the root and the view."),
        "/login": {
            "get": {"operationId": "loginForm", "summary": "HTML: the sign-in form.",
                    "security": [{}], "parameters": [next_param],
                    "responses": {"200": html("The form."), "503": SHED}},
            "post": {"operationId": "login", "security": [{}], "parameters": [next_param],
                     "summary": "Sign in: keeps the token in the `arbor-session` cookie "
                                "(HttpOnly, SameSite=Lax).",
                     "requestBody": {"required": True, "content": {
                         "application/x-www-form-urlencoded": {"schema": ref("LoginForm")}}},
                     "responses": {
                         "303": {**_REDIRECT, "headers": {
                             **_REDIRECT["headers"],
                             "Set-Cookie": {"description": "arbor-session=<token>; HttpOnly; "
                                                           "SameSite=Lax; Path=/",
                                            "required": True, "schema": {"type": "string"}}}},
                         "400": html("Not a form, or not a token: the form again, saying so."),
                         "401": html("The token is not valid: the form again."),
                         "403": _CROSS_SITE,
                         "503": html("The database is unavailable (text/html), or the "
                                     "service is shedding load (JSON).", json_too=True)}}},
        "/logout": {"post": {"operationId": "logout", "security": SESSION,
                             "summary": "Sign out: removes the session cookie.",
                             "responses": {"303": _REDIRECT, "403": _CROSS_SITE,
                                           "503": SHED}}},
    }
