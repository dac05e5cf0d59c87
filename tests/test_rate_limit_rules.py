"""The pure parts of the rate limits: rates, costs, header fields, waiting times, address
sets, the bounded in-process store, the heavy-hitters summary."""
from __future__ import annotations

import asyncio

import pytest

from service.resilience import rate_limit_rules as rules
from service.resilience.rate_limit_rules import ClientState, NetworkSet, Window
from service.core.rate_limit_syntax import limits_uri
from service.resilience.rate_limit_store import LocalWindows, Store
from service.core.settings import SettingsError, load_settings
from service.resilience.top_clients import MisraGries, TopClients


def test_rates_parse_and_bad_ones_name_the_problem():
    item = rules.parse_rate("3000/5minutes")
    assert (item.amount, item.get_expiry()) == (3000, 300)
    assert rules.parse_rate("60 per hour").get_expiry() == 3600
    for bad in ("often", "0/minute", "1/minute;2/second", ""):
        with pytest.raises(ValueError):
            rules.parse_rate(bad)
    with pytest.raises(SettingsError, match="rate_limit_read"):
        load_settings(env={}, overrides={"rate_limit_read": "lots"})
    with pytest.raises(SettingsError, match="rate_limit_storage_url"):
        load_settings(env={}, overrides={"rate_limit_storage_url": "http://x"})


def test_cost_table():
    c = (4, 2)  # rate_limit_cost_render, rate_limit_cost_page
    first, page = "/v1/conversations/1", "/v1/conversations/1/replies"
    assert rules.read_cost(first, 200, "hit", *c) == 1
    assert rules.read_cost(first, 200, "stale", *c) == 1
    assert rules.read_cost(first, 200, "miss", *c) == 4
    assert rules.read_cost(page, 200, "miss", *c) == 2
    assert rules.read_cost("/v1/me/follows", 200, None, *c) == 2
    assert rules.read_cost(first, 404, None, *c) == 1
    assert rules.read_cost(first, 503, None, *c) == 1
    assert rules.classify("GET", "/healthz") is None
    assert rules.classify("GET", "/metrics") is None
    assert rules.classify("HEAD", first) == rules.READ
    assert rules.classify("DELETE", "/v1/posts/1") == rules.WRITE


def test_header_fields_follow_the_draft():
    read, nf = rules.policy("read", "3000/5minutes"), rules.policy("not_found", "60/5minutes")
    assert rules.policy_header([read, nf]) == '"read";q=3000;w=300, "not_found";q=60;w=300'
    assert rules.ratelimit_header("read", 0, 12) == '"read";r=0;t=12'
    assert rules.ratelimit_header("read", -3, -1) == '"read";r=0;t=0'
    assert rules.retry_after_s(0.0) == 1 and rules.retry_after_s(2.2) == 3
    assert rules.retry_after_s(3.0) == 3


def test_window_remaining_and_wait():
    p = rules.policy("read", "10/minute")
    empty = Window(0, 0.0, 0, 0.0)
    assert empty.remaining(p) == 10 and empty.seconds_until(p) == 0
    # limits admits n units while floor(weighted) + n <= quota. The current window (30 s
    # left of it) is full: the first unit is back as soon as it becomes the previous window
    # and its weight starts to fall; 3 units once it has fallen by 2 (12 s later)
    full = Window(0, 0.0, 10, 90.0)
    assert full.remaining(p) == 0
    assert full.seconds_until(p) == pytest.approx(30, abs=0.01)
    assert full.seconds_until(p, need=3) == pytest.approx(30 + 12, abs=0.01)
    # the previous window (10, 30 s of weight left: 5) and 5 in the current one: the
    # previous one's weight falls 1/6 per second
    mixed = Window(10, 30.0, 5, 90.0)
    assert mixed.remaining(p) == 0
    assert mixed.seconds_until(p) == pytest.approx(0, abs=0.01)
    assert mixed.seconds_until(p, need=3) == pytest.approx(12, abs=0.01)
    assert Window(10, 30.0, 9, 90.0).seconds_until(p, need=3) == pytest.approx(30 + 60 / 9,
                                                                                abs=0.01)


def test_inflight_bound_and_its_refill():
    nf = rules.policy("not_found", "60/minute")
    state = ClientState(inflight=59)
    assert rules.inflight_allowed(state, nf, 0.0)       # untouched: up to the quota
    state.inflight = 60
    assert not rules.inflight_allowed(state, nf, 0.0)
    state = ClientState(inflight=1, nf_remaining=1.0, nf_seen_at=100.0)
    assert not rules.inflight_allowed(state, nf, 100.0)  # one left, one in flight
    assert rules.seconds_until_inflight_allowed(state, nf, 100.0) == pytest.approx(1.0)
    assert rules.inflight_allowed(state, nf, 101.0)      # one unit per second comes back
    assert rules.debt_seconds(3, nf) == pytest.approx(3.0)


