"""Time-ordered 64-bit post ids: milliseconds since 2020-01-01 in the high bits.

Layout: 41 bits of milliseconds | 10 bits of worker | 12 bits of sequence. Ordering by id is
ordering by creation time (to the millisecond), which `sort=newest|oldest` relies on.
"""
from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime, timezone

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
_WORKER_BITS, _SEQ_BITS = 10, 12
MAX_ID = (1 << 63) - 1


def id_at(ms: int, low: int = 0) -> int:
    """The id for a time in ms since the Unix epoch; `low` fills the worker and sequence bits."""
    return ((ms - EPOCH_MS) << (_WORKER_BITS + _SEQ_BITS)) | (low & ((1 << 22) - 1))


def id_for_datetime(when: datetime, low: int = 0) -> int:
    return id_at(int(when.timestamp() * 1000), low)


def datetime_of(post_id: int) -> datetime:
    ms = (post_id >> (_WORKER_BITS + _SEQ_BITS)) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class IdGenerator:
    """Monotonic ids for this process; the random worker number keeps processes apart."""

    def __init__(self, worker: int | None = None):
        self._worker = secrets.randbelow(1 << _WORKER_BITS) if worker is None else worker
        self._last_ms = 0
        self._seq = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._seq += 1
                if self._seq >= 1 << _SEQ_BITS:  # sequence exhausted: borrow the next ms
                    ms += 1
                    self._seq = 0
            else:
                self._seq = 0
            self._last_ms = ms
            return id_at(ms, (self._worker << _SEQ_BITS) | self._seq)
