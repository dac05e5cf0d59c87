"""Load shedding, the rules on a fake clock (service/resilience/admission.py): the
standing-queue signal, timeouts, priorities, fairness and its victim, live retuning,
cancellation. The HTTP side is in tests/test_admission_http.py."""
from __future__ import annotations

import pytest

from service.resilience.admission import (ADMIT, CANCELLED, EVICTED, GRANTED, OVERLOADED,
                                          QUEUE_FULL, QUEUED, SHED, SHED_STATE, TIMEOUT,
                                          Admission, Params, Priority)

H, N, L = Priority.HIGH, Priority.NORMAL, Priority.LOW
MS = 0.001


def adm(**kw) -> Admission:
    # the standing queue of an overload at twice the target (the default is 1.5: below)
    base = dict(concurrency=2, target_s=10 * MS, interval_s=100 * MS, queue_timeout_s=1.0,
                queue_size=100, overload_wait=2.0)
    a = Admission(Params(**{**base, **kw}))
    a.rtt = 4 * MS    # as if measured: 2 ms per departure with 2 slots
    return a


def fill(a: Admission, now: float, client: str = "a", priority: Priority = H) -> None:
    for _ in range(a.params.concurrency):
        assert a.try_acquire(priority, client, now)[0] == ADMIT


def queue(a: Admission, now: float, client: str = "a", priority: Priority = H):
    decision, w = a.try_acquire(priority, client, now)
    assert decision == QUEUED, (decision, w)
    return w


def serve_one(a: Admission, client: str, now: float) -> list:
    """One admitted request of `client` finishes; returns who got a slot or was shed."""
    a.release(client, 4 * MS, now)
    return a.take_settled()


def standing(a: Admission, start: float = 0.0) -> list:
    """Every slot taken and a waiter every 20 ms for 100 ms: a queue that never drains."""
    fill(a, start)
    return [queue(a, start + i * 0.02) for i in range(6)]


def overload(a: Admission) -> float:
    """A standing queue for an interval: overloaded, with two waiters left (35 and 15 ms
    old at the time returned)."""
    standing(a)
    now = a.next_deadline()
    a.tick(now)
    assert a.overloaded and a.queued == 2
    a.take_settled()
    return now


# -- the standing-queue signal ----------------------------------------------------------------

def test_a_queue_standing_above_the_target_for_an_interval_means_overload():
    a = adm()
    ws = standing(a)
    # the oldest wait is above the target from 10 ms on; the timer is due an interval later
    due = a.next_deadline()
    assert due == pytest.approx(0.110)
    a.tick(0.109)
    assert not a.overloaded and a.take_settled() == []
    a.tick(due)
    assert a.overloaded and a.counters.overload_episodes == 1
    assert a.snapshot()["overloaded"] is True and a.snapshot()["wait_limit_ms"] == 20
    # the overload timeout (4 x target) applies at once: the four that waited 50+ ms go
    assert a.take_settled() == ws[:4]
    assert all(w.state == SHED_STATE and w.reason == TIMEOUT for w in ws[:4])
    assert [w.state for w in ws[4:]] == ["waiting"] * 2


def test_a_burst_that_drains_within_the_interval_is_only_delayed():
    a = adm()
    fill(a, 0.0)
    waiters = [queue(a, 0.0) for _ in range(20)]     # 20 x 2 ms of work behind 2 slots
    now, served = 0.0, []
    while a.inflight:
        now += 2 * MS
        served += serve_one(a, "a", now)
    assert [w.state for w in waiters] == [GRANTED] * 20 and served == waiters
    assert not a.overloaded and a.counters.overload_episodes == 0
    assert a.snapshot()["shed_total"] == 0


def test_each_departure_with_the_oldest_under_the_target_restarts_the_interval():
    """A queue that keeps forming and draining (honest bursty load) is never overload."""
    a = adm()
    fill(a, 0.0)
    now = 0.0
    for _ in range(50):                # 50 bursts of a 30-ms wait, each drained
        queue(a, now)
        now += 30 * MS
        serve_one(a, "a", now)         # the waiter takes the slot: nobody waits
        assert a.try_acquire(H, "a", now)[0] == QUEUED
        now += 1 * MS
        serve_one(a, "a", now)
        assert a.oldest_wait == 0.0
    assert not a.overloaded


