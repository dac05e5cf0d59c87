"""Rendered responses, cached per (viewer, request), invalidated by what they were built from.

Every entry records the versions of what it read: the conversations whose posts it shows (the
focal conversation and those of quoted posts), the viewer's relations, and a global epoch.
A write bumps the versions it changes (a new reply: its conversation; an account, label or
relation change: the global epoch), so this process never serves a fresh entry older than
one of its own writes; writes by other processes are bounded by `render_cache_ttl_s`.

An entry past its freshness is kept, bounded by bytes with the rest, as the stale copy served
when the database fails (`degraded: ["stale"]`). Concurrent misses for one key share a single
render (Coalescer).
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Hashable, Iterable

from cachetools import LRUCache

from .breakers import CircuitBreaker

# What holding a body costs in Python beside its bytes: the key (path and query), the entry,
# its dependency and version tuples, the LRU's own entry. Measured with bench/memory_bound.py.
_ENTRY_OVERHEAD = 1024

Key = Hashable
GLOBAL = ("epoch",)


class Versions:
    """A version per dependency (a conversation id, ("viewer", id), ...), bumped by writes.
    Bounded: when a version is evicted, the global epoch is bumped, so no entry built before
    an evicted bump can look current again."""

    def __init__(self, maxsize: int = 200_000):
        self._clock = itertools.count(1)
        self._last = 0
        self._epoch = 0
        self._versions: dict[Hashable, int] = {}
        self._maxsize = maxsize

    def _next(self) -> int:
        self._last = next(self._clock)
        return self._last

    def mark(self) -> int:
        """The newest version handed out so far."""
        return self._last

    def bump(self, *deps: Hashable) -> None:
        for dep in deps:
            if dep == GLOBAL:
                self._epoch = self._next()
                continue
            self._versions.pop(dep, None)
            self._versions[dep] = self._next()
        while len(self._versions) > self._maxsize:
            self._versions.pop(next(iter(self._versions)))
            self._epoch = self._next()

    def bump_all(self) -> None:
        self.bump(GLOBAL)

    def snapshot(self, deps: Iterable[Hashable]) -> tuple:
        return (self._epoch, *(self._versions.get(d, 0) for d in deps))


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    deps: tuple
    versions: tuple
    created: float
    # What the HTTP layer derives from the body once (its ETag, compressed forms, Link:
    # service/http/representation.py), kept and counted with it; anything with a .size
    meta: Any = None

    @property
    def size(self) -> int:
        extra = self.meta.size if self.meta is not None else 0
        return len(self.body) + _ENTRY_OVERHEAD + 16 * len(self.deps) + extra


class RenderCache:
    def __init__(self, *, max_bytes: int, fresh_ttl_s: float, stale_ttl_s: float,
                 clock: Callable[[], float] = time.monotonic, versions: Versions | None = None):
        self.versions = versions or Versions()
        self._entries: LRUCache = LRUCache(maxsize=max(1, max_bytes), getsizeof=lambda e: e.size)
        self._fresh_ttl, self._stale_ttl, self._clock = fresh_ttl_s, stale_ttl_s, clock
        self.hits = self.misses = self.stale_served = 0
        self.early_hits = 0   # of the hits, those served in the protocol (http/early_hits.py)

    def retune(self, fresh_ttl_s: float, stale_ttl_s: float) -> None:
        self._fresh_ttl, self._stale_ttl = fresh_ttl_s, stale_ttl_s

    @property
    def enabled(self) -> bool:
        return self._fresh_ttl > 0 or self._stale_ttl > 0

    @property
    def serves_fresh(self) -> bool:
        """Whether any entry can be fresh (render_cache_ttl_s above 0)."""
        return self._fresh_ttl > 0

    def would_store(self, body_size: int) -> bool:
        """Whether put() could keep a body this large (callers skip computing its deps)."""
        return self.enabled and body_size + _ENTRY_OVERHEAD <= self._entries.maxsize

    @property
    def bytes(self) -> int:
        return int(self._entries.currsize)

    def __len__(self) -> int:
        return len(self._entries)

    def fresh(self, key: Key) -> bytes | None:
        entry = self.fresh_entry(key)
        return entry.body if entry is not None else None

    def fresh_entry(self, key: Key, *, count: bool = True) -> Entry | None:
        """The entry under key while fresh (a hit), else None (a miss), counted unless
        `count` is false (a caller that counts the hit itself once it serves the entry, and
        lets another path look again when it does not)."""
        entry = self._entries.get(key)
        if (entry is not None and self._clock() - entry.created <= self._fresh_ttl
                and self.versions.snapshot(entry.deps) == entry.versions):
            if count:
                self.hits += 1
            return entry
        if count:
            self.misses += 1
        return None

    def resize(self, key: Key, entry: Entry) -> None:
        """Re-count an entry whose meta grew (a compressed form added), if still cached."""
        if self._entries.get(key) is entry:
            self._entries[key] = entry

    def stale(self, key: Key) -> tuple[bytes, float] | None:
        """The last body stored under key, and its age, while younger than the stale TTL."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry.created
        if age > self._stale_ttl:
            return None
        self.stale_served += 1
        return entry.body, age

    def mark(self) -> int:
        """Take this before reading the database, and give it to put()."""
        return self.versions.mark()

    def put(self, key: Key, body: bytes, deps: tuple, mark: int,
            meta: Any = None) -> Entry | None:
        """Store a render built from data read after `mark`, unless one of its dependencies
        changed while it was being built (it might hold data older than that write)."""
        if not self.enabled:
            return None
        versions = self.versions.snapshot(deps)
        if max(versions) > mark:
            return None
        entry = Entry(body, deps, versions, self._clock(), meta)
        if entry.size <= self._entries.maxsize:
            self._entries[key] = entry
            return entry
        return None


