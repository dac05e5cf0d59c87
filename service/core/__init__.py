"""core: what every layer of the service uses. The settings table (settings.py), the one
error type (errors.py), who a client is (clients.py), logging (logs.py), the rate-limit
settings' syntax (rate_limit_syntax.py) and the metrics registry (metrics.py).

Pure logic and data, no I/O and no aiohttp. May import: storage (its value types), the
standard library and plain libraries (limits, prometheus-client); no other service layer.
"""