def test_a_stall_with_no_departures_is_seen_by_the_timer():
    a = adm()
    fill(a, 0.0)
    w = queue(a, 0.0)
    due = a.next_deadline()
    a.tick(due)                        # nothing else happened: the loop or database stalled
    assert a.overloaded and a.counters.overload_episodes == 1
    assert w.state == SHED_STATE and w.reason == TIMEOUT
    # nobody waits any more: over once that has lasted an interval, timer or not
    assert a.next_deadline() == pytest.approx(due + 0.1)
    a.tick(a.next_deadline())
    assert not a.overloaded


def test_more_work_queued_than_drains_within_the_interval_is_overload_at_once():
    a = adm()
    fill(a, 0.0)
    ws = [a.try_acquire(H, "a", 0.0)[1] for _ in range(56)]   # 56 x 2 ms = 112 ms of work
    assert a.overloaded                        # > target + interval (110 ms): standing now
    # and the burst is cut, at once, to what the slots serve within the overload timeout
    # (4 x target: 20 waiters); the rest would have timed out, late
    settled = a.take_settled()
    assert len(settled) == 36 and all(w.reason == TIMEOUT for w in settled)
    assert [w.state for w in ws[-20:]] == ["waiting"] * 20 and a.queued == 20


def test_when_the_overload_begins_the_backlog_is_cut_to_its_newest_work():
    a = adm()
    fill(a, 0.0)
    old = queue(a, 0.0)
    young = [queue(a, 0.105) for _ in range(29)]   # 60 ms of work in all: not standing yet
    assert not a.overloaded
    a.tick(a.next_deadline())                 # the oldest wait above the target for 100 ms
    assert a.overloaded
    assert old.reason == TIMEOUT               # waited 110 ms > 4 x target
    # 58 ms of work left: the oldest beyond what 40 ms (4 x target) serves go too
    assert [w.reason for w in young[:9]] == [TIMEOUT] * 9
    assert all(w.state == "waiting" for w in young[9:])
    a.take_settled()
    assert serve_one(a, "a", 0.111) == [young[9]]


def test_the_overload_ends_once_the_queue_stayed_under_the_target_for_an_interval():
    a = adm()
    now = overload(a)                  # waiters since 80 and 100 ms
    serve_one(a, "a", now + 0.002)
    assert a.overloaded and a.oldest_wait == pytest.approx(0.012)
    serve_one(a, "a", now + 0.003)     # nobody waits: the queue drained
    assert a.overloaded and a.oldest_wait == 0
    w = queue(a, now + 0.05)           # a short wait does not matter...
    serve_one(a, "a", now + 0.055)
    assert w.state == GRANTED and a.overloaded
    a.tick(now + 0.102)
    assert a.overloaded
    assert a.next_deadline() == pytest.approx(now + 0.103)
    a.tick(a.next_deadline())          # ...an interval under the target ends it
    assert not a.overloaded


def test_a_wait_above_the_target_restarts_the_exit_interval():
    a = adm()
    now = overload(a)
    serve_one(a, "a", now + 0.002)
    serve_one(a, "a", now + 0.003)     # drained at +3 ms
    w = queue(a, now + 0.05)
    serve_one(a, "a", now + 0.065)     # but this one waited 15 ms: still standing
    assert w.state == GRANTED
    a.tick(now + 0.104)
    assert a.overloaded
    a.tick(now + 0.165)
    assert not a.overloaded


def test_overloaded_a_newcomer_expected_to_wait_over_twice_the_target_is_refused_at_once():
    a = adm()
    now = overload(a)
    # 2 ms per departure: the tenth waiter expects 20 ms = 2 x target, the eleventh more
    while a.queued < 10:
        assert a.try_acquire(H, "a", now)[0] == QUEUED
    assert a.try_acquire(H, "a", now) == (SHED, OVERLOADED)
    assert a.try_acquire(H, "a", now) == (SHED, OVERLOADED)
    assert a.snapshot()["shed_by_reason"][OVERLOADED] == 2 and a.take_settled() == []


