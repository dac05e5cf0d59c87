"""Load shedding: a fixed concurrency limit, a fair priority queue, and a controlled-delay
(CoDel) overload signal.

Pure logic, no I/O and no clock of its own (every method takes `now`, in seconds), so tests
drive it with a fake clock; service/http/admission_middleware.py classifies, admits and
answers.

Why this signal. In one asyncio process requests share the CPU: any concurrency raises every
request's latency, so a latency gradient reads honest load as overload (the adaptive limit
this replaces shed 3-10% of a Locust run at a few percent of capacity). What does mean
overload is a queue that does not drain. After Facebook's "Fail at Scale" (controlled delay on
the request queue) and folly's Codel:

  * At most `concurrency` requests run at once: enough to keep the event loop and the database
    busy, not adapted by latency. A request that finds every slot taken waits in the queue.
  * The target is `target_s`, or the time between two departures (a slot's mean holding time
    over the slots, an exponential average over ~20 requests) when that is longer: a queue
    of one waits that long.
  * Overloaded (a standing queue) when the oldest waiter's wait has been above the target
    without a break for `interval_s`, or at once when more work is queued than drains in
    target + interval (a burst that cannot drain within the interval is standing whatever
    comes next). Not overloaded again until the oldest wait has stayed at or below the
    target for an interval (0 when nobody waits). A burst below capacity drains within the
    interval and is only delayed.
  * Not overloaded: a request may wait up to the generous `queue_timeout_s`; a newcomer
    expected to wait longer, or finding `queue_size` waiters, is refused at once.
  * Overloaded: a newcomer expected to wait more than `overload_wait` x target (1.5) is
    refused at once (the cheap 503: no waiting, no work; a newcomer with a turn in the new
    list, below, may expect up to 4 x target); a waiter is shed after 4 x target (a stall).
    When the overload begins, the backlog is cut to its newest 4 x target of work (the
    oldest would time out, having waited longest already: the useful part of adaptive LIFO;
    serving newest first for as long as the overload lasts made the oldest waiters time out,
    slow 503s). The queue then holds about `overload_wait` x target of work: every freed
    slot goes straight to a waiter (full goodput) and the oldest wait stays above the target
    while the overload lasts (so at least 1; at 1 the queue stands at the target itself,
    where the signal may end an overload while it lasts). Not deeper than needed for that:
    every admitted request waits it out (bench/overload.py at 3x the peak, side by side:
    2 x target gave admitted p50 46 ms and p99 75 ms, 1.5 x 35 and 60, the same goodput).
    Newcomers refused in the protocol are judged with the requests let through just before
    them counted as queued (refuse(): announcements). A client's request
    of a lower priority than one of its own shed in the last interval is refused at once (it
    could only wait to be overtaken by that client's next ones), unless it has a turn in the
    new list.
  * Expected wait = (requests served before it + 1) x the time between departures.

Priorities: first pages (HIGH), then writes and everything else (NORMAL), then continuation
pages and quote lists (LOW). Ops endpoints are not classified here at all.

Fairness, after fq_codel. A client is a `service.core.clients.Client` key (account, else address).
Each client has a FIFO lane per priority. A client with nothing queued is *sparse*: its
request gets a lane in the "new" list, served before every backlogged ("old") lane, new lanes
by priority (a client's turn in the new list goes to its most important request). Then the
backlogged clients take turns, one request each, each its most important waiter: priority
orders a client's own requests, not one client's against another's (a greedy client's first
pages would otherwise starve a polite client's continuation). So a polite client's request
waits for about one departure whatever a greedy client has queued, and among many sparse
clients (a crowd) priorities hold. While overloaded, a client being shed
(one of its requests in the last interval) holds at most its share of the slots:
`concurrency` over the distinct clients that came in this interval and the last (estimated
from a fixed 1,024-bit bitmap of hashed keys: no per-client state), at least one. A slot may
then stay free for a client that comes back: polite clients' requests are short and sparse,
and each of them would otherwise run beside a greedy client's requests on every slot (they
share one CPU). Clients not being shed are not held back. When the service must shed (a full queue, or a newcomer
expected to wait too long), the victim is the client holding the most requests (in flight +
queued): when that is not the newcomer's own client, its newest, least important waiter is
shed (`evicted`) and the newcomer waits; of its own client only a less important waiter; else
the newcomer is refused. Per-client state exists only while a client has requests in flight
or queued.

Costs: O(1) amortized per arrival, departure, cancellation and timeout, except that a grant
while overloaded may pass over the lanes of clients holding their share (at most the lanes
waiting, <= queue_size); memory O(waiters + clients in flight), waiters <= queue_size, plus
a timestamp per announcement (refuse()), at most the arrivals of the last ANNOUNCED_S.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    HIGH = 0    # first pages of conversations
    NORMAL = 1  # writes and everything else that is not an ops endpoint
    LOW = 2     # continuation pages (/replies, /ancestors) and quote lists


PRIORITY_NAMES = {Priority.HIGH: "first_page", Priority.NORMAL: "normal",
                  Priority.LOW: "continuation"}
PRIORITIES = tuple(Priority)

ADMIT, QUEUED, SHED = "admit", "queued", "shed"
# Why a request was shed: the `reason` of arbor_admission_shed_total.
OVERLOADED = "overloaded"   # refused on arrival while overloaded
QUEUE_FULL = "queue_full"   # refused on arrival: queue_size waiters, or a wait > queue_timeout
EVICTED = "evicted"         # waited, then gave its place to a lighter client's request (or to
#                             a more important one of its own client)
TIMEOUT = "timeout"         # waited longer than allowed (or was among the oldest of the
#                             backlog when an overload began)
REASONS = (OVERLOADED, QUEUE_FULL, EVICTED, TIMEOUT)

WAITING, GRANTED, SHED_STATE, CANCELLED = "waiting", "granted", "shed", "cancelled"

# While overloaded: waiters are shed after TIMEOUT_FACTOR targets (newcomers expected to wait
# longer than Params.overload_wait targets are refused).
TIMEOUT_FACTOR = 4.0
# The mean time a request holds a slot: an exponential average, this weight per request.
_RTT_WEIGHT = 0.05
# Bits of the bitmap that estimates how many distinct clients came recently (slot_share);
# linear counting is within a few percent up to about this many clients.
_SEEN_BITS = 1024
# How long a request refuse() let through counts as coming (refuse()): it reaches try_acquire
# in the same turn of the event loop or the next; one that does not within this is not coming.
ANNOUNCED_S = 0.005


@dataclass(frozen=True)
class Params:
    """Everything the settings say about admission."""
    concurrency: int = 4          # defaults as in service/core/settings.py
    target_s: float = 0.020
    interval_s: float = 0.4
    queue_timeout_s: float = 1.0
    queue_size: int = 1000
    overload_wait: float = 1.5    # targets a newcomer may expect to wait while overloaded

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.target_s <= 0 or self.interval_s <= 0:
            raise ValueError("target and interval must be > 0")
        if self.queue_size < 0 or self.queue_timeout_s < 0:
            raise ValueError("queue size and timeout must be >= 0")
        if not 1.0 <= self.overload_wait <= TIMEOUT_FACTOR:
            raise ValueError(f"overload_wait must be within 1 and {TIMEOUT_FACTOR:g}")


@dataclass(eq=False, slots=True)
class Waiter:
    """One queued request. `state`: waiting, granted, shed or cancelled; `reason`: why it was
    shed. `token` is the middleware's (its future)."""
    priority: Priority
    client: str
    enqueued_at: float
    lane: "_Lane"
    state: str = WAITING
    reason: str | None = None
    token: Any = None


