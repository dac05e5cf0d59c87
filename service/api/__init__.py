"""api: the endpoints. One module per URL prefix (the URL tells the file); each exports its
ROUTES, and ROUTES below is every route the app serves, the one list (tests/test_docs.py
checks it equals the OpenAPI document's operations).

Handlers are thin: parse the input (service.inputs), call the pipeline or storage, present
(service.http.responses). Endpoint modules are independent of each other. May import:
service.openapi (the /openapi.json handler), service.http and every layer below it, storage.
"""
from . import conversations, me, ops, pages, posts
from .admin import accounts, conversations as admin_conversations, deny_list, posts as admin_posts
from .admin import settings, tokens, top_clients
from .mastodon import accounts as mastodon_accounts, instance, statuses

ROUTES = [
    *conversations.ROUTES,      # /v1/conversations/{post_id}[/replies|/ancestors]
    *posts.ROUTES,              # /v1/posts, /v1/posts/{post_id}[/quotes]
    *me.ROUTES,                 # /v1/me/...
    *accounts.ROUTES,           # /v1/admin/accounts/...
    *tokens.ROUTES,             # /v1/admin/tokens/{token_id}
    *admin_posts.ROUTES,        # /v1/admin/posts/import, /v1/admin/posts/{post_id}/labels/...
    *settings.ROUTES,           # /v1/admin/settings
    *admin_conversations.ROUTES,  # /v1/admin/conversations/{post_id}/limits
    *deny_list.ROUTES,          # /v1/admin/deny_list
    *top_clients.ROUTES,        # /v1/admin/top_clients
    *instance.ROUTES,           # /api/v1/instance, /api/v2/instance
    *mastodon_accounts.ROUTES,  # /api/v1/accounts/...
    *statuses.ROUTES,           # /api/v1/statuses[/{status_id}[/context|/favourite|...]]
    *ops.ROUTES,                # /healthz, /readyz, /metrics, /openapi.json
    *pages.ROUTES,              # HTML: /, /conversations/{post_id}[/replies|/ancestors], /login, /logout
]