def test_refuse_over_a_burst_agrees_with_try_acquire_over_it():
    # The protocol reads a whole burst (refuse() for each) before the first of them reaches
    # try_acquire: refuse() must count the ones it let through, or it lets them all through
    # and the middleware refuses the excess at three times the cost.
    reference = adm()
    now = overload(reference)
    queued = 0
    while reference.try_acquire(H, "a", now)[0] == QUEUED:
        queued += 1
    assert queued == 8                                 # 2 + 8 waiters: 20 ms, the limit
    a = adm()
    now = overload(a)
    burst = [a.refuse(H, "a", now) for _ in range(20)]
    assert burst == [None] * queued + [OVERLOADED] * (20 - queued)
    assert a.snapshot()["shed_by_reason"][OVERLOADED] == 20 - queued
    # the ones let through arrive: all wait, none is refused; then the queue is at its limit
    assert all(a.try_acquire(H, "a", now)[0] == QUEUED for _ in range(queued))
    assert a._announced_now(now) == [0, 0, 0]
    assert a.refuse(H, "a", now) == OVERLOADED


def test_an_announced_request_that_never_arrives_lapses():
    from service.resilience.admission import ANNOUNCED_S
    a = adm()
    now = overload(a)
    assert all(a.refuse(H, "a", now) is None for _ in range(8))
    assert a.refuse(H, "a", now) == OVERLOADED
    # they were refused by the rate limits, or their connections closed: not coming
    later = now + ANNOUNCED_S + MS
    assert a.refuse(H, "a", later) is None and a.queued == 2


def test_announcements_do_not_count_against_a_sparse_clients_turn():
    a = adm()
    now = overload(a)
    burst = [a.refuse(H, "a", now) for _ in range(20)]
    assert burst[-1] == OVERLOADED
    # a client with nothing queued has a turn in the new list: judged as before
    assert a.refuse(L, "polite", now) is None
    assert a.try_acquire(L, "polite", now)[0] == QUEUED


def test_the_queue_an_overload_keeps_is_overload_wait_targets_deep():
    assert Params().overload_wait == 1.5
    for factor, waiters in ((1.5, 7), (1.0, 5), (3.0, 15)):
        a = adm(overload_wait=factor)
        now = overload(a)
        while a.try_acquire(H, "a", now)[0] == QUEUED:
            pass
        # 2 ms per departure: the last waiter expects (waiters) x 2 ms <= factor x 10 ms
        assert a.queued == waiters, factor
        assert a.wait_limit() == pytest.approx(factor * 10 * MS)
    # it must stay above the target, or the overload would end while it lasts
    with pytest.raises(ValueError):
        Params(overload_wait=0.9)


def test_not_overloaded_the_same_newcomers_wait():
    a = adm()
    fill(a, 0.0)
    assert all(a.try_acquire(H, "a", 0.0)[0] == QUEUED for _ in range(50))


def test_overloaded_a_waiter_is_shed_after_four_times_the_target():
    a = adm()
    now = overload(a)
    w = queue(a, now)
    a.tick(now + 39 * MS)              # the two older ones have timed out by now
    assert w.state == "waiting" and a.overloaded and a.queued == 1
    assert a.next_deadline() == pytest.approx(now + 40 * MS)
    a.tick(a.next_deadline())
    assert w.state == SHED_STATE and w.reason == TIMEOUT


def test_not_overloaded_the_queue_timeout_applies():
    a = adm(queue_timeout_s=0.05, interval_s=10.0)
    fill(a, 0.0)
    w = queue(a, 0.0)
    assert a.next_deadline() == pytest.approx(0.05)
    a.tick(0.05)
    assert w.state == SHED_STATE and w.reason == TIMEOUT and not a.overloaded


def test_a_newcomer_expected_to_wait_past_the_queue_timeout_is_refused():
    a = adm(queue_timeout_s=0.01)
    fill(a, 0.0)
    # 2 ms per departure: the fifth waiter expects 10 ms, the sixth 12
    assert [a.try_acquire(H, "a", 0.0) for _ in range(7)][4:] == [
        (QUEUED, a._by_arrival[4]), (SHED, QUEUE_FULL), (SHED, QUEUE_FULL)]


# -- priorities ---------------------------------------------------------------------------------

