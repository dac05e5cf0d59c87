"""inputs: pure parsing of what requests carry, each problem a 400 that names it. Query
parameters and post ids (query.py), ids and keyset pages (pages.py), JSON bodies (bodies.py),
the body of POST /v1/posts (posts.py), import items (import_items.py), relations and muted
words (relations.py), conversation caps (caps.py), the Idempotency-Key (idempotency.py).

Every pattern and bound the OpenAPI document states is defined here once, so the contract
and the handlers accept exactly the same input. Given strings, mappings or bytes, never a
request: no aiohttp. May import: service.pipeline (the records it fills), service.core, storage.
"""
