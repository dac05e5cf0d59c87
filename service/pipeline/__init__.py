"""pipeline: a conversation request's stages, as Bluesky's AppView has them. skeleton.py
(ids and counts, from storage/thread_queries.py) -> conversation.py (hydrate: posts,
quoted posts, the viewer) -> visibility_rules.py (pure rules) -> presenters.py (pure, to
JSON); cursors.py for everything cut; quotes.py for a post's quote list; deps.py is what the
pipeline needs, limits.py the view limits it is asked for; viewer_cache.py caches viewers;
change_notices.py says what another process's write invalidates in those caches;
post_writes.py holds the rules of a viewer's post writes that /v1 and Mastodon share.

No aiohttp: it is called with plain values and returns JSON-ready dicts. May import:
service.resilience, service.core, storage.
"""
