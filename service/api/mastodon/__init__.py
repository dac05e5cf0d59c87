"""api.mastodon: the Mastodon-compatible subset (/api/v1, /api/v2), one module per URL prefix:
instance.py (/api/v1/instance, /api/v2/instance), accounts.py (/api/v1/accounts/...),
statuses.py (/api/v1/statuses/...). Entities in Mastodon's shapes
(service/pipeline/mastodon_entities.py), errors as `{"error": "..."}`
(service/http/mastodon.py). May import: what service.api may import; its modules never
import each other.
"""
