"""Load shedding: an adaptive concurrency limit with a small priority wait queue.

Pure logic, no I/O and no clock of its own (every method takes `now`, in seconds), so tests
drive it with a fake clock; service/http/admission_middleware.py measures and admits.

The limit (`GradientLimit`) is gradient-style, after Netflix concurrency-limits' Gradient2:

  * every admitted request's latency (admission to handler return; queue wait excluded) is a
    sample; samples are averaged over a short window (`window_s`, at least
    `window_min_samples` samples): the short RTT;
  * a long-window baseline RTT follows the short RTT as an exponential average with time
    constant `baseline_window_s`. Downward it always moves at that rate. Upward it moves at that
    rate only from windows in which at most `min` requests were in flight (latency that high
    cannot be our own queueing); from busier windows ten times slower, so a sustained overload
    does not teach the limiter that overloaded latency is normal, while a lasting slowdown of
    the backend is still learned within minutes;
  * gradient = clamp(tolerance * baseline / short, 0.5, 1.0): 1.0 while the latency is within
    `tolerance` times the baseline, less the further it is above;
  * new = limit * gradient + growth, where growth = sqrt(limit) is added only while the gradient
    is 1 and the limit was reached in the window (Gradient2 asks for half of it; at the small
    limits of one asyncio process that let bursts at a moderate load grow the limit to 8 where
    3 was right, and the next overload began with 8 requests waiting on each other). Gradient2
    adds its `queue_size` on every update, which at the small limits of a CPU-bound process
    (2-10) holds the latency at 2-3x the baseline; adding it only within tolerance keeps the
    latency near `tolerance` x baseline;
  * limit = limit * (1 - w) + new * w, clamped to [min, max], where w = smoothing for an
    increase and 2.5 x smoothing for a decrease: a limit that is too high when an overload
    begins is cut within a few windows (8 -> 3 in ~0.3 s), not a second.

Default tolerance 1.3 (Gradient2's is 1.5). bench/overload.py, 3x overload, side by side:
tolerance 2.0 held the limit at ~4 and the admitted p99 at 2.6x the unloaded p99; 1.5 at ~2.7
and 2.0x; 1.3 at ~2.1 and 1.5x, for ~10% less goodput than 1.5 (one asyncio process on 2 CPUs
shared with PostgreSQL: each request in flight is a large step in latency).

Admission (`Admission`) holds the in-flight count, the limit and the wait queue:

  * ops endpoints are not classified here at all (the middleware lets them through);
  * a request is admitted at once while in-flight < capacity (int(limit)); continuation
    requests (LOW) only while in-flight < capacity * low_priority_share, so first pages (HIGH)
    keep the rest;
  * otherwise it may wait in a queue of at most `queue_size` entries, served by priority then
    arrival order; it is refused at once when its expected wait (the requests ahead of it plus
    one, times the short RTT, over the capacity plus one) exceeds half the short RTT or
    `queue_timeout_s`. The queue hands a freed slot straight to the next request; it does not
    hold a backlog, whose wait would add to every admitted request's latency and mostly end in
    timeouts;
  * for one window after any shed, nothing is queued: under a sustained overload the queue
    cannot raise goodput (a freed slot is taken by the next arrival within a millisecond) and
    its timeouts were the slow tail of the 503s (p99 10-16 ms against 3 ms). The queue is for
    the bursts of a load below the limit on average;
  * a queued entry that has waited twice its expected wait (at most one short RTT, and at
    most `queue_timeout_s`) is shed: the service has stalled, and a quick 503 serves its
    client better than a late one;
  * a full queue refuses the newcomer, unless the newcomer has a higher priority than the
    lowest-priority entry queued: that entry (the most recent of the lowest priority) is shed
    and the newcomer takes its place.

`retune()` applies changed settings while running (the limit keeps what it has learned).
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

# Baseline learning from busy windows is this much slower than from quiet ones.
_BUSY_BASELINE_SLOWDOWN = 10.0
_MIN_GRADIENT = 0.5
# Decreases take this many times the smoothing weight: a limit learned at a lighter load is
# too high when an overload begins, and every window it stays too high admits requests
# that wait on each other.
_DECREASE_SPEEDUP = 2.5
_MIN_WAIT_S = 0.001


@dataclass(frozen=True)
class LimitConfig:
    initial: float = 16
    min: int = 1
    max: int = 256
    tolerance: float = 2.0
    smoothing: float = 0.2
    window_s: float = 0.1
    window_min_samples: int = 10
    baseline_window_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ValueError("need 1 <= min <= max")
        if not 0 < self.smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        if self.tolerance < 1:
            raise ValueError("tolerance must be >= 1")


class GradientLimit:
    """The concurrency limit as a float; `sample()` feeds it, `limit` reads it."""

    def __init__(self, config: LimitConfig):
        self.config = config
        self.limit = float(min(max(config.initial, config.min), config.max))
        self.baseline_rtt: float | None = None   # long window, seconds
        self.short_rtt: float | None = None      # the last complete window's mean, seconds
        self.updates = 0
        self._window_start: float | None = None
        self._sum = 0.0
        self._count = 0
        self._min_rtt = math.inf
        self._peak_inflight = 0

    def sample(self, rtt: float, inflight: int, now: float) -> bool:
        """One admitted request finished after `rtt` seconds with `inflight` requests in flight
        (itself included). True when this closed a window and the limit was recomputed."""
        if self._window_start is None:
            self._window_start = now
        self._sum += rtt
        self._count += 1
        if rtt < self._min_rtt:
            self._min_rtt = rtt
        if inflight > self._peak_inflight:
            self._peak_inflight = inflight
        elapsed = now - self._window_start
        if elapsed < self.config.window_s or self._count < self.config.window_min_samples:
            return False
        short, lowest, peak = self._sum / self._count, self._min_rtt, self._peak_inflight
        self._window_start, self._sum, self._count = now, 0.0, 0
        self._min_rtt, self._peak_inflight = math.inf, 0
        self._update(short, lowest, peak, elapsed)
        return True

    def note_inflight(self, inflight: int) -> None:
        """Admissions report the in-flight count too (a window's peak counts them all)."""
        if inflight > self._peak_inflight:
            self._peak_inflight = inflight

    def _update(self, short: float, lowest: float, peak_inflight: int, elapsed: float) -> None:
        c = self.config
        self.short_rtt = short
        self.updates += 1
        quiet = peak_inflight <= c.min
        if self.baseline_rtt is None:
            # A first window taken under load would make overload look normal; its fastest
            # request is the best estimate of the unloaded latency then.
            self.baseline_rtt = short if quiet else lowest
        else:
            rate = min(1.0, elapsed / c.baseline_window_s)
            if short > self.baseline_rtt and not quiet:
                rate /= _BUSY_BASELINE_SLOWDOWN
            self.baseline_rtt += (short - self.baseline_rtt) * rate
        gradient = max(_MIN_GRADIENT, min(1.0, c.tolerance * self.baseline_rtt / short))
        new = self.limit * gradient
        weight = c.smoothing
        if gradient >= 1.0:
            if peak_inflight < int(self.limit):
                return  # the limit was not reached: no evidence that a larger one is safe
            new += math.sqrt(self.limit)
        else:
            weight = min(1.0, weight * _DECREASE_SPEEDUP)
        limit = self.limit * (1 - weight) + new * weight
        self.limit = min(float(c.max), max(float(c.min), limit))


@dataclass(eq=False)
class Waiter:
    """One queued request. `state`: waiting, granted, expired, evicted or cancelled."""
    priority: Priority
    enqueued_at: float
    deadline: float
    state: str = "waiting"
    token: Any = None   # the middleware's future


@dataclass
class Counters:
    admitted: list[int] = field(default_factory=lambda: [0, 0, 0])
    queued: list[int] = field(default_factory=lambda: [0, 0, 0])
    shed_rejected: list[int] = field(default_factory=lambda: [0, 0, 0])   # refused at once
    shed_timeout: list[int] = field(default_factory=lambda: [0, 0, 0])    # waited, no slot
    shed_evicted: list[int] = field(default_factory=lambda: [0, 0, 0])    # a better one came
    cancelled: list[int] = field(default_factory=lambda: [0, 0, 0])       # client went away


ADMIT, QUEUED, SHED = "admit", "queued", "shed"


class Admission:
    def __init__(self, limit: GradientLimit, *, queue_size: int = 32,
                 queue_timeout_s: float = 0.05, low_priority_share: float = 0.5):
        self.limiter = limit
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self.low_priority_share = low_priority_share
        self.inflight = 0
        self.peak_inflight = 0
        self.counters = Counters()
        self._queues: tuple[deque[Waiter], ...] = (deque(), deque(), deque())
        self._waiting = [0, 0, 0]
        self.evicted: list[Waiter] = []
        self.shedding_until = [-math.inf] * 3   # per priority, see _note_shed()
        self.params: Params | None = None      # what from_settings() built it from
        self.next_settings_check = 0.0          # the middleware's, for live settings

    def retune(self, params: Params, now: float) -> list[Waiter]:
        """Apply changed settings while running (PATCH /v1/admin/settings): the new bounds
        clamp the current limit (which keeps what it has learned), the queue takes the new size,
        timeout and share for new arrivals. Returns waiters that a larger limit now admits."""
        self.params = params
        lim = self.limiter
        lim.config = params.limit
        lim.limit = min(float(params.limit.max), max(float(params.limit.min), lim.limit))
        self.queue_size = params.queue_size
        self.queue_timeout_s = params.queue_timeout_s
        self.low_priority_share = params.low_priority_share
        return self._grant(now)

    # -- capacity ----------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return max(1, int(self.limiter.limit))

    def capacity_for(self, priority: Priority) -> int:
        if priority == Priority.LOW:
            return max(1, int(self.limiter.limit * self.low_priority_share))
        return self.capacity

    @property
    def queued(self) -> int:
        return sum(self._waiting)

    # -- arrival -----------------------------------------------------------------------
    def try_acquire(self, priority: Priority, now: float) -> tuple[str, Waiter | None]:
        """ADMIT (a slot is taken), QUEUED (wait on the returned Waiter; expire() or release()
        will settle it) or SHED (answer 503 now). When a queued entry is evicted to make room,
        it is returned by `take_evicted()`."""
        p = priority
        if self.inflight < self.capacity_for(p) and not self._waiting_at_or_above(p):
            self._admit(p)
            return ADMIT, None
        if (self.queue_size <= 0 or self.queue_timeout_s <= 0
                or now < max(self.shedding_until[: p + 1])):
            return self._reject(p, now)
        ahead = self._waiting_at_or_above(p)
        expected = self._expected_wait(ahead, p)
        if expected > self._max_expected_wait():
            return self._reject(p, now)
        if self.queued >= self.queue_size:
            victim = self._evict_for(p)
            if victim is None:
                return self._reject(p, now)
            self._note_shed(victim.priority, now)
            self.evicted.append(victim)
        waiter = Waiter(p, now, now + self._max_wait(expected))
        self._queues[p].append(waiter)
        self._waiting[p] += 1
        self.counters.queued[p] += 1
        return QUEUED, waiter

    def _reject(self, p: Priority, now: float) -> tuple[str, None]:
        self.counters.shed_rejected[p] += 1
        self._note_shed(p, now)
        return SHED, None

    def _note_shed(self, p: Priority, now: float) -> None:
        """A shed means the offered load is above the limit: for the next window, what finds
        no free slot is refused at once instead of queued, at this priority and below (a shed
        continuation says nothing of first pages). Under a sustained overload the queue then
        stays empty (it cannot raise goodput there: a freed slot is taken by the next arrival
        within a millisecond) and no 503 waits; the queue is for the bursts of a load that is
        below the limit on average."""
        self.shedding_until[p] = now + self.limiter.config.window_s

    def take_evicted(self) -> list[Waiter]:
        out, self.evicted = self.evicted, []
        return out

    def _waiting_at_or_above(self, p: Priority) -> int:
        return sum(self._waiting[: p + 1])

    def _max_expected_wait(self) -> float:
        """Queue only when a slot is expected within half a request's time: the queue is there
        to hand a freed slot straight to the next request, not to hold a backlog (a backlog adds
        its wait to every admitted request's latency and mostly ends in timeouts)."""
        short = self.limiter.short_rtt
        return self.queue_timeout_s if short is None else min(self.queue_timeout_s, short / 2)

    def _max_wait(self, expected: float) -> float:
        """A waiter's deadline: twice its expected wait, within the queue timeout. A longer
        wait means the service stalled; a quick 503 serves its client better than a late one."""
        if self.limiter.short_rtt is None:
            return self.queue_timeout_s
        return min(self.queue_timeout_s, max(2 * expected, _MIN_WAIT_S))

    def _expected_wait(self, ahead: int, p: Priority) -> float:
        """With k requests in flight, each with an unknown share of the short RTT left, the
        j-th of them finishes after about j * RTT / (k + 1)."""
        short = self.limiter.short_rtt
        if short is None:
            return 0.0
        return (ahead + 1) * short / (self.capacity_for(p) + 1)

    def _evict_for(self, p: Priority) -> Waiter | None:
        for q in (Priority.LOW, Priority.NORMAL):
            if q <= p:
                return None
            queue = self._queues[q]
            while queue:
                w = queue.pop()  # the most recent of the lowest priority
                if w.state != "waiting":
                    continue
                w.state = "evicted"
                self._waiting[q] -= 1
                self.counters.shed_evicted[q] += 1
                return w
        return None

    def _admit(self, p: Priority) -> None:
        self.inflight += 1
        if self.inflight > self.peak_inflight:
            self.peak_inflight = self.inflight
        self.counters.admitted[p] += 1
        self.limiter.note_inflight(self.inflight)

    # -- departure ---------------------------------------------------------------------
    def release(self, rtt: float | None, now: float) -> list[Waiter]:
        """An admitted request finished (`rtt` seconds after admission; None: it was
        cancelled, no sample). Returns the waiters that now hold a slot (wake them)."""
        if rtt is not None:
            self.limiter.sample(rtt, self.inflight, now)
        self.inflight -= 1
        return self._grant(now)

    def _grant(self, now: float) -> list[Waiter]:
        granted = []
        while True:
            w = self._head()
            if w is None or self.inflight >= self.capacity_for(w.priority):
                # A LOW head may wait for its share while a NORMAL or HIGH one could go;
                # heads are in priority order, so a blocked LOW head has nothing above it.
                return granted
            self._queues[w.priority].popleft()
            self._waiting[w.priority] -= 1
            w.state = "granted"
            self._admit(w.priority)
            granted.append(w)

    def _head(self) -> Waiter | None:
        for queue in self._queues:
            while queue and queue[0].state != "waiting":
                queue.popleft()
            if queue:
                return queue[0]
        return None

    def expire(self, now: float) -> list[Waiter]:
        """Shed the queued entries whose deadline has passed."""
        out = []
        for p, queue in enumerate(self._queues):
            while queue and (queue[0].state != "waiting" or queue[0].deadline <= now):
                w = queue.popleft()
                if w.state == "waiting":
                    w.state = "expired"
                    self._waiting[p] -= 1
                    self.counters.shed_timeout[p] += 1
                    self._note_shed(Priority(p), now)
                    out.append(w)
        return out

    def cancel(self, waiter: Waiter, now: float) -> list[Waiter]:
        """The client of a queued request went away. A waiter granted a slot in the meantime
        gives it back (returns who got it instead)."""
        if waiter.state == "waiting":
            waiter.state = "cancelled"
            self._waiting[waiter.priority] -= 1
            self.counters.cancelled[waiter.priority] += 1
            return []
        if waiter.state == "granted":
            waiter.state = "cancelled"
            return self.release(None, now)
        return []

    # -- reporting ---------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        lim = self.limiter

        def by_priority(values: list[int]) -> dict[str, int]:
            return {PRIORITY_NAMES[Priority(i)]: v for i, v in enumerate(values)}

        shed = [a + b + d for a, b, d in zip(c.shed_rejected, c.shed_timeout, c.shed_evicted)]
        return {
            "limit": round(lim.limit, 2),
            "capacity": self.capacity,
            "inflight": self.inflight,
            "peak_inflight": self.peak_inflight,
            "queued": self.queued,
            "baseline_rtt_ms": None if lim.baseline_rtt is None else round(lim.baseline_rtt * 1e3, 3),
            "short_rtt_ms": None if lim.short_rtt is None else round(lim.short_rtt * 1e3, 3),
            "limit_updates": lim.updates,
            "admitted": by_priority(c.admitted),
            "shed": by_priority(shed),
            "shed_total": sum(shed),
            "shed_by_reason": {"rejected": sum(c.shed_rejected), "queue_timeout": sum(c.shed_timeout),
                               "evicted": sum(c.shed_evicted)},
            "queued_total": by_priority(c.queued),
            "cancelled": sum(c.cancelled),
        }


@dataclass(frozen=True)
class Params:
    """Everything the settings say about admission."""
    limit: LimitConfig
    queue_size: int
    queue_timeout_s: float
    low_priority_share: float


def params_from_settings(s: Any) -> Params:
    return Params(LimitConfig(initial=s.concurrency_limit_initial, min=s.concurrency_limit_min,
                              max=s.concurrency_limit_max, tolerance=s.admission_tolerance,
                              smoothing=s.admission_smoothing,
                              window_s=s.admission_window_ms / 1000,
                              baseline_window_s=s.admission_baseline_window_s),
                  queue_size=s.admission_queue_size,
                  queue_timeout_s=s.admission_queue_timeout_ms / 1000,
                  low_priority_share=s.admission_low_priority_share)


def from_settings(s: Any) -> Admission:
    """The admission controller that the settings (service/core/settings.py) describe."""
    p = params_from_settings(s)
    admission = Admission(GradientLimit(p.limit), queue_size=p.queue_size,
                          queue_timeout_s=p.queue_timeout_s,
                          low_priority_share=p.low_priority_share)
    admission.params = p
    return admission
