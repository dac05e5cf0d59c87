"""The embedded PostgreSQL's processes run under SCHED_BATCH (Linux), so that a backend woken
by a query does not preempt the service's event loop on its CPU (storage/embedded.py)."""
from __future__ import annotations

import asyncio
import os

import pytest

from storage.embedded import batch_schedule, child_pids as _children_of

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"),
                                reason="SCHED_BATCH is a Linux scheduling policy")


async def test_backends_forked_after_start_inherit_batch_scheduling(db):
    # This session's backend was forked by the postmaster after the server had started.
    pid = await db.fetchval("SELECT pg_backend_pid()")
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH


async def test_batch_schedule_changes_a_process_and_its_children():
    # a shell (the "postmaster") with one child of its own
    parent = await asyncio.create_subprocess_exec("sh", "-c", "sleep 30 & wait")
    try:
        for _ in range(100):  # until the shell has forked its child
            if _children_of(parent.pid):
                break
            await asyncio.sleep(0.02)
        (child,) = _children_of(parent.pid)
        assert os.sched_getscheduler(child) == os.SCHED_OTHER
        assert batch_schedule(parent.pid) == 2
        assert os.sched_getscheduler(parent.pid) == os.SCHED_BATCH
        assert os.sched_getscheduler(child) == os.SCHED_BATCH
    finally:
        for pid in _children_of(parent.pid):
            os.kill(pid, 9)
        parent.kill()
        await parent.wait()

