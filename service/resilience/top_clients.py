"""The heaviest clients of the last minutes, by requests, 404s and 429s, in bounded memory.

Per measure, one Misra-Gries summary per minute, the last BUCKETS minutes kept: at most
`size` counters each, so at most 3 x BUCKETS x size counters in all (30,000 at the default
size of 1,000: a few MB), however many clients there are. A client's count in one summary
is low by at most n / (size + 1), n being all that minute's events of that measure; any
client with more than that share is in it. Each event is O(1) amortized (a full table
sheds every counter by one at O(size), at most once per `size` events). Pure: the clock is
passed in.
"""
from __future__ import annotations

from collections import deque

BUCKETS = 10      # minutes kept
BUCKET_S = 60.0
MEASURES = ("requests", "not_found", "limited")


class MisraGries:
    def __init__(self, size: int):
        self.size = size
        self.counts: dict[str, int] = {}
        self.events = 0

    def add(self, key: str) -> None:
        self.events += 1
        counts = self.counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < self.size:
            counts[key] = 1
        else:  # no room: every counter (and this event) pays one
            self.counts = {k: c - 1 for k, c in counts.items() if c > 1}

    def error_bound(self) -> int:
        return self.events // (self.size + 1)


class TopClients:
    def __init__(self, size: int = 1000):
        self.size = size
        self._buckets: deque[tuple[int, dict[str, MisraGries]]] = deque(maxlen=BUCKETS)

    def _current(self, now: float) -> dict[str, MisraGries]:
        minute = int(now // BUCKET_S)
        if not self._buckets or self._buckets[-1][0] != minute:
            self._buckets.append((minute, {m: MisraGries(self.size) for m in MEASURES}))
        return self._buckets[-1][1]

    def record(self, key: str, now: float, *, not_found: bool = False,
               limited: bool = False) -> None:
        bucket = self._current(now)
        bucket["requests"].add(key)
        if not_found:
            bucket["not_found"].add(key)
        if limited:
            bucket["limited"].add(key)

    def top(self, now: float, minutes: int = 5, limit: int = 20) -> dict:
        """The top `limit` clients per measure over the last `minutes` whole or partial
        minutes (1..BUCKETS), with each count's possible undercount."""
        first = int(now // BUCKET_S) - minutes + 1
        totals = {m: {} for m in MEASURES}
        bound = {m: 0 for m in MEASURES}
        events = {m: 0 for m in MEASURES}
        for minute, bucket in self._buckets:
            if minute < first:
                continue
            for m in MEASURES:
                summary = bucket[m]
                events[m] += summary.events
                bound[m] += summary.error_bound()
                acc = totals[m]
                for key, count in summary.counts.items():
                    acc[key] = acc.get(key, 0) + count
        out = {"minutes": minutes, "size": self.size, "events": events,
               "max_undercount": bound}
        for m in MEASURES:
            ranked = sorted(totals[m].items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
            out[f"by_{m}"] = [{"client": key, m: count,
                               **{o: totals[o].get(key, 0) for o in MEASURES if o != m}}
                              for key, count in ranked]
        return out
