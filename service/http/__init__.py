"""http: the aiohttp glue between the endpoints and the layers below. Every app and request
key (keys.py), responses (responses.py), who is asking (auth.py), the middlewares (errors,
timing, invalidation: middlewares.py; admission_middleware.py; rate_limit_middleware.py;
metrics_middleware.py), errors raised before the handlers (protocol_errors.py), the read
path's request adapter (cached_render.py), Idempotency-Key writes (idempotency.py), GC
tuning at start-up (gc_tuning.py), the change feed applied to this process's caches
(coherence.py), reads routed to read replicas (replica_routing.py).

May import: aiohttp, service.inputs, service.pipeline, service.resilience, service.core,
storage; never service.api, service.openapi, service.app or service.cli.
"""
