"""Arbor's aiohttp service, in layers. A layer imports only the layers below it, and the
packages on one line are independent of each other (import-linter contracts in
pyproject.toml, run by tests/test_architecture.py):

    cli              the `arbor` command (serve, seed, migrate, settings, accounts, import, repair)
    app              create_app(): cleanup contexts, middlewares, api.ROUTES
    api              the endpoints: one module per URL prefix, api.ROUTES lists them all
    openapi | http   the contract, mirroring api/ | aiohttp glue: keys, responses, auth,
                     middlewares, the read path's request adapter
    inputs           pure parsing of what requests carry, and the patterns the contract shares
    pipeline         skeleton -> hydrate -> rules -> present (no aiohttp)
    resilience       admission, breakers, render cache, rate limits, faults (no aiohttp)
    core             settings, errors, who a client is, logs, the metrics registry (no aiohttp)

and storage/ (asyncpg, SQL, the shared row types) below all of them; storage never imports
service. May import: nothing itself (this file only describes the house).
"""
