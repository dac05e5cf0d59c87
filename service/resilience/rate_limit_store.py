"""Where the rate limits' counters live: in this process (default), or in a shared Redis /
Valkey (`rate_limit_storage_url`), so that every process and host spends one budget.

Both keep limits' sliding window counter:
  * in process, LocalWindows: limits' algorithm restated, not its code, measured:
    limits' async MemoryStorage schedules, after every hit, a task that walks *every* key to
    expire old ones: 6 us per hit with 100 keys, 81 us with 10,000 and 470 us with 50,000
    (one client with many addresses could make every request slower); with that replaced
    by a bounded O(1) table, its strategy and storage layers (seven wrapper calls per hit)
    still cost 7 us per hit (a cached read costs ~140 us of CPU in all). LocalWindows:
    ~1 us, whatever the number of clients.
  * shared, limits' RedisStorage over redis-py (one Lua script call per operation), on a
    connection pool of our own: short socket timeouts (`rate_limit_storage_timeout_ms`), one
    immediate retry (a connection gone stale across a Redis restart), no backoff.

Redis down: fail open to the in-process counters (limits then hold per process, not across
them), never to no limits and never to an error. A circuit breaker (service/resilience/breakers.py)
stops asking a store that failed; one request probes it again after 0.5-5 s (doubling,
jittered). Each change is logged once, at WARNING going down and INFO coming back; while
down, /readyz says `degraded: ["rate_limit_store"]` (and stays 200) and the metrics
`arbor_rate_limit_store_up` (0) and `arbor_rate_limit_store_errors` tell it.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from urllib.parse import urlsplit

import limits
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from service.core.rate_limit_syntax import limits_uri

from .breakers import BreakerOpen, CircuitBreaker
from .rate_limit_rules import Policy, Window

log = logging.getLogger("arbor.rate_limits")

class LocalWindows:
    """limits' sliding window counter, restated for one process: per (client, rate) the
    current and the previous fixed window's counts; weighted = previous x (share of the
    previous window still inside the sliding one) + current; a hit of n units is admitted
    while floor(weighted) + n <= quota (limits' rule, so that failing over from Redis
    changes nothing but where the counts are). O(1) per call, at most `max_keys` entries,
    least recently charged first out."""

    def __init__(self, max_keys: int = 800_000, clock=time.time) -> None:
        self.max_keys = max_keys
        self._clock = clock
        # (key, quota, window) -> [window index, current count, previous count]
        self._entries: OrderedDict[tuple, list] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, policy, key: str, now: float, create: bool):
        expiry = policy.window_s
        index = int(now // expiry)
        ident = (key, policy.quota, expiry)
        entry = self._entries.get(ident)
        if entry is None:
            if not create:
                return None, ident
            entry = self._entries[ident] = [index, 0, 0]
            if len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        elif entry[0] != index:
            entry[2] = entry[1] if entry[0] == index - 1 else 0
            entry[0], entry[1] = index, 0
        return entry, ident

    async def hit(self, policy, key: str, cost: int) -> bool:
        return self.hit_now(policy, key, cost)

    def hit_now(self, policy, key: str, cost: int) -> bool:
        """hit without a coroutine (nothing here waits)."""
        quota = policy.quota
        if cost > quota:
            return False
        now = self._clock()
        entry, ident = self._entry(policy, key, now, True)
        expiry = policy.window_s
        weighted = entry[2] * (expiry - now % expiry) / expiry + entry[1]
        if math.floor(weighted) + cost > quota:
            return False
        entry[1] += cost
        self._entries.move_to_end(ident)
        return True

    async def window(self, policy, key: str) -> Window:
        now = self._clock()
        entry, _ = self._entry(policy, key, now, False)
        expiry = policy.window_s
        left = expiry - now % expiry
        if entry is None:
            return Window(0, 0.0, 0, left + expiry)
        return Window(entry[2], left if entry[2] else 0.0, entry[1], left + expiry)


def _redis_storage(url: str, timeout_s: float) -> tuple[Storage, object]:
    # Imported only when a shared store is configured: most processes never load redis.
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    redis_url = url.replace("valkey", "redis", 1) if url.startswith("valkey") else url
    pool = redis.asyncio.ConnectionPool.from_url(
        redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1))
    storage = limits.aio.storage.RedisStorage(limits_uri(url), implementation="redispy",
                                              wrap_exceptions=True, key_prefix="arbor",
                                              connection_pool=pool)
    return storage, pool


class Store:
    """hit / window against the shared store when there is one and it answers, else against
    the in-process counters."""

    def __init__(self, url: str = "", *, timeout_s: float = 0.05, max_keys: int = 800_000):
        self.local = LocalWindows(max_keys)
        self.url = url
        self.shared: Storage | None = None
        self._pool = None
        self._shared = None
        self.errors = 0
        self.down_since: float | None = None
        self.breaker = CircuitBreaker("rate_limit_store", failure_threshold=1, backoff_s=0.5,
                                      max_backoff_s=5.0)
        # hit without a coroutine, when nothing would wait (no shared store), else None
        self.hit_now = None
        if url:
            self.shared, self._pool = _redis_storage(url, timeout_s)
            self._shared = SlidingWindowCounterRateLimiter(self.shared)
            self._failures = (limits.errors.StorageError, OSError, asyncio.TimeoutError,
                              *_as_tuple(self.shared.base_exceptions))
        else:  # no shared store: straight to the local counters
            self.hit, self.window = self.local.hit, self.local.window
            self.hit_now = self.local.hit_now

    @property
    def kind(self) -> str:
        return "redis" if self.shared is not None else "memory"

    @property
    def shared_up(self) -> bool | None:
        return None if self.shared is None else self.down_since is None

    async def hit(self, policy: Policy, key: str, cost: int) -> bool:
        """Charge `cost` units if they fit (limits' sliding window counter); False if not."""
        return await self._run(lambda: self._shared.hit(policy.item, key, cost=cost),
                               lambda: self.local.hit(policy, key, cost))

    async def window(self, policy: Policy, key: str) -> Window:
        """The counts behind the window (service/resilience/rate_limit_rules.Window)."""
        return await self._run(self._shared_window(policy.item, key),
                               lambda: self.local.window(policy, key))

    def _shared_window(self, item, key):
        async def call():
            return Window(*await self.shared.get_sliding_window(item.key_for(key),
                                                                item.get_expiry()))
        return call

    async def _run(self, shared, local):
        try:
            self.breaker.before()
        except BreakerOpen:
            return await local()
        try:
            result = await shared()
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except self._failures as e:
            self._failed(e)
            return await local()
        if self.down_since is not None:
            log.info("rate limit store %s answers again: limits are shared again after "
                     "%.1f s per process", self._where(), time.monotonic() - self.down_since)
            self.down_since = None
        self.breaker.success()
        return result

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        self.breaker.failure()
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("rate limit store %s failed (%s: %s): limiting in this process only "
                        "(each process keeps its own counts) until it answers again",
                        self._where(), type(error).__name__, error)

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or parts.path}" + \
            (f":{parts.port}" if parts.port else "")  # never the password

    def snapshot(self) -> dict:
        out = {"storage": self.kind, "local_counters": len(self.local)}
        if self.shared is not None:
            out.update(store=self._where(), shared_up=self.shared_up, errors=self.errors,
                       breaker=self.breaker.snapshot())
            if self.down_since is not None:
                out["down_for_s"] = round(time.monotonic() - self.down_since, 1)
        return out

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()


def _as_tuple(exc) -> tuple:
    return exc if isinstance(exc, tuple) else (exc,)
