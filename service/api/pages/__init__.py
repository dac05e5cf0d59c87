"""The HTML pages for people (issue 16): a presenter over the same read path as the JSON API
(service/http/cached_render.read_body: the same render cache entries, coalescing, stale
copies, breaker), so the same limits, caches, degradation, shedding and viewer rules apply.

    /                                        home.py: what this is, the demo conversations
    /conversations/{post_id}[/replies|/ancestors]   conversations.py: the API's
                                             /v1/conversations/... as pages
    /login, /logout                          session.py: the optional signed-in view

One module per URL prefix, like the rest of service/api; ROUTES is their one list. The
modules are independent of each other. May import: service.http and every layer below it
(the page glue is service/http/html.py, the pure presenter service/pipeline/page_view.py),
storage.
"""
from . import conversations, home, session

ROUTES = [*home.ROUTES, *conversations.ROUTES, *session.ROUTES]
install = conversations.install  # the app factory's: the pages' HTML cache
