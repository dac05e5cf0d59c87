"""Read replicas: streaming standbys that serve reads, chosen per request, LSN-sticky.

`Replicas` holds one pool per standby and polls, every `poll_s`, the primary's WAL position
(pg_current_wal_lsn()) and each standby's replayed position (pg_last_wal_replay_lsn()) and
lag. A read goes to a standby only if
  * it answered its last poll (a failed poll or query takes it out until a poll succeeds:
    the breaker, probed by the poll itself), and its lag is within `max_lag_s`; and
  * it has replayed at least the `min_lsn` the caller asks for: the primary's WAL insert
    position after this viewer's last write (`remember()`, kept `sticky_s`), so that a viewer never
    reads an older state than their own last write (GitLab's database load balancer does the
    same). The standby's replay position is known as of its last poll, which is a lower bound
    of where it is now (replay only moves forward): the check never passes too early.
Otherwise the read goes to the primary. `route()` sets the choice for the current task
(contextvars) and Database.acquire() follows it; transactions (writes) always use the primary.

Cost: per poll one round trip to the primary and one to each standby; per read a dict lookup.
Lag is measured as time: 0 when the standby has replayed what the primary had at the poll,
else now() - pg_last_xact_replay_timestamp() on the standby.
"""
from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Hashable

import asyncpg
from cachetools import TTLCache

log = logging.getLogger("arbor.replicas")

# The pool the current task's reads use (None: the primary's).
read_pool: contextvars.ContextVar[asyncpg.Pool | None] = contextvars.ContextVar(
    "arbor_read_pool", default=None)


def parse_lsn(text: str | None) -> int:
    """'16/B374D848' -> an integer that orders as the WAL does; None (not a standby) -> 0."""
    if not text:
        return 0
    high, _, low = str(text).partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Replica:
    name: str                       # replica-0, replica-1, ...: never the URL (secrets)
    dsn: str
    pool: asyncpg.Pool | None = None
    up: bool = False
    replay_lsn: int = 0
    lag_s: float | None = None
    reads: int = 0
    failures: int = 0
    last_error: str | None = None

    def snapshot(self, max_lag_s: float) -> dict:
        return {"name": self.name, "up": self.up, "lag_s": self.lag_s,
                "usable": self.usable(max_lag_s), "reads": self.reads,
                "failures": self.failures, "last_error": self.last_error}

    def usable(self, max_lag_s: float) -> bool:
        return self.up and self.lag_s is not None and self.lag_s <= max_lag_s


