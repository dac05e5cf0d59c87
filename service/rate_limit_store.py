"""Where the rate limits' counters live: in this process (default), or in a shared Redis /
Valkey (`rate_limit_storage_url`), so that every process and host spends one budget.

Both are `limits` storages under limits' sliding-window-counter strategy:
  * in process, BoundedMemoryStorage: limits' MemoryStorage with its bookkeeping replaced.
    limits' own schedules a task after every hit that walks *every* key to expire old ones:
    measured at 6 us per hit with 100 keys, 81 us with 10,000 and 470 us with 50,000 (one
    client with many addresses could make every request slower). Here a counter expires
    when it is next read, and the table holds at most `max_keys` counters, least recently
    written first out: O(1) per operation whatever the number of clients.
  * shared, limits' RedisStorage over redis-py (one Lua script call per operation), on a
    connection pool of our own: short socket timeouts (`rate_limit_storage_timeout_ms`), one
    immediate retry (a connection gone stale across a Redis restart), no backoff.

Redis down: fail open to the in-process counters (limits then hold per process, not across
them), never to no limits and never to an error. A circuit breaker (service/breakers.py)
stops asking a store that failed; one request probes it again after 0.5-5 s (doubling,
jittered). Each change is logged once, at WARNING going down and INFO coming back; while
down, /readyz says `degraded: ["rate_limit_store"]` (and stays 200) and the metrics
`arbor_rate_limit_store_up` (0) and `arbor_rate_limit_store_errors` tell it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from urllib.parse import urlsplit

import limits
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from .breakers import BreakerOpen, CircuitBreaker
from .rate_limit_rules import Window

log = logging.getLogger("arbor.rate_limits")
SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "valkey": "async+redis",
           "valkeys": "async+rediss", "unix": "async+redis+unix"}


class BoundedMemoryStorage(MemoryStorage):
    """limits' in-process storage, with O(1) expiry and a bound on its size (see above).
    Single event loop: no locks needed (nothing awaits between a read and its write)."""

    STORAGE_SCHEME = ["async+arbor-memory"]

    def __init__(self, max_keys: int = 800_000, clock=time.time) -> None:
        super().__init__()
        self.max_keys = max_keys
        self._clock = clock
        self._counters: OrderedDict[str, list] = OrderedDict()  # key -> [count, expires_at]

    def __len__(self) -> int:
        return len(self._counters)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = self._clock()
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now:
            entry = self._counters[key] = [0, now + expiry]
            while len(self._counters) > self.max_keys:
                self._counters.popitem(last=False)
        else:
            self._counters.move_to_end(key)
        entry[0] += amount
        return entry[0]

    async def decr(self, key: str, amount: int = 1) -> int:
        entry = self._counters.get(key)
        if entry is None or entry[1] <= self._clock():
            return 0
        entry[0] = max(0, entry[0] - amount)
        return entry[0]

    async def get(self, key: str) -> int:
        entry = self._counters.get(key)
        if entry is None:
            return 0
        if entry[1] <= self._clock():
            del self._counters[key]
            return 0
        return entry[0]

    async def get_expiry(self, key: str) -> float:
        entry = self._counters.get(key)
        return entry[1] if entry is not None else self._clock()

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    async def reset(self) -> int | None:
        n = len(self._counters)
        self._counters.clear()
        return n

    async def check(self) -> bool:
        return True


def limits_uri(url: str) -> str:
    """`redis://host:6379/0` (or rediss, valkey, unix) -> the URI limits expects."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r}: the scheme must be one of {', '.join(sorted(SCHEMES))}")
    return SCHEMES[parts.scheme] + url[len(parts.scheme):]


def check_url(url: str) -> None:
    """Settings check: empty (in process) or a Redis URL."""
    if url:
        limits_uri(url)


def _redis_storage(url: str, timeout_s: float) -> tuple[Storage, object]:
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
    """hit / stats against the shared store when there is one and it answers, else against
    the in-process counters."""

    def __init__(self, url: str = "", *, timeout_s: float = 0.05, max_keys: int = 800_000):
        self.local = BoundedMemoryStorage(max_keys)
        self._local = SlidingWindowCounterRateLimiter(self.local)
        self.url = url
        self.shared: Storage | None = None
        self._pool = None
        self._shared = None
        self.errors = 0
        self.down_since: float | None = None
        self.breaker = CircuitBreaker("rate_limit_store", failure_threshold=1, backoff_s=0.5,
                                      max_backoff_s=5.0)
        if url:
            self.shared, self._pool = _redis_storage(url, timeout_s)
            self._shared = SlidingWindowCounterRateLimiter(self.shared)
            self._failures = (limits.errors.StorageError, OSError, asyncio.TimeoutError,
                              *_as_tuple(self.shared.base_exceptions))

    @property
    def kind(self) -> str:
        return "redis" if self.shared is not None else "memory"

    @property
    def shared_up(self) -> bool | None:
        return None if self.shared is None else self.down_since is None

    async def hit(self, item: limits.RateLimitItem, key: str, cost: int) -> bool:
        """Charge `cost` units if they fit (limits' sliding window counter); False if not."""
        return await self._run(lambda limiter, storage: limiter.hit(item, key, cost=cost))

    async def window(self, item: limits.RateLimitItem, key: str) -> Window:
        """The counts behind the window (service/rate_limit_rules.Window)."""
        return Window(*await self._run(lambda limiter, storage: storage.get_sliding_window(
            item.key_for(key), item.get_expiry())))

    async def _run(self, call):
        if self._shared is not None:
            try:
                self.breaker.before()
            except BreakerOpen:
                pass
            else:
                try:
                    result = await call(self._shared, self.shared)
                except asyncio.CancelledError:
                    self.breaker.release()
                    raise
                except self._failures as e:
                    self._failed(e)
                else:
                    if self.down_since is not None:
                        log.info("rate limit store %s answers again: limits are shared "
                                 "again after %.1f s per process", self._where(),
                                 time.monotonic() - self.down_since)
                        self.down_since = None
                    self.breaker.success()
                    return result
        return await call(self._local, self.local)

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
