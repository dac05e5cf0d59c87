"""Event-loop lag: how late a timer set for now + 100 ms actually fires.

Every request waits for the loop before any of its code runs, a refused one too, so this is
the floor under every latency the process reports. A lag of a millisecond or two under load
is normal (a render's longest synchronous step); more means the loop is starved: CPU taken
by something else on the host (a co-located PostgreSQL, other tenants), or a long
synchronous step. See ops/runbook-overload.md.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Callable

INTERVAL_S = 0.1


async def sample(observe: Callable[[float], None], interval_s: float = INTERVAL_S) -> None:
    """Observe the lag of one timer every `interval_s`, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, loop.time() - due))


@contextlib.asynccontextmanager
async def running(observe: Callable[[float], None],
                  interval_s: float = INTERVAL_S) -> AsyncIterator[None]:
    task = asyncio.create_task(sample(observe, interval_s), name="loop-lag")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