def test_first_pages_then_normal_then_continuations():
    a = adm()
    fill(a, 0.0)
    low, normal, high = queue(a, 0.0, "a", L), queue(a, 0.0, "a", N), queue(a, 0.0, "a", H)
    order = []
    for i in range(3):
        order += serve_one(a, "a", (i + 1) * MS)
    assert order == [high, normal, low]


def test_overloaded_lower_priorities_are_refused_while_higher_ones_are_shed():
    a = adm()
    now = overload(a)
    while a.queued < 10:
        queue(a, now)                                   # 20 ms of first pages waiting
    assert a.try_acquire(H, "a", now) == (SHED, OVERLOADED)
    serve_one(a, "a", now + MS)                         # room for 2 ms more
    # a continuation could only wait to be overtaken: refused at once, not left to time out
    assert a.try_acquire(L, "a", now + MS) == (SHED, OVERLOADED)
    assert a.try_acquire(N, "a", now + MS) == (SHED, OVERLOADED)
    assert a.try_acquire(H, "a", now + MS)[0] == QUEUED
    # but a client with nothing queued gets its turn ahead of the backlog: it may wait
    assert a.try_acquire(L, "polite", now + MS)[0] == QUEUED



def test_only_the_client_whose_first_pages_were_shed_has_its_continuations_refused():
    a = adm()
    now = overload(a)                          # "a": 2 slots, waiters 35 and 15 ms old
    a.tick(now + 0.03)                         # both time out (40 ms): "a" was shed, and
    assert a.overloaded and a.queued == 0      # has nothing queued any more
    assert a.try_acquire(H, "other", now + 0.03)[0] == QUEUED
    # another client's continuation behind its own waiting first page: it may wait (with
    # shares, "a" cannot take the next slot ahead of it)
    assert a.try_acquire(L, "other", now + 0.03)[0] == QUEUED
    queue(a, now + 0.03, "a")                  # but "a" itself: its first page may wait...
    assert a.try_acquire(L, "a", now + 0.03) == (SHED, OVERLOADED)   # ...its next one not


def test_a_full_queue_lets_a_first_page_push_out_its_clients_newest_continuation():
    a = adm(queue_size=3)
    fill(a, 0.0)
    l1, l2 = queue(a, 0.0, "a", L), queue(a, 0.0, "a", L)
    queue(a, 0.0, "a", H)
    w = queue(a, 0.0, "a", H)                  # full: the newest continuation goes
    assert l2.state == SHED_STATE and l2.reason == EVICTED and l1.state == "waiting"
    assert a.try_acquire(L, "a", 0.0) == (SHED, QUEUE_FULL)
    assert w.state == "waiting" and a.queued == 3


# -- fairness -----------------------------------------------------------------------------------

def test_a_sparse_clients_request_is_served_before_a_backlogged_one():
    a = adm()
    fill(a, 0.0, "greedy")
    backlog = [queue(a, 0.0, "greedy") for _ in range(5)]
    assert serve_one(a, "greedy", 0.001) == [backlog[0]]   # its one turn in the new list
    polite = queue(a, 0.001, "polite", L)      # even a continuation goes first
    assert serve_one(a, "greedy", 0.002) == [polite]
    assert serve_one(a, "greedy", 0.003) == [backlog[1]]


def test_a_clients_own_requests_keep_their_priorities():
    a = adm()
    fill(a, 0.0, "x")
    low = queue(a, 0.0, "a", L)                # "a" was sparse: a new lane
    high = queue(a, 0.0, "a", H)               # takes over a's turn in the new list
    normal = queue(a, 0.0, "a", N)
    order = serve_one(a, "x", 0.001) + serve_one(a, "x", 0.002) + serve_one(a, "a", 0.003)
    assert order == [high, normal, low]


def test_backlogged_clients_are_served_round_robin():
    a = adm()
    fill(a, 0.0, "x")
    a1, a2, a3 = (queue(a, 0.0, "a") for _ in range(3))
    b1, b2, b3 = (queue(a, 0.0, "b") for _ in range(3))
    served = serve_one(a, "x", 0.001) + serve_one(a, "x", 0.002)
    for i, client in enumerate("abab"):
        served += serve_one(a, client, 0.003 + i * MS)
    # one turn each in the new list, then the old lanes in turn, one request each
    assert served == [a1, b1, a2, b2, a3, b3]


