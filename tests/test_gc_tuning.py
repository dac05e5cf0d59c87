"""The serving process freezes its start-up heap once the app has started."""
from __future__ import annotations

import gc

from aiohttp import web

from service.http import gc_tuning


async def test_startup_freezes_the_heap_and_raises_the_young_threshold(aiohttp_client):
    before = gc.get_threshold()
    app = web.Application()
    gc_tuning.install(app)
    try:
        await aiohttp_client(app)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
    finally:
        gc.unfreeze()          # the rest of the test session collects as usual
        gc.set_threshold(*before)