def test_client_blocks_are_per_budget_and_end_with_a_policy_change():
    read, write = rules.policy("read", "10/minute"), rules.policy("write", "5/minute")
    state = ClientState()
    state.block(read, 50.0)
    assert state.blocked_by((read,), 10.0) == (read, 50.0)
    assert state.blocked_by((write,), 10.0) is None
    assert state.blocked_by((rules.policy("read", "100/minute"),), 10.0) is None
    assert state.blocked_by((read,), 10.0) is None  # forgotten with the old policy
    state.block(read, 50.0)
    assert state.blocked_by((read,), 60.0) is None


def test_network_set_matches_by_prefix_length():
    nets = NetworkSet(["192.0.2.0/24", "198.51.100.7", "2001:db8:bad::/48", "10.0.0.0/8"])
    assert len(nets) == 4
    for yes in ("192.0.2.200", "198.51.100.7", "2001:db8:bad:ffff::1", "10.1.2.3",
                "::ffff:192.0.2.9"):
        assert yes in nets, yes
    for no in ("192.0.3.1", "198.51.100.8", "2001:db8:bae::1", "-", "garbage", ""):
        assert no not in nets, no
    assert "1.2.3.4" not in NetworkSet()
    assert "1.2.3.4" in NetworkSet(["0.0.0.0/0"])


async def test_local_windows_match_limits_sliding_window_counter():
    """The in-process counters against limits' own (its MemoryStorage under its strategy),
    on one fake clock: the same admissions, the same window state."""
    import limits
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter

    now = [120.0 * 1000 + 7.0]
    limits_time = []

    class Clock:  # limits reads time.time(): patch it for the duration of the comparison
        def __enter__(self):
            import time as _t
            self.t, self.orig = _t, _t.time
            _t.time = lambda: now[0]
            limits_time.append(1)

        def __exit__(self, *exc):
            self.t.time = self.orig

    ours = LocalWindows(clock=lambda: now[0])
    theirs = SlidingWindowCounterRateLimiter(MemoryStorage())
    item = limits.parse("10/minute")
    policy = rules.Policy("read", item)
    import random
    rng = random.Random(11)
    steps, t = [], 0.0
    for _ in range(600):
        t += rng.choice([0.0, 0.5, 1.7, 3.0, 7.3, 13.0, 61.0])
        steps.append((t, rng.randint(1, 6)))
    admitted = 0
    with Clock():
        for step, cost in steps:
            now[0] = 120.0 * 1000 + 7.0 + step
            got = await ours.hit(policy, "k", cost)
            assert got == await theirs.hit(item, "k", cost=cost), step
            admitted += got
            w = await ours.window(policy, "k")
            p, pt, c, ct = await theirs.storage.get_sliding_window(item.key_for("k"), 60)
            assert (w.previous, w.current) == (p, c), step
            assert w.previous_ttl == pytest.approx(pt, abs=1e-6) or p == 0
            assert w.current_ttl == pytest.approx(ct, abs=1e-6), step
    assert 100 < admitted < 500  # both outcomes were exercised


async def test_local_windows_are_bounded():
    now = [1000.0]
    local = LocalWindows(max_keys=3, clock=lambda: now[0])
    item = rules.policy("read", "2/minute")
    for key in "abcd":
        assert await local.hit(item, key, 2)
    assert len(local) == 3
    assert await local.hit(item, "a", 2)           # forgotten: a fresh budget
    assert not await local.hit(item, "d", 1)
    now[0] += 120
    assert await local.hit(item, "d", 2)           # two windows later: nothing left of it


async def test_store_in_memory_sliding_window():
    store = Store()
    item = rules.policy("read", "3/minute")
    assert [await store.hit(item, "k", 1) for _ in range(4)] == [True, True, True, False]
    assert not await store.hit(item, "k", 1)
    window = await store.window(item, "k")
    assert window.current + window.previous >= 3
    assert window.remaining(item) == 0
    assert await store.hit(item, "other", 3) and not await store.hit(item, "other", 1)
    assert store.snapshot()["storage"] == "memory"


def test_limits_uri():
    assert limits_uri("redis://h:1/0") == "async+redis://h:1/0"
    assert limits_uri("valkeys://h") == "async+rediss://h"
    with pytest.raises(ValueError):
        limits_uri("memcached://h")


def test_misra_gries_bound_holds_and_memory_is_bounded():
    mg = MisraGries(size=9)
    stream = ["heavy"] * 300 + [f"k{i}" for i in range(700)]
    for i, key in enumerate(stream):
        mg.add(stream[(i * 7919) % len(stream)])
    assert len(mg.counts) <= 9
    assert mg.error_bound() == 100
    assert 300 - mg.error_bound() <= mg.counts["heavy"] <= 300