class _Lane:
    """One client's waiters at one priority, in arrival order (settled entries are skipped)."""
    __slots__ = ("priority", "client", "waiters", "live", "dead", "new")

    def __init__(self, priority: Priority, client: str, new: bool):
        self.priority, self.client, self.new = priority, client, new
        self.waiters: deque[Waiter] = deque()
        self.live = 0
        self.dead = False


class _Client:
    __slots__ = ("inflight", "queued", "new_lane", "shed_at", "shed_priority", "old_waiting",
                 "in_old")

    def __init__(self) -> None:
        self.inflight = 0
        self.queued = 0
        self.new_lane: _Lane | None = None   # its lane in the new list: its most important
        self.shed_at = -1e18                 # last time one of its requests was shed while
        self.shed_priority = Priority.LOW    # overloaded, and the best priority shed then
        self.old_waiting = 0                 # its waiters in old lanes
        self.in_old = False                  # in the old list's round robin

    @property
    def weight(self) -> int:
        return self.inflight + self.queued


@dataclass
class Counters:
    admitted: list[int] = field(default_factory=lambda: [0, 0, 0])   # got a slot
    queued: list[int] = field(default_factory=lambda: [0, 0, 0])     # waited for it
    shed: dict[str, list[int]] = field(
        default_factory=lambda: {r: [0, 0, 0] for r in REASONS})     # by reason, priority
    cancelled: list[int] = field(default_factory=lambda: [0, 0, 0])  # client went away
    overload_episodes: int = 0


