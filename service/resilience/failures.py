"""What counts as a dependency failing (as opposed to a request being wrong)."""
from __future__ import annotations

import asyncio

import asyncpg

# The database is unreachable, overloaded or too slow: degrade or answer 503, never 500.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, ConnectionError, OSError,
    asyncio.TimeoutError)
