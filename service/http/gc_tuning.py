"""Garbage-collector tuning for the serving process (`arbor serve`).

A full (generation 2) collection walks every tracked object in the heap, and after start-up
most of them are modules, classes, functions and the pool's state, which live as long as the
process does. Under load those collections paused the event loop for 20-27 ms each (measured
under bench/overload.py with gc.callbacks), every few seconds: 20 ms during which no request,
admitted or shed, is read or answered. That is the p99.

So once start-up is done (database pool open, demo seeded), everything alive is moved to the
permanent generation (`gc.freeze()`), which collections skip, and the young-generation
threshold is raised: a render allocates thousands of short-lived containers, and the default
threshold (700) runs a collection for every few hundred of them.
"""
from __future__ import annotations

import gc

from aiohttp import web

YOUNG_THRESHOLD = 20_000   # allocations between generation-0 collections (default 700)


def install(app: web.Application) -> None:
    """Freeze the start-up heap once the app has started (after its cleanup contexts)."""
    app.on_startup.append(_freeze_startup_heap)


async def _freeze_startup_heap(app: web.Application) -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
