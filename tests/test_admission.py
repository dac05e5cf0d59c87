"""Load shedding: the adaptive limit's math (fake clock), the priority queue, and the middleware
under a burst (a test-only slow route in the test's own app)."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from service.resilience.admission import (ADMIT, QUEUED, SHED, Admission, GradientLimit,
                                          LimitConfig, Priority)
from service.http.admission_middleware import ADMISSION, classify
from service.app import create_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def feed(limiter: GradientLimit, clock: Clock, rtt: float, seconds: float, *,
         inflight: int | None = None, rate: float = 500.0) -> None:
    """`rate` samples per second of latency `rtt`, each with `inflight` in flight
    (default: the current capacity, i.e. the limit is in use)."""
    for _ in range(int(seconds * rate)):
        clock.advance(1 / rate)
        n = inflight if inflight is not None else max(1, int(limiter.limit))
        limiter.sample(rtt, n, clock.now)


def config(**kw) -> LimitConfig:
    base = dict(initial=20, min=2, max=100, tolerance=1.5, smoothing=0.2, window_s=0.1,
                window_min_samples=10, baseline_window_s=30.0)
    return LimitConfig(**{**base, **kw})


# -- the limit --------------------------------------------------------------------------------

def test_first_quiet_window_sets_the_baseline_and_nothing_moves_before_a_window_closes():
    clock, lim = Clock(), GradientLimit(config())
    for _ in range(9):
        clock.advance(0.05)
        assert not lim.sample(0.010, 1, clock.now)
    assert lim.baseline_rtt is None and lim.limit == 20
    clock.advance(0.05)
    assert lim.sample(0.010, 1, clock.now)
    assert lim.baseline_rtt == pytest.approx(0.010)


def test_a_first_window_under_load_takes_its_fastest_request_as_the_baseline():
    clock, lim = Clock(), GradientLimit(config())
    for rtt in (0.050, 0.040, 0.012, 0.060, 0.045, 0.050, 0.050, 0.050, 0.050, 0.050, 0.050):
        clock.advance(0.011)
        lim.sample(rtt, 20, clock.now)
    assert lim.baseline_rtt == pytest.approx(0.012)


def test_limit_shrinks_when_latency_rises_and_grows_back_when_it_falls():
    clock, lim = Clock(), GradientLimit(config())
    feed(lim, clock, 0.010, 1.0, inflight=1)          # baseline 10 ms, app-limited
    assert lim.limit == 20                            # idle: no evidence to grow on
    feed(lim, clock, 0.010, 2.0)                      # busy, fast: grows
    grown = lim.limit
    assert grown > 20
    feed(lim, clock, 0.040, 3.0)                      # 4x the baseline: shrinks
    assert lim.limit < grown / 4
    assert lim.baseline_rtt < 0.012                   # busy windows barely move the baseline
    shrunk = lim.limit
    feed(lim, clock, 0.010, 3.0)                      # back to normal: grows again
    assert lim.limit > shrunk * 2


def test_latency_within_tolerance_does_not_shrink_the_limit():
    clock, lim = Clock(), GradientLimit(config())
    feed(lim, clock, 0.010, 0.5, inflight=1)
    before = lim.limit
    feed(lim, clock, 0.014, 2.0)                      # 1.4x < tolerance 1.5
    assert lim.limit >= before


def test_limit_stays_within_bounds():
    clock, lim = Clock(), GradientLimit(config(min=3, max=40))
    feed(lim, clock, 0.010, 0.5, inflight=1)
    feed(lim, clock, 0.001, 30.0)                     # ever faster: grows to max only
    assert lim.limit == 40
    feed(lim, clock, 5.0, 30.0, rate=50)              # ever slower: shrinks to min only
    assert lim.limit == 3


def test_the_limit_grows_only_when_it_was_reached():
    clock, lim = Clock(), GradientLimit(config(initial=10))
    feed(lim, clock, 0.010, 0.5, inflight=1)
    feed(lim, clock, 0.010, 2.0, inflight=9)          # fast, but one slot never used
    assert lim.limit == 10
    feed(lim, clock, 0.010, 0.2, inflight=10)         # reached: grows
    assert lim.limit > 10


def test_decreases_are_faster_than_increases():
    def one_window(rtt: float) -> float:
        lim = GradientLimit(config(initial=20))
        lim.baseline_rtt = 0.010
        for i in range(11):                           # eleven samples over 0.1 s: one window
            lim.sample(rtt, 20, 1000.0 + i * 0.01)
        return lim.limit

    # within tolerance: 20 + 0.2 * sqrt(20); at 10x the baseline (gradient 0.5): the weight
    # is 2.5 x 0.2, so 20 * (1 - 0.5 + 0.5 * 0.5) rather than 20 * (1 - 0.2 + 0.2 * 0.5)
    assert one_window(0.010) == pytest.approx(20 + 0.2 * 20 ** 0.5)
    assert one_window(0.100) == pytest.approx(15.0)


def test_halving_per_window_at_most():
    clock, lim = Clock(), GradientLimit(config(smoothing=1.0))
    feed(lim, clock, 0.010, 0.2, inflight=1)
    before = lim.limit
    feed(lim, clock, 1.0, 0.1)                        # one window at 100x the baseline
    assert lim.limit == pytest.approx(before * 0.5)


def test_a_lasting_slowdown_at_low_concurrency_is_learned():
    clock, lim = Clock(), GradientLimit(config(baseline_window_s=5.0))
    feed(lim, clock, 0.010, 0.5, inflight=1)
    feed(lim, clock, 0.030, 30.0, inflight=2)         # quiet (<= min) but slower backend
    assert lim.baseline_rtt == pytest.approx(0.030, rel=0.05)


# -- admission and the queue ------------------------------------------------------------------

def admission(limit: int = 2, *, queue_size: int = 4, timeout: float = 0.05,
              share: float = 0.5) -> Admission:
    lim = GradientLimit(config(initial=limit, min=limit, max=limit))
    return Admission(lim, queue_size=queue_size, queue_timeout_s=timeout, low_priority_share=share)


def test_admits_up_to_the_limit_then_queues_then_sheds():
    adm, now = admission(2, queue_size=2), 0.0
    assert [adm.try_acquire(Priority.NORMAL, now)[0] for _ in range(5)] == [
        ADMIT, ADMIT, QUEUED, QUEUED, SHED]
    assert adm.inflight == 2 and adm.queued == 2
    snap = adm.snapshot()
    assert snap["admitted"]["normal"] == 2 and snap["shed"]["normal"] == 1
    assert snap["shed_by_reason"]["rejected"] == 1


def test_queue_timeout_sheds_waiters_at_their_deadline():
    clock, adm = Clock(), admission(1, timeout=0.05)
    assert adm.try_acquire(Priority.NORMAL, clock.now)[0] == ADMIT
    decision, waiter = adm.try_acquire(Priority.NORMAL, clock.now)
    assert decision == QUEUED
    assert adm.expire(clock.now + 0.049) == []
    assert adm.expire(clock.now + 0.050) == [waiter]
    assert waiter.state == "expired" and adm.queued == 0
    assert adm.snapshot()["shed_by_reason"]["queue_timeout"] == 1
    assert adm.release(0.01, clock.now + 0.06) == []   # nobody left to wake
    assert adm.inflight == 0


def test_a_queued_first_page_is_admitted_before_a_queued_continuation():
    adm, now = admission(1, share=1.0), 0.0
    assert adm.try_acquire(Priority.NORMAL, now)[0] == ADMIT
    _, low = adm.try_acquire(Priority.LOW, now)
    _, normal = adm.try_acquire(Priority.NORMAL, now + 0.001)
    _, high = adm.try_acquire(Priority.HIGH, now + 0.002)
    assert adm.release(0.01, now + 0.01) == [high]
    assert adm.release(0.01, now + 0.02) == [normal]
    assert adm.release(0.01, now + 0.03) == [low]
    assert (high.state, normal.state, low.state) == ("granted",) * 3


def test_a_full_queue_makes_room_for_a_higher_priority_by_shedding_the_newest_lowest():
    adm, now = admission(1, queue_size=2), 0.0
    adm.try_acquire(Priority.NORMAL, now)
    _, low1 = adm.try_acquire(Priority.LOW, now)
    _, low2 = adm.try_acquire(Priority.LOW, now)
    assert adm.try_acquire(Priority.LOW, now)[0] == SHED      # equal priority: refused
    now += 0.1                        # a window after that shed (see the next test)
    decision, high = adm.try_acquire(Priority.HIGH, now)
    assert decision == QUEUED and adm.take_evicted() == [low2]
    assert low2.state == "evicted" and low1.state == "waiting"
    assert adm.release(0.01, now) == [high]
    assert adm.snapshot()["shed"]["continuation"] == 2


def test_continuations_only_get_their_share_of_the_limit():
    adm, now = admission(4, share=0.5), 0.0
    assert [adm.try_acquire(Priority.LOW, now)[0] for _ in range(3)] == [ADMIT, ADMIT, QUEUED]
    # first pages still get the rest of the limit at once
    assert [adm.try_acquire(Priority.HIGH, now)[0] for _ in range(3)] == [ADMIT, ADMIT, QUEUED]


def test_a_request_whose_expected_wait_is_too_long_is_refused_at_once():
    adm, clock = admission(2, queue_size=10, timeout=0.05), Clock()
    feed(adm.limiter, clock, 0.040, 0.2, inflight=1)           # short RTT 40 ms
    adm.try_acquire(Priority.NORMAL, clock.now)
    adm.try_acquire(Priority.NORMAL, clock.now)
    # with 2 in flight, slots free after about 40/3 and 80/3 ms; up to half a request (20 ms)
    decision, first = adm.try_acquire(Priority.NORMAL, clock.now)
    assert decision == QUEUED                                          # ~13 ms expected
    assert first.deadline == pytest.approx(clock.now + 2 * 0.040 / 3)  # twice its expected
    assert adm.try_acquire(Priority.NORMAL, clock.now)[0] == SHED     # ~27 ms
    clock.advance(0.1)                                                 # a window later
    assert adm.try_acquire(Priority.HIGH, clock.now)[0] == QUEUED     # ahead of the queue


def test_after_a_shed_nothing_is_queued_for_a_window():
    adm, now = admission(1, queue_size=1), 0.0
    assert [adm.try_acquire(Priority.NORMAL, now)[0] for _ in range(3)] == [ADMIT, QUEUED, SHED]
    adm.release(0.01, now + 0.01)                         # the waiter takes the slot
    assert adm.queued == 0
    assert adm.try_acquire(Priority.NORMAL, now + 0.05)[0] == SHED   # would fit the queue
    assert adm.snapshot()["shed_by_reason"]["rejected"] == 2
    assert adm.try_acquire(Priority.NORMAL, now + 0.2)[0] == QUEUED   # the window has passed
    # a waiter that timed out starts a window too
    assert adm.expire(now + 1.0) and adm.try_acquire(Priority.NORMAL, now + 1.0)[0] == SHED


def test_a_shed_continuation_does_not_stop_first_pages_from_queueing():
    adm, now = admission(2, queue_size=2, share=0.5), 0.0
    assert adm.try_acquire(Priority.LOW, now)[0] == ADMIT
    assert adm.try_acquire(Priority.HIGH, now)[0] == ADMIT
    assert adm.try_acquire(Priority.LOW, now)[0] == QUEUED
    assert adm.try_acquire(Priority.LOW, now)[0] == QUEUED
    assert adm.try_acquire(Priority.LOW, now)[0] == SHED         # queue full, equal priority
    decision, high = adm.try_acquire(Priority.HIGH, now + 0.01)
    assert decision == QUEUED and adm.take_evicted()              # a LOW one made room
    assert adm.try_acquire(Priority.LOW, now + 0.02)[0] == SHED   # LOW: within the window


def test_a_cancelled_waiter_leaves_and_a_granted_one_hands_its_slot_on():
    adm, now = admission(1), 0.0
    adm.try_acquire(Priority.NORMAL, now)
    _, first = adm.try_acquire(Priority.NORMAL, now)
    _, second = adm.try_acquire(Priority.NORMAL, now)
    _, third = adm.try_acquire(Priority.NORMAL, now)
    assert adm.cancel(second, now) == [] and adm.queued == 2
    assert adm.release(0.01, now) == [first]
    assert adm.cancel(first, now) == [third]            # granted, then its client left
    assert adm.inflight == 1 and adm.queued == 0


def test_retune_clamps_the_learned_limit_and_admits_waiters_a_larger_limit_allows():
    from dataclasses import replace

    from service.resilience.admission import Params

    adm, now = admission(2, queue_size=4), 0.0
    adm.try_acquire(Priority.NORMAL, now)
    adm.try_acquire(Priority.NORMAL, now)
    _, waiter = adm.try_acquire(Priority.NORMAL, now)
    wider = Params(replace(adm.limiter.config, min=3, max=10), queue_size=8,
                   queue_timeout_s=0.1, low_priority_share=0.25)
    assert adm.retune(wider, now) == [waiter]
    assert adm.limiter.limit == 3 and adm.inflight == 3
    assert (adm.queue_size, adm.queue_timeout_s, adm.low_priority_share) == (8, 0.1, 0.25)
    narrower = Params(replace(adm.limiter.config, min=1, max=1), queue_size=0,
                      queue_timeout_s=0.1, low_priority_share=0.25)
    assert adm.retune(narrower, now) == []
    assert adm.capacity == 1 and adm.try_acquire(Priority.HIGH, now)[0] == SHED


def test_no_queue_means_refuse_at_once():
    adm, now = admission(1, queue_size=0), 0.0
    assert [adm.try_acquire(Priority.HIGH, now)[0] for _ in range(2)] == [ADMIT, SHED]


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/v1/conversations/123", Priority.HIGH),
    ("GET", "/v1/conversations/123/replies", Priority.LOW),
    ("GET", "/v1/conversations/123/ancestors", Priority.LOW),
    ("GET", "/v1/posts/123/quotes", Priority.LOW),
    ("POST", "/v1/posts", Priority.NORMAL),
    ("DELETE", "/v1/posts/123", Priority.NORMAL),
    ("GET", "/v1/me/blocks", Priority.NORMAL),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
])
def test_classification(method, path, expected):
    from aiohttp.test_utils import make_mocked_request

    assert classify(make_mocked_request(method, path)) == expected


# -- the middleware under a burst -------------------------------------------------------------

SLOW_S = 0.2


async def _app_client(aiohttp_client, settings, **overrides):
    s = settings.replace(**{"admission_enabled": True, "concurrency_limit_initial": 2,
                            "concurrency_limit_min": 2, "concurrency_limit_max": 2,
                            "admission_queue_size": 2, "admission_queue_timeout_ms": 1000,
                            **overrides})
    app = create_app(s)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_S)
        return web.json_response({"ok": True})

    app.router.add_get("/test/slow", slow)                                 # NORMAL
    app.router.add_get("/v1/conversations/{post_id}/test-slow", slow)     # LOW, like /replies
    return await aiohttp_client(app), app


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_burst_is_shed_with_503_overloaded_and_admitted_requests_complete(
        aiohttp_client, settings):
    client, app = await _app_client(aiohttp_client, settings)

    async def one():
        async with client.get("/test/slow") as resp:
            return resp.status, resp.headers.get("Retry-After"), await resp.json()

    results = await asyncio.gather(*(one() for _ in range(50)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(500) == 0
    assert set(statuses) == {200, 503}
    # two in flight and two queued (a 200 ms wait is within the 1 s queue timeout)
    assert statuses.count(200) == 4
    for status, retry_after, body in results:
        if status == 503:
            assert retry_after == "1"
            assert body["error"]["code"] == "overloaded"
        else:
            assert body == {"ok": True}
    snap = app[ADMISSION].snapshot()
    assert snap["inflight"] == 0 and snap["queued"] == 0
    assert snap["admitted"]["normal"] == 4 and snap["shed"]["normal"] == 46


async def test_shed_requests_answer_at_once(aiohttp_client, settings):
    client, _ = await _app_client(aiohttp_client, settings)
    loop = asyncio.get_running_loop()

    async def one():
        started = loop.time()
        async with client.get("/test/slow") as resp:
            await resp.read()
            return resp.status, loop.time() - started

    results = await asyncio.gather(*(one() for _ in range(30)))
    shed = [t for status, t in results if status == 503]
    assert shed and max(shed) < SLOW_S / 2


async def test_queue_timeout_sheds_the_waiters(aiohttp_client, settings):
    client, app = await _app_client(aiohttp_client, settings, admission_queue_timeout_ms=50)
    results = await asyncio.gather(*(client.get("/test/slow") for _ in range(4)))
    assert sorted(r.status for r in results) == [200, 200, 503, 503]
    assert app[ADMISSION].snapshot()["shed_by_reason"]["queue_timeout"] == 2


async def test_ops_endpoints_are_never_shed(aiohttp_client, settings):
    client, app = await _app_client(aiohttp_client, settings)
    slow = [asyncio.ensure_future(client.get("/test/slow")) for _ in range(50)]
    snapshot = app[ADMISSION].snapshot
    await _until(lambda: snapshot()["inflight"] == 2 and snapshot()["queued"] == 2)
    ops = await asyncio.gather(*(client.get(path) for path in ("/healthz", "/openapi.json") * 10),
                               client.get("/readyz"))
    assert [r.status for r in ops] == [200] * 21
    statuses = [r.status for r in await asyncio.gather(*slow)]
    assert 503 in statuses and 500 not in statuses


async def test_first_pages_get_through_a_burst_of_continuations(aiohttp_client, settings):
    client, app = await _app_client(aiohttp_client, settings, concurrency_limit_initial=4,
                                    concurrency_limit_min=4, concurrency_limit_max=4)

    # continuation-like pages (LOW priority), slow, fill their share of the limit and the queue
    conts = [asyncio.ensure_future(client.get("/v1/conversations/1/test-slow"))
             for _ in range(20)]
    snapshot = app[ADMISSION].snapshot
    # half of the limit of 4 in flight, and the queue full
    await _until(lambda: snapshot()["inflight"] == 2 and snapshot()["queued"] == 2)
    first = await client.get("/v1/conversations/1")       # a first page: admitted at once
    assert first.status == 404                            # (no such post), not 503
    statuses = [r.status for r in await asyncio.gather(*conts)]
    assert statuses.count(200) == 4 and statuses.count(503) == 16


async def test_limits_change_live_through_the_admin_api(aiohttp_client, settings, monkeypatch):
    from service.http import admission_middleware

    monkeypatch.setattr(admission_middleware, "SETTINGS_CHECK_S", 0.0)
    client, app = await _app_client(aiohttp_client, settings)
    admin = {"Authorization": "Bearer test-admin-token"}
    resp = await client.patch("/v1/admin/settings", headers=admin,
                              json={"concurrency_limit_min": 5, "concurrency_limit_max": 5,
                                    "admission_queue_size": 0})
    assert resp.status == 200, await resp.text()
    assert (await client.get("/test/slow")).status == 200   # picks the change up when it ends
    assert app[ADMISSION].capacity == 5 and app[ADMISSION].queue_size == 0
    statuses = [r.status for r in await asyncio.gather(*(client.get("/test/slow")
                                                         for _ in range(8)))]
    assert statuses.count(200) == 5 and statuses.count(503) == 3


async def test_disabled_means_no_controller(aiohttp_client, settings):
    app = create_app(settings.replace(admission_enabled=False))
    assert ADMISSION not in app