def test_top_clients_window_of_minutes():
    top = TopClients(size=5)
    top.record("a", 0.0)
    top.record("a", 61.0, not_found=True)
    top.record("b", 61.0, limited=True)
    report = top.top(now=61.0, minutes=1)
    assert report["by_requests"][0]["client"] in ("a", "b")
    assert {r["client"]: r["requests"] for r in report["by_requests"]} == {"a": 1, "b": 1}
    report = top.top(now=61.0, minutes=2)
    assert report["by_requests"][0] == {"client": "a", "requests": 2, "not_found": 1,
                                        "limited": 0}
    assert report["by_limited"] == [{"client": "b", "limited": 1, "requests": 1,
                                     "not_found": 0}]
    for minute in range(2, 30):  # at most BUCKETS minutes are kept
        top.record("c", minute * 60.0)
    assert len(top._buckets) == 10


def test_store_never_waits_on_nothing():
    # a Store without a shared store never touches the breaker
    store = Store()
    asyncio.run(store.hit(rules.policy("read", "1/second"), "x", 1))
    assert store.breaker.state == "closed" and store.shared_up is None


async def test_reserved_chunks_make_few_store_calls_and_refuse_no_one_early():
    """Units are taken from the store 1% of the quota at a time and held for the client:
    300 requests of a 300-unit budget make ~100 store calls, all 300 fit, the 301st does not;
    a held chunk lasts at most a tenth of the window."""
    from service.resilience.rate_limiter import Limiter, Refusal

    now = [5000.0]
    store = Store()
    store.local._clock = lambda: now[0]
    calls = []
    real_hit = store.hit

    real_hit_now = store.hit_now

    async def counted(policy, key, cost):
        calls.append(cost)
        return await real_hit(policy, key, cost)

    def counted_now(policy, key, cost):
        calls.append(cost)
        return real_hit_now(policy, key, cost)
    store.hit, store.hit_now = counted, counted_now
    limiter = Limiter(store, clock=lambda: now[0])
    pols = {n: rules.policy(n, r) for n, r in (("read", "300/minute"), ("write", "30/minute"),
                                               ("not_found", "60/minute"))}
    got, fast = [], 0
    for _ in range(301):  # as the middleware asks: the held units first, then the store
        t = limiter.held("c", "read", pols, now[0])
        fast += t is not None
        t = t or await limiter.before("c", "read", pols, now[0])
        got.append(not isinstance(t, Refusal))
        if not isinstance(t, Refusal):
            limiter.abandon(t)
    assert got == [True] * 300 + [False]
    assert 100 <= len(calls) <= 104 and set(calls) <= {1, 3}
    # every request but the first without a coroutine: with the counters in this process
    # the next chunk is taken at once, when the held one runs out (Redis: in a task)
    assert fast == 299
    # a held chunk expires: a light client's leftovers are not carried across the window
    calls.clear()
    t = await limiter.before("light", "read", pols)   # takes 3, holds 2
    limiter.abandon(t)
    now[0] += 7  # > 60 / 10
    t = await limiter.before("light", "read", pols)
    limiter.abandon(t)
    assert calls == [3, 3]


async def test_a_steady_client_finds_its_next_chunk_taken_ahead():
    """With the event loop running between requests, as in the server, the next chunk is
    taken (in a task) when a quarter of one is left: of 3,000 requests of a 3,000-unit budget
    only the first waits on `before`; all 3,000 fit and the next does not; the store is never
    charged more than what was spent and a chunk and a quarter held."""
    from service.resilience.rate_limiter import Limiter, Refusal

    now = [5000.0]
    store = Store()
    store.local._clock = lambda: now[0]
    limiter = Limiter(store, clock=lambda: now[0])
    pols = {n: rules.policy(n, r) for n, r in (("read", "3000/5minutes"),
                                               ("write", "30/minute"),
                                               ("not_found", "60/minute"))}
    chunk = rules.reserve_chunk(pols["read"])
    assert chunk == 30 and rules.refill_below(pols["read"]) == 7
    got, slow = [], 0
    for i in range(3001):
        t = limiter.held("c", "read", pols, now[0])
        if t is None:
            slow += 1
            t = await limiter.before("c", "read", pols, now[0])
        got.append(not isinstance(t, Refusal))
        if not isinstance(t, Refusal):
            limiter.abandon(t)
        await asyncio.sleep(0)   # the loop runs between requests (a refill task too)
        charged = 3000 - (await store.window(pols["read"], "c")).remaining(pols["read"])
        held = limiter._states["c"].reserves["read"][0]
        assert charged <= sum(got) + held and held <= chunk + chunk // 4, i
    assert got == [True] * 3000 + [False]
    # the first request, and near the end of the budget (a chunk no longer fits) one by one
    assert slow <= 1 + chunk