def test_backlogged_clients_take_turns_whatever_their_priorities():
    """Priority orders a client's own requests; between backlogged clients it is their turn
    (else a greedy client's first pages starve a polite client's continuation)."""
    a = adm()
    fill(a, 0.0, "x")
    g = [queue(a, 0.0, "g") for _ in range(3)]
    p1, p_low = queue(a, 0.0, "p"), queue(a, 0.0, "p", L)
    served = serve_one(a, "x", 0.001) + serve_one(a, "x", 0.002)
    served += serve_one(a, "g", 0.003) + serve_one(a, "p", 0.004)
    assert served == [g[0], p1, p_low, g[1]]


def test_overloaded_a_polite_client_waits_ahead_of_the_greedy_backlog():
    a = adm()
    now = overload(a)                          # "a" holds 2 slots and 2 waiters
    greedy = list(a._by_arrival)
    while a.queued < 10:                       # 20 ms: the overload wait limit
        greedy.append(queue(a, now, "a"))
    assert a.try_acquire(H, "a", now) == (SHED, OVERLOADED)   # its own newcomer: refused
    assert serve_one(a, "a", now + MS) == [greedy[0]]          # its lane's new turn
    d, polite = a.try_acquire(L, "polite", now + MS)           # even a continuation
    assert d == QUEUED and a.take_settled() == []
    # served at the next departure; then one slot each (two clients, two slots)
    assert serve_one(a, "a", now + 2 * MS) == [polite]
    assert serve_one(a, "a", now + 3 * MS) == [greedy[1]] and a.inflight == 2
    assert all(w.state == "waiting" for w in greedy[2:])


def test_overloaded_a_client_holds_at_most_its_share_of_the_slots():
    a = adm(concurrency=4)
    assert a.slot_share() == 4                 # not overloaded: anybody may use them all
    now = overload(a)                          # "a": 4 in flight, 2 waiting
    assert a.slot_share() == 4                 # overloaded, but "a" is the only client
    p = queue(a, now, "p")
    assert a.recent_clients() == pytest.approx(2, abs=0.01) and a.slot_share() == 2
    assert serve_one(a, "a", now + MS) == [p]  # "a" holds 3 > 2
    assert serve_one(a, "a", now + 2 * MS) == []   # "a" holds 2: the slot stays free
    assert a.try_acquire(H, "a", now + 2 * MS)[0] != ADMIT
    assert a.try_acquire(H, "q", now + 2 * MS)[0] == ADMIT   # a third client's may
    assert a.slot_share() == 1
    # clients not seen for two intervals no longer count
    a.tick(now + 0.25)
    assert a.recent_clients() == 0


def test_only_clients_being_shed_are_held_to_their_share():
    a = adm(concurrency=4)
    now = overload(a)                          # "a" holds 4, its oldest waiters were shed
    t = now + MS
    p1h, p1l = queue(a, t, "p1"), queue(a, t, "p1", L)
    others = [queue(a, t, c) for c in ("p2", "p3")]
    assert a.slot_share() == 1                 # four clients lately
    for i in range(3):                         # "a" gives up slots; the new lanes get them
        a.release("a", 4 * MS, t + (i + 1) * MS)
    assert [w.state for w in [p1h] + others] == [GRANTED] * 3 and a.inflight == 4
    a.release("p2", 4 * MS, t + 4 * MS)
    # "a" (shed, holding its one slot) waits; "p1" was never shed: its second request may
    # take the free slot although it holds its share too
    assert p1l.state == GRANTED and a.clients["p1"].inflight == 2
    assert a.clients["a"].inflight == 1 and a.clients["a"].queued > 0


def test_the_share_counts_clients_seen_recently_not_only_those_in_flight():
    a = adm(concurrency=8)
    for i in range(4):                         # four clients came and went
        assert a.try_acquire(N, f"c{i}", 0.0)[0] == ADMIT
        a.release(f"c{i}", MS, 0.001)
    assert a.clients == {}                     # no state kept for them...
    assert a.recent_clients() == pytest.approx(4, abs=0.05)   # ...but they are counted
    a.overloaded = True
    assert a.slot_share() == 2


