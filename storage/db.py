"""The asyncpg pool, wrapped so that every round trip is counted.

Round trips are counted twice on purpose: per request (a context variable the handlers
read for the Server-Timing header and the access log), and in total by asyncpg's own
query logger on each connection, which also sees statements that bypass this wrapper.

Bounded waits, so that a database that is down, restarting or black-holed (a network
partition: nothing answers, nothing is refused) costs a request a bounded time and then a
database error (which the service answers 503), never a hang, and so that the pool recovers on
its own when the database returns (see ops/runbook-database.md):

  * `acquire_timeout`: waiting for a pool connection, including opening a new one, and the
    release that follows (asyncpg uses the acquire timeout for both);
  * `command_timeout`: a client-side bound on every statement (asyncpg's `command_timeout`),
    by default the server's `statement_timeout` plus a margin, so that the server's own
    cancellation normally fires first and this one only when the server never answers. A
    statement that times out client-side sends a cancel request, itself bounded by the same
    timeout; when that fails the connection is terminated rather than reused;
  * `connect_timeout`: opening one connection;
  * `close()` is bounded too, and terminates the pool's connections past its timeout.

Connections that the server closed (a restart) are replaced by asyncpg on the next acquire.

`pinned()`: every statement of a task (a render: several statements in a row) on one pool
connection, acquired once, instead of one acquire and release per statement (~0.2 ms each).
The statements of a pinned task must run one after the other (they do: a render awaits each
before the next); a statement cancelled by a time-out leaves the connection usable (asyncpg
waits for the cancellation before the next statement).
"""
from __future__ import annotations

import asyncio
import contextvars
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import asyncpg

from .replicas import read_pool


@dataclass
class QueryStats:
    round_trips: int = 0
    seconds: float = 0.0


# (database, connection) of the task's pinned() block, if any
_pinned: contextvars.ContextVar[tuple[Any, asyncpg.Connection] | None] = contextvars.ContextVar(
    "arbor_pinned_connection", default=None)
_stats: contextvars.ContextVar[QueryStats | None] = contextvars.ContextVar("arbor_query_stats",
                                                                            default=None)


def start_query_stats() -> QueryStats:
    """Begin counting round trips for the current task (one request)."""
    stats = QueryStats()
    _stats.set(stats)
    return stats


class CountedConnection:
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


# Added to the server's statement_timeout to get the client-side bound on one statement.
COMMAND_TIMEOUT_MARGIN_S = 1.0


