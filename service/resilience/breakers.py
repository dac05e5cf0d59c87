"""Circuit breakers, one per dependency (the database; ranking data).

Closed: calls go through; `failure_threshold` consecutive failures open it. Open: calls fail
at once with BreakerOpen (nobody waits on a dependency known to be down) until a jittered,
exponentially growing backoff has passed. Half-open: one probe call goes through; success
closes the breaker, failure opens it again with a longer backoff. Pure state plus a clock.
"""
from __future__ import annotations

import random
import time
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class BreakerOpen(Exception):
    """The dependency is known to be down; the call was not attempted."""

    def __init__(self, name: str, retry_in: float):
        super().__init__(f"{name} circuit is open; retry in {retry_in:.1f}s")
        self.name, self.retry_in = name, retry_in


class CircuitBreaker:
    def __init__(self, name: str, *, failure_threshold: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.name = name
        self.failure_threshold, self.base, self.max = failure_threshold, backoff_s, max_backoff_s
        self._clock, self._rng = clock, rng or random.Random()
        self.state = CLOSED
        self.failures = 0          # consecutive
        self.opened = 0            # times opened since last closed: drives the backoff
        self._retry_at = 0.0
        self._probing = False

    def before(self) -> None:
        """Ask to make a call: raises BreakerOpen when it must not be attempted."""
        if self.state == CLOSED:
            return
        now = self._clock()
        if self.state == OPEN and now >= self._retry_at:
            self.state = HALF_OPEN
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return
        raise BreakerOpen(self.name, max(0.0, self._retry_at - now))

    def success(self) -> None:
        self.state, self.failures, self.opened, self._probing = CLOSED, 0, 0, False

    def failure(self) -> None:
        self.failures += 1
        if self.state == OPEN:
            return  # a call from before it opened: it must not push the probe further away
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """The call ended without telling whether the dependency works (e.g. cancelled)."""
        self._probing = False

    def _open(self) -> None:
        # the exponent is capped: a breaker that opens for days must not overflow a float
        backoff = min(self.max, self.base * (2 ** min(self.opened, 32)))
        self.opened += 1
        self.state, self._probing = OPEN, False
        # Full jitter on half the backoff: replicas that saw the same outage probe apart.
        self._retry_at = self._clock() + backoff * (0.5 + 0.5 * self._rng.random())

    def retry_after_s(self) -> int:
        """Seconds to tell a client in Retry-After."""
        return max(1, round(self._retry_at - self._clock())) if self.state != CLOSED else 1

    def snapshot(self) -> dict:
        return {"state": self.state, "consecutive_failures": self.failures}