class Admission:
    def __init__(self, params: Params | None = None):
        self.params = params or Params()
        self.inflight = 0
        self.peak_inflight = 0
        self.peak_queued = 0
        self.counters = Counters()
        self.clients: dict[str, _Client] = {}
        self.rtt: float | None = None     # mean time a request holds a slot, s
        self.settled: list[Waiter] = []   # granted or shed since take_settled()
        self.overloaded = False
        self.overloaded_since: float | None = None
        self.oldest_wait = 0.0            # at the last look
        self.next_settings_check = 0.0    # the middleware's, for live settings
        self._lanes: tuple[dict[str, _Lane], ...] = ({}, {}, {})
        self._new: tuple[deque[_Lane], ...] = (deque(), deque(), deque())
        self._old: deque[str] = deque()   # clients with backlogged (old) lanes, in turn
        self._new_lanes = [0, 0, 0]       # live lanes in _new, by priority
        self._waiting = [0, 0, 0]
        self._by_arrival: deque[Waiter] = deque()
        # clients with waiters, by weight: the heaviest is in the top bucket
        self._by_weight: dict[int, dict[str, None]] = {}
        self._max_weight = 0
        # since when the oldest wait has been above the target (not overloaded), or at or
        # below it (overloaded)
        self._since: float | None = None
        self._last_watch = 0.0
        self._seen = self._seen_before = 0       # bitmaps of hashed client keys
        self._seen_until = 0.0
        # requests refuse() let through that have not reached try_acquire yet
        # (when, by priority: each announcement's time)
        self._announced: tuple[deque[float], ...] = (deque(), deque(), deque())
        self._announced_by = [0, 0, 0]

    # -- settings ------------------------------------------------------------------------
    def retune(self, params: Params, now: float) -> None:
        """Apply changed settings while running (PATCH /v1/admin/settings): more slots admit
        waiters at once, shorter timeouts shed those that waited longer (see take_settled)."""
        self.params = params
        self._expire(now)
        self._grant(now)
        self._watch(now)

    # -- reading -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return sum(self._waiting)

    def target(self) -> float:
        """The target delay, or the time between two departures (a slot's mean holding time
        over the slots) when that is longer: a queue of one waits that long."""
        return max(self.params.target_s, (self.rtt or 0.0) / self.params.concurrency)

    def wait_limit(self) -> float:
        """The longest expected wait a newcomer may be queued for now."""
        p = self.params
        return min(p.queue_timeout_s, p.overload_wait * self.target()) if self.overloaded \
            else p.queue_timeout_s

    def timeout(self) -> float:
        """How long a waiter may wait now."""
        p = self.params
        return min(p.queue_timeout_s, TIMEOUT_FACTOR * self.target()) if self.overloaded \
            else p.queue_timeout_s

    def expected_wait(self, priority: Priority, new_turn: bool) -> float:
        """A newcomer's expected wait: the requests served before it (in a new lane: the new
        lanes of its priority and above; else every waiter of its priority and above and the
        new lanes below) plus one, each a slot's mean holding time over the slots."""
        if new_turn:
            ahead = sum(self._new_lanes[: priority + 1])
        else:
            ahead = sum(self._waiting[: priority + 1]) + sum(self._new_lanes[priority + 1:])
        return (ahead + 1) * (self.rtt or 0.0) / self.params.concurrency

    def _new_turn(self, c: _Client | None, priority: Priority) -> bool:
        """Does a newcomer of this client get a new lane? When the client has nothing queued
        (sparse), or when its new lane is of a lower priority: the client's turn in the new
        list goes to its most important request."""
        if c is None or c.queued == 0:
            return True
        lane = c.new_lane
        return lane is not None and lane.priority > priority

    def _queue_work(self) -> float:
        """How long the queue takes to drain if nobody else comes."""
        return self.queued * (self.rtt or 0.0) / self.params.concurrency

    def weight_of(self, client: str) -> int:
        c = self.clients.get(client)
        return 0 if c is None else c.weight

    def take_settled(self) -> list[Waiter]:
        """Waiters granted a slot (GRANTED) or shed (SHED_STATE, with a reason) since the last
        call: the middleware wakes them."""
        out, self.settled = self.settled, []
        return out

    def next_deadline(self) -> float | None:
        """When tick() must run next (None: never, unless something happens): the oldest
        waiter's timeout, or when the overload signal would change if nothing happened."""
        interval = self.params.interval_s
        head = self._oldest()
        if self.overloaded:
            end = None if self._since is None else self._since + interval
            if head is None:
                return end
            due = head.enqueued_at + self.timeout()
            return due if end is None else min(due, end)
        if head is None:
            return None
        since = self._since
        if since is None:
            since = max(self._last_watch, head.enqueued_at + self.target())
        return min(head.enqueued_at + self.timeout(), since + interval)

    # -- arrival -------------------------------------------------------------------------
    def try_acquire(self, priority: Priority, client: str,
                    now: float) -> tuple[str, Waiter | str | None]:
        """(ADMIT, None): a slot is taken, release() it. (QUEUED, waiter): wait until it is
        settled. (SHED, reason): answer 503 now. Making room may shed another waiter
        (take_settled)."""
        self._watch(now)
        self._see(client, now)
        if self._announced[priority]:
            self._take_announcement(priority, now)
        decision, detail = self._arrive(priority, client, now)
        self._watch(now)
        return decision, detail

    def refuse(self, priority: Priority, client: str, now: float) -> str | None:
        """try_acquire for a request that would be refused outright once the requests
        announced before it (below) have arrived: the same refusal (counted, noted against
        its client), its reason returned. Else None: the request is announced, and nothing
        else changed but the signal's clock and the bitmap of clients seen (both
        idempotent); it then goes the usual way, try_acquire, which takes the announcement
        back. For refusing before a request object exists (service/http/early_refusal.py).

        Why announcements: the protocol reads every socket that became readable in one
        turn of the event loop before any of those requests reaches try_acquire, so without
        them each request of a burst is judged against the queue as it was before the
        burst, and every one of them is let through to be refused later by the middleware,
        at three times the cost (under bench/overload.py at 3x the peak, a third of all
        refusals). An announcement counts as a waiter of its priority in the verdict of the
        requests refused after it (not of a client's turn in the new list: the requests of
        sparse clients are judged as before) and lapses after ANNOUNCED_S (a request that
        never reaches admission: a 429, a closed connection)."""
        self._watch(now)
        self._see(client, now)
        a = self._announced
        kind, reason, _, _ = self._verdict(priority, client, now, self._announced_now(now)
                                           if a[0] or a[1] or a[2] else None)
        if kind is not SHED:
            self._announced[priority].append(now)
            return None
        self._refuse(priority, client, reason, now)
        self._watch(now)
        return reason

    def _announced_now(self, now: float) -> list[int]:
        """The live announcements by priority (lapsed ones dropped)."""
        cutoff = now - ANNOUNCED_S
        for p, q in enumerate(self._announced):
            while q and q[0] < cutoff:
                q.popleft()
            self._announced_by[p] = len(q)
        return self._announced_by

    def _take_announcement(self, priority: Priority, now: float) -> None:
        """A request reached try_acquire: the oldest live announcement of its priority is
        taken back (which request it was does not matter, only how many are to come)."""
        q = self._announced[priority]
        cutoff = now - ANNOUNCED_S
        while q and q[0] < cutoff:
            q.popleft()
        if q:
            q.popleft()

    def _verdict(self, priority: Priority, client: str, now: float,
                 announced: list[int] | None = None
                 ) -> tuple[str, str | None, Waiter | None, bool]:
        """What an arrival gets, changing nothing: (ADMIT, ..), (SHED, reason, ..), or
        (QUEUED, reason, victim, new_turn): it waits, after `victim` (if any) is evicted.
        `announced`: requests by priority that come first (refuse())."""
        p = self.params
        c = self.clients.get(client)
        coming = sum(announced) if announced else 0
        if self.inflight + coming < p.concurrency and not self._held_back(c, now):
            return ADMIT, None, None, False
        if p.queue_size <= 0 or p.queue_timeout_s <= 0:
            return SHED, QUEUE_FULL, None, False
        new_turn = self._new_turn(c, priority)
        expected = self.expected_wait(priority, new_turn)
        if coming and not new_turn:
            # they take the free slots first, then wait ahead of it (as expected_wait counts)
            ahead = sum(announced[: priority + 1]) - max(0, p.concurrency - self.inflight)
            expected += max(0, ahead) * (self.rtt or 0.0) / p.concurrency
        reason = None
        # A newcomer with a turn in the new list (its client has nothing queued, or nothing
        # as important) is served first: it may wait up to the overload timeout. One of a
        # client whose more important requests were shed in the last interval could only
        # wait to be overtaken by that client's next ones: refused at once.
        limit = self.timeout() if new_turn else self.wait_limit()
        if self.overloaded and (expected > limit or (
                not new_turn and c.shed_priority < priority
                and c.shed_at >= now - p.interval_s)):
            reason = OVERLOADED
        elif self.queued + coming >= p.queue_size or expected > p.queue_timeout_s:
            reason = QUEUE_FULL
        victim = None
        if reason is not None:
            victim = self._victim(priority, client)
            if victim is None:
                return SHED, reason, None, new_turn
        return QUEUED, reason, victim, new_turn

    def _arrive(self, priority: Priority, client: str,
                now: float) -> tuple[str, Waiter | str | None]:
        kind, reason, victim, new_turn = self._verdict(priority, client, now)
        if kind is ADMIT:
            self._admit(priority, client)
            return ADMIT, None
        if kind is SHED:
            return SHED, self._refuse(priority, client, reason, now)
        if victim is not None:
            self._shed_waiter(victim, EVICTED, now)
        return QUEUED, self._enqueue(priority, client, new_turn, now)

    def slot_share(self) -> int:
        """The most slots a client being shed may hold: while overloaded, an equal share
        among the clients seen in the last one or two intervals (at least one slot); else all
        of them (nobody is being shed: no need to hold capacity back)."""
        c = self.params.concurrency
        if not self.overloaded:
            return c
        return max(1, c // max(1, round(self.recent_clients())))

    def recent_clients(self) -> float:
        """Distinct clients that came in this interval and the last (an estimate: linear
        counting over a fixed bitmap, so no state per client)."""
        zeros = _SEEN_BITS - (self._seen | self._seen_before).bit_count()
        if zeros == 0:
            return float(_SEEN_BITS)
        return -_SEEN_BITS * math.log(zeros / _SEEN_BITS)

    def _see(self, client: str, now: float) -> None:
        self._rotate(now)
        self._seen |= 1 << (hash(client) & (_SEEN_BITS - 1))

    def _rotate(self, now: float) -> None:
        if now >= self._seen_until:
            fresh = now >= self._seen_until + self.params.interval_s
            self._seen_before = 0 if fresh else self._seen
            self._seen = 0
            self._seen_until = now + self.params.interval_s

    def _held_back(self, c: _Client | None, now: float, share: int | None = None) -> bool:
        """A client being shed (one of its requests in the last interval, while overloaded)
        that holds its share of the slots waits for one of its own to finish. Others are
        not held back: a polite client's second request may take a free slot."""
        if c is None or not self.overloaded or c.shed_at < now - self.params.interval_s:
            return False
        return c.inflight >= (self.slot_share() if share is None else share)

    def _refuse(self, priority: Priority, client: str, reason: str, now: float) -> str:
        self.counters.shed[reason][priority] += 1
        self._note_shed(client, priority, now)
        return reason

    def _note_shed(self, client: str, priority: Priority, now: float) -> None:
        c = self.clients.get(client)     # kept only while the client has requests anyway
        if c is not None and self.overloaded:
            if c.shed_at < now - self.params.interval_s or priority < c.shed_priority:
                c.shed_priority = priority
            c.shed_at = now

    def _victim(self, priority: Priority, client: str) -> Waiter | None:
        """Whom to shed so that this newcomer can wait: the newest, least important waiter of
        the client holding the most (in flight + queued) when that is not the newcomer's own;
        of its own client only a less important one. None: refuse the newcomer."""
        own = self.weight_of(client) + 1
        if self._max_weight > own:
            heavy = next(iter(self._by_weight[self._max_weight]))
            return self._newest_least_important(heavy, Priority.HIGH)
        if priority < Priority.LOW:
            return self._newest_least_important(client, Priority(priority + 1))
        return None

    def _newest_least_important(self, client: str, at_least: Priority) -> Waiter | None:
        for q in (Priority.LOW, Priority.NORMAL, Priority.HIGH):
            if q < at_least:
                return None
            lane = self._lanes[q].get(client)
            if lane is not None:
                while lane.waiters[-1].state != WAITING:
                    lane.waiters.pop()
                return lane.waiters[-1]
        return None

    def _enqueue(self, priority: Priority, client: str, new_turn: bool, now: float) -> Waiter:
        c = self._client(client)
        lanes = self._lanes[priority]
        lane = lanes.get(client)
        if lane is None:
            lane = lanes[client] = _Lane(priority, client, new=new_turn)
            if new_turn:
                if c.new_lane is not None:         # a less important one: it goes to old
                    self._demote(c.new_lane)
                c.new_lane = lane
                self._new[priority].append(lane)
                self._new_lanes[priority] += 1
            else:
                self._join_old(client, c)
        w = Waiter(priority, client, now, lane)
        lane.waiters.append(w)
        lane.live += 1
        if not lane.new:
            c.old_waiting += 1
        self._by_arrival.append(w)
        self._waiting[priority] += 1
        old = c.weight
        c.queued += 1
        self._reweigh(client, c, old)
        self.counters.queued[priority] += 1
        if self.queued > self.peak_queued:
            self.peak_queued = self.queued
        return w

    def _demote(self, lane: _Lane) -> None:
        """A lane leaves the new list (served once, emptied, or overtaken by its client's
        more important request); one that still has waiters joins the old list."""
        lane.new = False
        self._new_lanes[lane.priority] -= 1
        c = self.clients.get(lane.client)
        if c is not None and c.new_lane is lane:
            c.new_lane = None
        if not lane.dead and c is not None:
            c.old_waiting += lane.live
            self._join_old(lane.client, c)

    def _join_old(self, client: str, c: _Client) -> None:
        if not c.in_old:
            c.in_old = True
            self._old.append(client)

    # -- departure -----------------------------------------------------------------------
    def release(self, client: str, rtt: float | None, now: float) -> None:
        """An admitted request finished after holding its slot `rtt` seconds (None: it was
        cancelled, no sample). Freed slots go to waiters (take_settled)."""
        if rtt is not None:
            self.rtt = rtt if self.rtt is None else self.rtt + (rtt - self.rtt) * _RTT_WEIGHT
        self._rotate(now)
        self.inflight -= 1
        c = self.clients.get(client)
        if c is not None:
            old = c.weight
            c.inflight -= 1
            self._reweigh(client, c, old)
        self._grant(now)
        self._watch(now)

    def cancel(self, waiter: Waiter, now: float) -> None:
        """The client of a queued request went away; one granted meanwhile gives its slot
        back."""
        if waiter.state == WAITING:
            self._unqueue(waiter, CANCELLED)
            self.counters.cancelled[waiter.priority] += 1
            self._watch(now)
        elif waiter.state == GRANTED:
            waiter.state = CANCELLED
            self.release(waiter.client, None, now)

    def tick(self, now: float) -> None:
        """The timer: the overload signal moves on, waiters past their timeout are shed."""
        self._rotate(now)
        self._watch(now)
        self._expire(now)
        self._grant(now)
        self._watch(now)

    def _grant(self, now: float) -> None:
        while self.inflight < self.params.concurrency:
            w = self._next_waiter(now)
            if w is None:
                return
            self._unqueue(w, GRANTED)
            self._admit(w.priority, w.client)
            self.settled.append(w)
            if self.overloaded and now - w.enqueued_at > self.target():
                self._since = None     # it waited above the target: the queue still stands

    def _next_waiter(self, now: float) -> Waiter | None:
        """New lanes first, by priority, in arrival order; then the backlogged clients in
        turn, each its most important waiter; one request per turn, first in first out
        within a lane. A client held to its share of the slots (_held_back) waits its turn.
        None: nobody may have the slot now."""
        share = self.slot_share()
        for p in PRIORITIES:
            rr = self._new[p]
            skipped = 0
            while len(rr) > skipped:
                lane = rr.popleft()
                if lane.dead or not lane.new:
                    continue                       # retired, or demoted to the old list
                if self._held_back(self.clients[lane.client], now, share):
                    rr.append(lane)                # at its share: the next lane's turn
                    skipped += 1
                    continue
                if lane.live > 1:                  # its turn in the new list is used
                    self._demote(lane)             # (its last waiter: _unqueue() retires it)
                return self._first_waiting(lane)
        rr = self._old
        skipped = 0
        while len(rr) > skipped:
            key = rr.popleft()
            c = self.clients.get(key)
            if c is None or not c.old_waiting:
                if c is not None:
                    c.in_old = False
                continue
            if self._held_back(c, now, share):
                rr.append(key)
                skipped += 1
                continue
            for p in PRIORITIES:
                lane = self._lanes[p].get(key)
                if lane is not None and not lane.new and lane.live:
                    if c.old_waiting > 1:
                        rr.append(key)             # more to come: its next turn
                    else:
                        c.in_old = False
                    return self._first_waiting(lane)
            c.in_old = False                       # (counts and lanes disagree: never)
        return None

    @staticmethod
    def _first_waiting(lane: _Lane) -> Waiter:
        while lane.waiters[0].state != WAITING:
            lane.waiters.popleft()
        return lane.waiters[0]

    def _admit(self, priority: Priority, client: str) -> None:
        self.inflight += 1
        if self.inflight > self.peak_inflight:
            self.peak_inflight = self.inflight
        c = self._client(client)
        old = c.weight
        c.inflight += 1
        self._reweigh(client, c, old)
        self.counters.admitted[priority] += 1

    def _unqueue(self, w: Waiter, state: str) -> None:
        """Take a waiting entry out of the queue (granted, shed or cancelled)."""
        assert w.state == WAITING, w.state
        w.state = state
        p = w.priority
        self._waiting[p] -= 1
        lane = w.lane
        was_new = lane.new
        lane.live -= 1
        if lane.waiters[0] is w:
            lane.waiters.popleft()
        elif lane.waiters[-1] is w:
            lane.waiters.pop()
        if lane.live == 0:
            lane.dead = True
            lane.waiters.clear()
            if lane.new:
                self._demote(lane)
            del self._lanes[p][w.client]
        c = self.clients[w.client]
        if not was_new:
            c.old_waiting -= 1
        old = c.weight
        c.queued -= 1
        self._reweigh(w.client, c, old)

    def _shed_waiter(self, w: Waiter, reason: str, now: float) -> None:
        self._unqueue(w, SHED_STATE)
        w.reason = reason
        self.counters.shed[reason][w.priority] += 1
        self._note_shed(w.client, w.priority, now)
        self.settled.append(w)

    def _expire(self, now: float) -> None:
        limit = self.timeout()
        q = self._by_arrival
        while q:
            w = q[0]
            if w.state != WAITING:
                q.popleft()
            elif w.enqueued_at + limit <= now:   # as next_deadline() computes it
                q.popleft()
                self._shed_waiter(w, TIMEOUT, now)
            else:
                return

    def _oldest(self) -> Waiter | None:
        q = self._by_arrival
        while q and q[0].state != WAITING:
            q.popleft()
        return q[0] if q else None

    # -- the overload signal -------------------------------------------------------------
    def _watch(self, now: float) -> None:
        """After every change. Not overloaded: the oldest wait above the target without a
        break for a whole interval (or more work queued than drains in target + interval)
        means overloaded. Overloaded: until the oldest wait has been at or below the target
        without a break for a whole interval."""
        interval, target = self.params.interval_s, self.target()
        head = self._oldest()
        age = 0.0 if head is None else now - head.enqueued_at
        self.oldest_wait = age
        if self.overloaded:
            if age > target:
                self._since = None
            else:
                if self._since is None:
                    self._since = now
                if now >= self._since + interval:      # as next_deadline() computes it
                    self._set_overloaded(False, now)
        elif self._queue_work() > target + interval:
            # more work queued than can drain within the interval: standing, whatever comes
            self._set_overloaded(True, now)
        elif age <= target:
            self._since = None
        else:
            if self._since is None:
                # it crossed the target after the last look, and not before this waiter came
                self._since = max(self._last_watch, head.enqueued_at + target)
            if now >= self._since + interval:          # as next_deadline() computes it
                self._set_overloaded(True, now)
        self._last_watch = now

    def _set_overloaded(self, overloaded: bool, now: float) -> None:
        self._since = None
        self.overloaded = overloaded
        if overloaded:
            self.counters.overload_episodes += 1
            self.overloaded_since = now
            # The backlog of the interval before: what waited past the overload timeout, and
            # the oldest beyond what the slots serve within it (they would time out, having
            # waited longest already; the newest are served), go now.
            self._expire(now)
            limit = self.timeout()
            while self._queue_work() > limit:
                self._shed_waiter(self._oldest(), TIMEOUT, now)
        else:
            self.overloaded_since = None
            self._grant(now)    # shares no longer hold anybody back

    # -- per-client bookkeeping ----------------------------------------------------------
    def _client(self, key: str) -> _Client:
        c = self.clients.get(key)
        if c is None:
            c = self.clients[key] = _Client()
        return c

    def _reweigh(self, key: str, c: _Client, old: int) -> None:
        """Keep the weight buckets (clients with waiters only); forget idle clients."""
        buckets = self._by_weight
        bucket = buckets.get(old)
        if bucket is not None and key in bucket:
            del bucket[key]
            if not bucket:
                del buckets[old]
        new = c.weight
        if c.queued > 0:
            buckets.setdefault(new, {})[key] = None
            if new > self._max_weight:
                self._max_weight = new
        elif new == 0:
            del self.clients[key]
        # weights move by one, and a client joins the buckets at most concurrency + 1 high
        while self._max_weight > 0 and self._max_weight not in buckets:
            self._max_weight -= 1

    # -- reporting -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        c = self.counters

        def by_priority(values: list[int]) -> dict[str, int]:
            return {PRIORITY_NAMES[Priority(i)]: v for i, v in enumerate(values)}

        shed = [sum(c.shed[r][i] for r in REASONS) for i in range(3)]
        p = self.params
        return {
            "overloaded": self.overloaded,
            "concurrency": p.concurrency,
            "inflight": self.inflight,
            "peak_inflight": self.peak_inflight,
            "queued": self.queued,
            "peak_queued": self.peak_queued,
            "clients": len(self.clients),
            "recent_clients": round(self.recent_clients(), 1),
            "slot_share": self.slot_share(),
            "oldest_wait_ms": round(self.oldest_wait * 1e3, 3),
            "target_ms": round(p.target_s * 1e3, 3),
            "effective_target_ms": round(self.target() * 1e3, 3),
            "wait_limit_ms": round(self.wait_limit() * 1e3, 3),
            "slot_time_ms": None if self.rtt is None else round(self.rtt * 1e3, 3),
            "overload_episodes": c.overload_episodes,
            "admitted": by_priority(c.admitted),
            "queued_total": by_priority(c.queued),
            "shed": by_priority(shed),
            "shed_total": sum(shed),
            "shed_by_reason": {r: sum(c.shed[r]) for r in REASONS},
            "cancelled": sum(c.cancelled),
        }


def params_from_settings(s: Any) -> Params:
    return Params(concurrency=s.concurrency_limit, target_s=s.admission_target_ms / 1000,
                  interval_s=s.admission_interval_ms / 1000,
                  queue_timeout_s=s.admission_queue_timeout_ms / 1000,
                  queue_size=s.admission_queue_size,
                  overload_wait=s.admission_overload_wait_pct / 100)


def from_settings(s: Any) -> Admission:
    """The admission controller that the settings (service/core/settings.py) describe."""
    return Admission(params_from_settings(s))