@dataclass
class Replicas:
    primary: Any                    # storage.db.Database
    urls: list[str]
    max_lag_s: float = 1.0
    sticky_s: float = 60.0
    poll_s: float = 0.2
    sticky_size: int = 100_000
    pool_min: int = 1
    pool_max: int = 10
    connect_timeout: float = 5.0
    statement_timeout_ms: int = 2000
    replicas: list[Replica] = field(default_factory=list)
    primary_lsn: int = 0
    primary_reads: int = 0

    def __post_init__(self) -> None:
        self.replicas = [Replica(f"replica-{i}", url) for i, url in enumerate(self.urls)]
        # At least as long as a usable standby may lag: after it, any usable one has it.
        self._sticky: TTLCache[Hashable, int] = TTLCache(
            self.sticky_size, max(self.sticky_s, 2 * self.max_lag_s))
        self._turn = itertools.count()
        self._task: asyncio.Task | None = None

    def set_limits(self, max_lag_s: float, sticky_s: float) -> None:
        """Live changes of replica_max_lag_ms and replica_sticky_s. The viewers' positions
        are kept, each for the new stickiness in full (longer than its remainder: a viewer
        reads the primary a little longer, never a replica too early). O(viewers remembered),
        once per change."""
        if (max_lag_s, sticky_s) == (self.max_lag_s, self.sticky_s):
            return
        self.max_lag_s, self.sticky_s = max_lag_s, sticky_s
        old = self._sticky
        self._sticky = TTLCache(self.sticky_size, max(sticky_s, 2 * max_lag_s))
        self._sticky.update(old.items())

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        await self.poll()
        self._task = asyncio.create_task(self._poll_forever(), name="arbor-replicas")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for r in self.replicas:
            if r.pool is not None:
                r.pool.terminate()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.poll()

    async def poll(self) -> None:
        try:
            self.primary_lsn = parse_lsn(await self.primary.pool.fetchval(
                "SELECT pg_current_wal_insert_lsn()::text", timeout=self.connect_timeout))
        except Exception as e:  # noqa: BLE001 - the primary's own breaker deals with it
            log.debug("replicas: primary position unknown: %s", e)
        await asyncio.gather(*(self._poll_one(r) for r in self.replicas))

    async def _poll_one(self, r: Replica) -> None:
        try:
            if r.pool is None:
                r.pool = await asyncpg.create_pool(
                    r.dsn, min_size=self.pool_min, max_size=self.pool_max,
                    timeout=self.connect_timeout,
                    server_settings={"statement_timeout": str(self.statement_timeout_ms),
                                     "application_name": "arbor-replica-reads",
                                     "plan_cache_mode": "force_generic_plan"})
            row = await r.pool.fetchrow(
                "SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_is_in_recovery() AS standby,"
                " extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS behind",
                timeout=self.connect_timeout)
        except Exception as e:  # noqa: BLE001 - down until a poll succeeds again
            if r.up:
                log.warning("replicas: %s is down (%s: %s); reads go elsewhere", r.name,
                            type(e).__name__, e)
            r.up, r.failures, r.last_error = False, r.failures + 1, f"{type(e).__name__}: {e}"[:200]
            return
        if not row["standby"]:
            r.up, r.last_error = False, "not a standby (promoted?): not used for reads"
            return
        r.replay_lsn = max(r.replay_lsn, parse_lsn(row["lsn"]))
        caught_up = r.replay_lsn >= self.primary_lsn
        r.lag_s = 0.0 if caught_up else max(0.0, float(row["behind"] or 0.0))
        if not r.up:
            log.info("replicas: %s is up (lag %.3fs)", r.name, r.lag_s)
        r.up, r.last_error = True, None

    # -- routing -------------------------------------------------------------------
    def remember(self, who: Hashable, lsn: int) -> None:
        """`who` wrote; the primary was at `lsn` after it."""
        self._sticky[who] = max(lsn, self._sticky.get(who, 0))

    def min_lsn(self, who: Hashable | None) -> int:
        return self._sticky.get(who, 0) if who is not None else 0

    def choose(self, who: Hashable | None) -> Replica | None:
        """A usable standby that has replayed `who`'s last write, in turn; None: the primary."""
        need = self.min_lsn(who)
        usable = [r for r in self.replicas
                  if r.usable(self.max_lag_s) and r.replay_lsn >= need and r.pool is not None]
        if not usable:
            self.primary_reads += 1
            return None
        r = usable[next(self._turn) % len(usable)]
        r.reads += 1
        return r

    def route(self, who: Hashable | None) -> contextvars.Token:
        """For the current task's reads; give the token back to `unroute`."""
        r = self.choose(who)
        return read_pool.set(r.pool if r is not None else None)

    @staticmethod
    def unroute(token: contextvars.Token) -> None:
        read_pool.reset(token)

    def failed(self, pool: asyncpg.Pool) -> None:
        """A read on this standby failed: out until its next poll succeeds."""
        for r in self.replicas:
            if r.pool is pool and r.up:
                r.up, r.failures = False, r.failures + 1
                log.warning("replicas: %s failed a read; out until it answers a poll", r.name)

    async def position_after_write(self) -> int:
        """The primary's WAL insert position now, after a write committed: past the write's
        commit record even with synchronous_commit off (the flushed position may not be)."""
        return parse_lsn(await self.primary.pool.fetchval(
            "SELECT pg_current_wal_insert_lsn()::text"))

    def snapshot(self) -> dict:
        return {"max_lag_s": self.max_lag_s, "primary_reads": self.primary_reads,
                "replicas": [r.snapshot(self.max_lag_s) for r in self.replicas]}