def test_when_the_queue_is_full_the_victim_is_the_heaviest_clients_newest_least_important():
    a = adm(queue_size=4)
    fill(a, 0.0, "c")
    b = [queue(a, 0.0, "b"), queue(a, 0.0, "b", L)]
    c = [queue(a, 0.0, "c"), queue(a, 0.0, "c")]   # "c": 2 in flight + 2 queued = heaviest
    d, w = a.try_acquire(H, "d", 0.0)
    assert d == QUEUED and c[1].reason == EVICTED and c[0].state == "waiting"
    # "b" (weight 2, 3 with its newcomer) vs "c" (weight 3): a tie goes against the newcomer,
    # so "b" gives up its own less important request
    d, w2 = a.try_acquire(H, "b", 0.0)
    assert d == QUEUED and b[1].reason == EVICTED and c[0].state == "waiting"
    # and then has nothing less important left: its newcomer is refused
    assert a.try_acquire(H, "b", 0.0) == (SHED, QUEUE_FULL)
    assert b[0].state == "waiting" and w.state == "waiting" and w2.state == "waiting"


def test_per_client_state_exists_only_while_a_client_has_requests():
    a = adm(concurrency=1)
    for i in range(500):
        assert a.try_acquire(N, f"ip:10.0.{i // 256}.{i % 256}", float(i))[0] == ADMIT
        a.release(f"ip:10.0.{i // 256}.{i % 256}", MS, float(i) + MS)
    assert a.clients == {} and a._by_weight == {} and a._max_weight == 0
    fill(a, 0.0, "x")
    w = queue(a, 0.0, "y")
    a.cancel(w, 0.001)
    a.release("x", MS, 0.002)
    assert a.clients == {} and all(not lanes for lanes in a._lanes)


# -- cancellation and live settings -----------------------------------------------------------

def test_a_cancelled_waiter_leaves_and_a_granted_one_hands_its_slot_on():
    a = adm()
    fill(a, 0.0)
    w1, w2, w3 = queue(a, 0.0), queue(a, 0.0), queue(a, 0.0)
    a.cancel(w2, 0.001)
    assert w2.state == CANCELLED and a.queued == 2
    assert serve_one(a, "a", 0.002) == [w1]
    a.cancel(w1, 0.003)                        # granted, but its client had gone
    assert a.take_settled() == [w3] and a.inflight == 2


def test_retune_admits_waiters_a_larger_limit_allows_and_applies_shorter_timeouts():
    a = adm()
    fill(a, 0.0)
    ws = [queue(a, 0.0) for _ in range(4)]
    a.retune(Params(concurrency=4, target_s=10 * MS, interval_s=0.1, queue_timeout_s=1.0,
                    queue_size=100), 0.01)
    assert [w.state for w in a.take_settled()] == [GRANTED, GRANTED]
    a.retune(Params(concurrency=4, target_s=10 * MS, interval_s=0.1, queue_timeout_s=0.005,
                    queue_size=100), 0.02)
    assert [(w.state, w.reason) for w in ws[2:]] == [(SHED_STATE, TIMEOUT)] * 2
    a.retune(Params(concurrency=4, target_s=10 * MS, interval_s=0.1, queue_timeout_s=1.0,
                    queue_size=0), 0.03)
    fill(a, 0.03, "z") if a.inflight < 4 else None
    assert a.try_acquire(H, "a", 0.03) == (SHED, QUEUE_FULL)


def test_retune_of_the_target_moves_the_overload_signal():
    a = adm()
    fill(a, 0.0)
    queue(a, 0.0)
    queue(a, 0.065)
    a.tick(0.07)
    assert not a.overloaded            # above 10 ms since 10 ms: not for 100 ms yet
    a.retune(Params(concurrency=2, target_s=5 * MS, interval_s=50 * MS, queue_timeout_s=1.0,
                    queue_size=100, overload_wait=2.0), 0.07)
    assert a.overloaded and a.snapshot()["wait_limit_ms"] == 10
    # the standing queue's depth is live too
    a.retune(Params(concurrency=2, target_s=5 * MS, interval_s=50 * MS, queue_timeout_s=1.0,
                    queue_size=100, overload_wait=1.5), 0.07)
    assert a.snapshot()["wait_limit_ms"] == 7.5


def test_params_are_validated():
    with pytest.raises(ValueError):
        Params(concurrency=0)
    with pytest.raises(ValueError):
        Params(target_s=0)