async def _keep_session(con: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset (RESET ALL, UNLISTEN, ...) on every release: Arbor never
    changes session state, and the reset would cost one extra round trip per acquire. An
    open transaction is still rolled back by the pool itself."""


class Database:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float | None = None):
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self.queries_executed = 0  # every statement on every connection (asyncpg query logger)
        self.query_log: list[str] | None = None  # set to a list to record statements (tests)
        self.replicas = None  # storage.replicas.Replicas, when replica_urls are set
        self.acquire_waits = self.acquire_timeouts = 0
        self.acquire_wait_seconds = 0.0

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10,
                      statement_timeout_ms: int = 2000, connect_timeout: float = 5.0,
                      acquire_timeout: float | None = 5.0,
                      command_timeout: float | None = None) -> "Database":
        """`command_timeout` None: `statement_timeout_ms` + COMMAND_TIMEOUT_MARGIN_S (no bound
        when the statement timeout is 0). `acquire_timeout` None: wait for a connection
        as long as it takes (not for the service)."""
        db = cls.__new__(cls)
        db.queries_executed = 0
        db.query_log = None
        db.replicas = None
        db.acquire_waits = db.acquire_timeouts = 0
        db.acquire_wait_seconds = 0.0
        db.acquire_timeout = acquire_timeout
        if command_timeout is None and statement_timeout_ms > 0:
            command_timeout = statement_timeout_ms / 1000 + COMMAND_TIMEOUT_MARGIN_S

        async def init(con: asyncpg.Connection) -> None:
            # asyncpg introspects non-scalar types (bigint[]) on first use per connection,
            # costing extra round trips inside some unlucky request; pay it at connect.
            await con.fetchrow("SELECT $1::bigint[], $2::int[], $3::text[], $4::smallint[]",
                               [0], [0], [""], [0])
            con.add_query_logger(db._count_query)

        db.pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout, init=init,
            reset=_keep_session, command_timeout=command_timeout or None,
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

    async def close(self, timeout: float = 10.0) -> None:
        """Close gracefully; past `timeout` (a database that no longer answers would make a
        graceful close wait forever) terminate the connections instead."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except (asyncio.TimeoutError, OSError, asyncpg.InterfaceError,
                asyncpg.PostgresConnectionError):
            self.pool.terminate()

    def acquire(self) -> "_Acquire | Any":
        """`pool.acquire()` bounded by the acquire timeout (which also bounds the release),
        counting the acquisitions that had to wait (every connection lent out) and how long
        they waited, and those that timed out: O(1) more per acquisition, a clock read only
        when it waits. Of the read replica storage/replicas.py routed this task's reads to,
        if any (falling back to the primary when it cannot give a connection; not counted),
        else of the primary."""
        pool = read_pool.get()
        if pool is None:
            return _Acquire(self, self.pool.acquire(timeout=self.acquire_timeout))
        return self._acquire_replica(pool)

    @asynccontextmanager
    async def _acquire_replica(self, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
        try:
            con = await pool.acquire(timeout=self.acquire_timeout)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError, asyncpg.CannotConnectNowError):
            if self.replicas is not None:
                self.replicas.failed(pool)
            read_pool.set(None)  # the rest of this request reads the primary
            async with _Acquire(self, self.pool.acquire(timeout=self.acquire_timeout)) as con:
                yield con
            return
        try:
            yield con
        finally:
            await pool.release(con, timeout=self.acquire_timeout)

    @asynccontextmanager
    async def pinned(self) -> AsyncIterator[None]:
        """Run this block's fetch/fetchrow/fetchval/execute on one connection (see above).
        Nested blocks share the outer one's connection."""
        current = _pinned.get()
        if current is not None and current[0] is self:
            yield
            return
        async with self.acquire() as con:
            token = _pinned.set((self, con))
            try:
                yield
            finally:
                _pinned.reset(token)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[CountedConnection]:
        current = _pinned.get()
        if current is not None and current[0] is self:
            yield CountedConnection(current[1])
            return
        async with self.acquire() as con:
            yield CountedConnection(con)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[CountedConnection]:
        """Always on the primary (a write), whatever the task's reads are routed to."""
        async with _Acquire(self, self.pool.acquire(timeout=self.acquire_timeout)) as con:
            async with con.transaction():
                yield CountedConnection(con)

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


class _Acquire:
    """pool.acquire()'s context manager, measured. Whether a connection is free is the pool's
    queue of holders being empty (asyncpg keeps one holder per possible connection there
    while it is not lent out): O(1), where get_idle_size() walks every holder."""

    __slots__ = ("db", "inner")

    def __init__(self, db: Database, inner: Any):
        self.db, self.inner = db, inner

    async def __aenter__(self) -> asyncpg.Connection:
        queue = getattr(self.db.pool, "_queue", None)
        if queue is None or not queue.empty():
            try:
                return await self.inner.__aenter__()
            except asyncio.TimeoutError:
                self.db.acquire_timeouts += 1
                raise
        started = time.perf_counter()
        try:
            return await self.inner.__aenter__()
        except asyncio.TimeoutError:
            self.db.acquire_timeouts += 1
            raise
        finally:
            self.db.acquire_waits += 1
            self.db.acquire_wait_seconds += time.perf_counter() - started

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.inner.__aexit__(*exc)
