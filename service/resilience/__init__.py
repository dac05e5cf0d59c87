"""resilience: what keeps the service answering under load and failure. Admission (load
shedding), circuit breakers, the render cache and its coalescer, per-client rate limits
(rules, limiter, store, the per-app state), top clients, injected faults, the failure
classes, the event loop's lag.

Logic over a clock and plain data structures; no aiohttp (the middlewares that apply it are
in service/http/). May import: service.core, storage, and libraries (limits, redis, cachetools).
"""
