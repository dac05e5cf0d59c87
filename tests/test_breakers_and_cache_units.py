"""Pure pieces of the read path: the circuit breaker, the render cache and the coalescer."""
from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from service.resilience.breakers import CLOSED, HALF_OPEN, OPEN, BreakerOpen, CircuitBreaker
from service.http.cached_render import conversations_in as _conversations
from service.resilience.render_cache import GLOBAL, Coalescer, RenderCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_after_backoff():
    clock = Clock()
    b = CircuitBreaker("db", failure_threshold=3, backoff_s=1.0, max_backoff_s=8.0, clock=clock,
                       rng=random.Random(1))
    for _ in range(2):
        b.before()
        b.failure()
    assert b.state == CLOSED
    b.before()
    b.success()                      # a success resets the count
    for _ in range(3):
        b.before()
        b.failure()
    assert b.state == OPEN
    with pytest.raises(BreakerOpen):
        b.before()
    clock.now += 1.01                # past the longest jittered first backoff (0.5..1.0 s)
    b.before()                       # the one probe
    assert b.state == HALF_OPEN
    with pytest.raises(BreakerOpen):
        b.before()                   # nobody else while the probe runs
    b.failure()                      # the probe failed: open again, longer
    assert b.state == OPEN
    clock.now += 1.01
    with pytest.raises(BreakerOpen):
        b.before()                   # second backoff is 1..2 s
    clock.now += 1.0
    b.before()
    b.success()
    assert b.state == CLOSED and b.failures == 0


def test_breaker_backoff_is_jittered_and_capped():
    waits = set()
    for seed in range(20):
        clock = Clock()
        b = CircuitBreaker("db", failure_threshold=1, backoff_s=1.0, max_backoff_s=4.0,
                           clock=clock, rng=random.Random(seed))
        for _ in range(6):           # open, probe, fail ... the backoff grows to the cap
            b.failure()
            clock.now += 100
            b.before()
        b.failure()
        waits.add(round(b._retry_at - clock.now, 3))
    assert len(waits) > 10 and all(2.0 <= w <= 4.0 for w in waits)


def test_failures_of_calls_started_before_it_opened_do_not_delay_the_probe():
    # Hundreds of calls in flight when the database went away all fail after the breaker
    # opened; they must neither push the probe further away nor grow the backoff.
    clock = Clock()
    b = CircuitBreaker("db", failure_threshold=2, backoff_s=1.0, max_backoff_s=8.0,
                       clock=clock, rng=random.Random(3))
    b.failure()
    b.failure()
    assert b.state == OPEN and b.opened == 1
    retry_at = b._retry_at
    for _ in range(500):
        clock.now += 0.001
        b.failure()
    assert b.state == OPEN and b.opened == 1 and b._retry_at == retry_at


def test_a_breaker_opened_thousands_of_times_keeps_its_capped_backoff():
    clock = Clock()
    b = CircuitBreaker("db", failure_threshold=1, backoff_s=0.5, max_backoff_s=10.0,
                       clock=clock, rng=random.Random(4))
    for _ in range(3000):            # a dependency down for hours: open, probe, fail ...
        b.failure()
        clock.now += 100
        b.before()
    b.failure()
    assert b.state == OPEN and 5.0 <= b._retry_at - clock.now <= 10.0


def test_cache_fresh_then_stale_after_a_write():
    clock = Clock()
    cache = RenderCache(max_bytes=10_000, fresh_ttl_s=5, stale_ttl_s=60, clock=clock)
    mark = cache.mark()
    cache.put("k", b"body", (7,), mark)
    assert cache.fresh("k") == b"body"
    cache.versions.bump(8)           # another conversation
    assert cache.fresh("k") == b"body"
    cache.versions.bump(7)
    assert cache.fresh("k") is None
    assert cache.stale("k") == (b"body", 0.0)
    clock.now += 61
    assert cache.stale("k") is None


