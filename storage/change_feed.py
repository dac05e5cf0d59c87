"""The change feed: a dedicated connection that LISTENs on `arbor_changes`, the channel every
write notifies from its own transaction (migrations/0009_change_notifications.sql).

`ChangeFeed.run()` keeps one connection listening, for ever: it connects, LISTENs, calls
`on_reset()` (notifications sent while it was not listening are lost, so the caller must
treat everything it cached as possibly stale), then hands each payload to `on_change()`. It
notices a lost connection at once when the socket closes, and within `keepalive_s` +
`connect_timeout` when nothing answers at all (a black hole: a `SELECT 1` every
`keepalive_s`). Then it reconnects with exponential backoff (`backoff_s` doubling up to
`max_backoff_s`). `up` says whether it listens now; while it does not, the caches' TTLs are
the only bound on staleness.

Cost: one connection per process, one round trip per `keepalive_s`; the callbacks run on the
event loop, once per notification (a statement sends at most two).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Callable

import asyncpg

CHANNEL = "arbor_changes"
log = logging.getLogger("arbor.change_feed")


class ChangeFeed:
    def __init__(self, dsn: str, on_change: Callable[[str], None],
                 on_reset: Callable[[], None], *, keepalive_s: float = 5.0,
                 connect_timeout: float = 5.0, backoff_s: float = 0.1,
                 max_backoff_s: float = 10.0):
        self.dsn = dsn
        self.on_change, self.on_reset = on_change, on_reset
        self.keepalive_s, self.connect_timeout = keepalive_s, connect_timeout
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.up = False
        self.received = 0
        self.connects = 0          # successful (re)connections
        self.failures = 0          # connections lost or refused
        self.last_error: str | None = None
        self.down_since: float | None = time.monotonic()
        self._con: asyncpg.Connection | None = None
        self.listening = asyncio.Event()  # set from the first LISTEN on (wait_up)
        self._lock = asyncio.Lock()  # one statement at a time on the listening connection
        self._fences: dict[str, asyncio.Future] = {}
        self._fence_ids = itertools.count(1)

    def snapshot(self) -> dict:
        return {"up": self.up, "received": self.received, "connects": self.connects,
                "failures": self.failures, "last_error": self.last_error,
                "down_for_s": (round(time.monotonic() - self.down_since, 3)
                               if self.down_since is not None else None)}

    async def wait_up(self, timeout: float) -> bool:
        """Whether it listens within `timeout` (a process starting waits for it, so that it
        serves nothing cached before it hears of writes)."""
        try:
            await asyncio.wait_for(self.listening.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def run(self) -> None:
        backoff = self.backoff_s
        while True:
            try:
                await self._listen_once()
                backoff = self.backoff_s  # it listened, then lost the connection
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect later
                self.last_error = f"{type(e).__name__}: {e}"[:300]
            self._went_down()
            log.warning("change feed: not listening (%s); retrying in %.2fs; cached renders "
                        "and viewers are bounded by their TTLs meanwhile", self.last_error,
                        backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _went_down(self) -> None:
        if self.up or self.down_since is None:
            self.down_since = time.monotonic()
        self.failures += 1
        self.up = False

    async def _listen_once(self) -> None:
        lost = asyncio.Event()
        con = await asyncpg.connect(self.dsn, timeout=self.connect_timeout,
                                    server_settings={"application_name": "arbor-change-feed"})
        self._con = con
        try:
            con.add_termination_listener(lambda _c: lost.set())
            await asyncio.wait_for(con.add_listener(CHANNEL, self._notified),
                                   self.connect_timeout)
            self.connects += 1
            self.up, self.down_since, self.last_error = True, None, None
            self.listening.set()
            log.info("change feed: listening on %s", CHANNEL)
            self.on_reset()  # whatever was sent while nobody listened is lost
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.keepalive_s)
                except asyncio.TimeoutError:
                    async with self._lock:
                        await asyncio.wait_for(con.fetchval("SELECT 1"), self.connect_timeout)
            self.last_error = "connection closed"
        finally:
            self._con = None
            con.terminate()

    async def fence(self, timeout: float) -> bool:
        """Send a notice of our own and wait until it comes back: every notice committed
        before it (this process's last write's) has then been delivered through PostgreSQL's
        one ordered queue to this listener, and to the others' at the same moment. False
        when not listening or past `timeout`. One round trip on the listening connection."""
        con = self._con
        if not self.up or con is None:
            return False
        token = f"f:{os.getpid()}:{next(self._fence_ids)}"
        back = asyncio.get_running_loop().create_future()
        self._fences[token] = back
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    await con.execute(f"SELECT pg_notify('{CHANNEL}', $1)", token)
                await back
            return True
        except (asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False
        finally:
            self._fences.pop(token, None)

    def _notified(self, _con, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("f:"):  # a fence: ours is awaited, others' mean nothing here
            back = self._fences.get(payload)
            if back is not None and not back.done():
                back.set_result(None)
            return
        self.received += 1
        try:
            self.on_change(payload)
        except Exception:  # noqa: BLE001 - one bad payload must not stop the feed
            log.exception("change feed: could not apply %r", payload[:200])