class Coalescer:
    """Concurrent calls for one key share one computation. The computation runs in its own
    task, so a caller that goes away (a client that disconnected) does not cancel it for the
    others; it is cancelled only when nobody waits for it any more.

    `generation` (the render cache's mark: the newest version handed out): a call joins only
    a computation started in its own generation. One started before a write was answered may
    have read the data before that write, so a read that begins after it (the writer's own
    next read) starts a new one, which later calls join."""

    def __init__(self) -> None:
        self._running: dict[Key, tuple[asyncio.Task, list[int], int]] = {}
        self.shared = 0

    async def run(self, key: Key, compute: Callable[[], Awaitable[Any]],
                  generation: int = 0) -> Any:
        running = self._running.get(key)
        if running is None or running[2] != generation:
            task = asyncio.ensure_future(compute())
            running = (task, [0], generation)
            self._running[key] = running
            task.add_done_callback(lambda _t, k=key, r=running: self._forget(k, r))
        else:
            self.shared += 1
        task, waiters, _ = running
        waiters[0] += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done() and waiters[0] == 1:
                task.cancel()
            raise
        finally:
            waiters[0] -= 1

    def _forget(self, key: Key, running: tuple) -> None:
        if self._running.get(key) is running:   # not a newer generation's computation
            del self._running[key]


@dataclass
class ReadPath:
    """What serving a read needs: the cache, the coalescer and the dependencies' breakers."""
    cache: RenderCache
    coalescer: Coalescer
    database: CircuitBreaker
    ranking: CircuitBreaker
    settings: Any = None           # live settings: the budget and TTLs are read at each use

    @property
    def budget_s(self) -> float:
        """A read that takes longer fails (like the database failing)."""
        return self.settings.request_budget_ms / 1000 if self.settings is not None else 1.0

    def retune(self) -> None:
        """Apply changed settings to the cache (its TTLs)."""
        if self.settings is not None:
            self.cache.retune(self.settings.render_cache_ttl_s, self.settings.stale_ttl_s)