def test_cache_refuses_a_render_that_raced_a_write():
    cache = RenderCache(max_bytes=10_000, fresh_ttl_s=5, stale_ttl_s=60, clock=Clock())
    mark = cache.mark()
    cache.versions.bump(7)           # a write lands while the render reads
    cache.put("k", b"old", (7,), mark)
    assert cache.fresh("k") is None and cache.stale("k") is None


def test_global_bump_invalidates_everything():
    cache = RenderCache(max_bytes=10_000, fresh_ttl_s=5, stale_ttl_s=60, clock=Clock())
    cache.put("a", b"1", (1,), cache.mark())
    cache.put("b", b"2", (2,), cache.mark())
    cache.versions.bump(GLOBAL)
    assert cache.fresh("a") is None and cache.fresh("b") is None


def test_cache_is_bounded_by_bytes():
    cache = RenderCache(max_bytes=5_000, fresh_ttl_s=5, stale_ttl_s=60, clock=Clock())
    for i in range(100):
        cache.put(i, b"x" * 800, (i,), cache.mark())
        assert cache.bytes <= 5_000
    assert len(cache) == 5_000 // (800 + 1024 + 16)


def test_would_store_matches_what_put_keeps():
    cache = RenderCache(max_bytes=5_000, fresh_ttl_s=5, stale_ttl_s=60, clock=Clock())
    assert cache.would_store(100) and not cache.would_store(5_000)
    off = RenderCache(max_bytes=0, fresh_ttl_s=5, stale_ttl_s=60, clock=Clock())
    assert not off.would_store(1)
    off.put("k", b"x", (1,), off.mark())
    assert len(off) == 0


def test_conversation_ids_are_read_from_the_body_not_from_post_text():
    body = orjson.dumps({"conversation_id": "12", "text": '"conversation_id":"99"',
                         "quote": {"post": {"conversation_id": "7"}},
                         "replies": [{"post": {"conversation_id": "12"}}]})
    assert _conversations(body) == {12, 7}


async def test_coalescer_shares_one_computation():
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    c = Coalescer()
    results = await asyncio.gather(*(c.run("k", compute) for _ in range(10)))
    assert results == [1] * 10 and calls == 1 and c.shared == 9


async def test_coalescer_survives_one_waiter_going_away():
    started = asyncio.Event()

    async def compute():
        started.set()
        await asyncio.sleep(0.05)
        return "done"

    c = Coalescer()
    first = asyncio.ensure_future(c.run("k", compute))
    await started.wait()
    second = asyncio.ensure_future(c.run("k", compute))
    await asyncio.sleep(0)
    first.cancel()                   # a client that disconnected
    assert await second == "done"


async def test_a_read_that_begins_after_a_write_does_not_join_a_render_from_before_it():
    """Calls of one generation share a computation; a call of a newer generation (a version
    was bumped: a write was answered) starts its own, which later calls of its generation
    join; the older one ends without taking the newer one's place away."""
    release = asyncio.Event()
    calls = []

    async def compute():
        calls.append(len(calls))
        n = len(calls)
        await release.wait()
        return n

    c = Coalescer()
    old = [asyncio.ensure_future(c.run("k", compute, generation=1)) for _ in range(3)]
    await asyncio.sleep(0)
    new = [asyncio.ensure_future(c.run("k", compute, generation=2)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*old) == [1, 1, 1]
    assert await asyncio.gather(*new) == [2, 2, 2]
    assert len(calls) == 2 and c.shared == 4
    assert c._running == {}


def test_a_probe_that_ends_without_a_verdict_lets_the_next_probe_through():
    clock = Clock()
    b = CircuitBreaker("db", failure_threshold=1, backoff_s=1.0, clock=clock,
                       rng=random.Random(3))
    b.failure()
    clock.now += 2
    b.before()              # the probe...
    b.release()             # ...was cancelled, or raised something that is not a db error
    b.before()              # the next request may probe
    b.success()
    assert b.state == CLOSED
