"""The asyncpg pool, wrapped so that every round trip is counted.

Round trips are counted twice on purpose: per request (a context variable the handlers
read for the Server-Timing header and the access log), and in total by asyncpg's own
query logger on each connection, which also sees statements that bypass this wrapper.
"""
from __future__ import annotations

import contextvars
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import asyncpg


@dataclass
class QueryStats:
    round_trips: int = 0
    seconds: float = 0.0


_stats: contextvars.ContextVar[QueryStats | None] = contextvars.ContextVar("arbor_query_stats",
                                                                            default=None)


def start_query_stats() -> QueryStats:
    """Begin counting round trips for the current task (one request)."""
    stats = QueryStats()
    _stats.set(stats)
    return stats


class _Counted:
    """Connection methods that record each call as one round trip."""

    def __init__(self, con: asyncpg.Connection):
        self._con = con

    async def _run(self, method: str, sql: str, args: tuple) -> Any:
        stats = _stats.get()
        started = time.perf_counter()
        try:
            return await getattr(self._con, method)(sql, *args)
        finally:
            if stats is not None:
                stats.round_trips += 1
                stats.seconds += time.perf_counter() - started

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run("fetch", sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._run("fetchrow", sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, args)

    async def execute(self, sql: str, *args: Any) -> str:
        return await self._run("execute", sql, args)

    async def executemany(self, sql: str, args: list) -> None:
        stats = _stats.get()
        await self._con.executemany(sql, args)
        if stats is not None:
            stats.round_trips += 1

    @property
    def raw(self) -> asyncpg.Connection:
        return self._con


async def _keep_session(con: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset (RESET ALL, UNLISTEN, ...) on every release: Arbor never
    changes session state, and the reset would cost one extra round trip per acquire. An
    open transaction is still rolled back by the pool itself."""


class Database:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.queries_executed = 0  # every statement on every connection (asyncpg query logger)
        self.query_log: list[str] | None = None  # set to a list to record statements (tests)

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10,
                      statement_timeout_ms: int = 2000, connect_timeout: float = 5.0) -> "Database":
        db = cls.__new__(cls)
        db.queries_executed = 0
        db.query_log = None

        async def init(con: asyncpg.Connection) -> None:
            # asyncpg introspects non-scalar types (bigint[]) on first use per connection,
            # costing extra round trips inside some unlucky request; pay it at connect.
            await con.fetchrow("SELECT $1::bigint[], $2::int[], $3::text[], $4::smallint[]",
                               [0], [0], [""], [0])
            con.add_query_logger(db._count_query)

        db.pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout, init=init,
            reset=_keep_session,
            server_settings={"statement_timeout": str(statement_timeout_ms),
                             "application_name": "arbor",
                             # Every statement is an index lookup whose best plan does not
                             # depend on its parameters; re-planning each execution cost
                             # ~0.7 ms per statement, half the database time of a render.
                             "plan_cache_mode": "force_generic_plan"})
        return db

    def _count_query(self, record: Any) -> None:
        self.queries_executed += 1
        if self.query_log is not None:
            self.query_log.append(record.query)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Counted]:
        async with self.pool.acquire() as con:
            yield _Counted(con)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Counted]:
        async with self.pool.acquire() as con:
            async with con.transaction():
                yield _Counted(con)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as con:
            return await con.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as con:
            return await con.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.connection() as con:
            return await con.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.connection() as con:
            return await con.execute(sql, *args)
