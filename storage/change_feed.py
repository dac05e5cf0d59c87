"""The change feed: a dedicated connection that LISTENs on `arbor.changes`, the channel every
write notifies from its own transaction (migrations/0010_change_notifications.sql).

`ChangeFeed.run()` keeps one connection listening, for ever: it connects, LISTENs, calls
`on_reset()` (notifications sent while it was not listening are lost, so the caller must
treat everything it cached as possibly stale), then hands each payload to `on_change()`. It
notices a lost connection at once when the socket closes, and within `keepalive_s` +
`connect_timeout` when nothing answers at all (a black hole: a `SELECT 1` every
`keepalive_s`). Then it reconnects with exponential backoff (`backoff_s` doubling up to
`max_backoff_s`). `up` says whether it listens now; while it does not, the caches' TTLs are
the only bound on staleness.

Fences (`fence()`, after a write): the writer notices `f:<origin>:<n>` on the channel; every
other feed, having applied every notice before it (they arrive in commit order, and are
applied in order), answers `k:<n>:<its origin>` on the writer's own channel
`arbor.ack.<origin>`; the fence returns once every live peer has answered. So when a write's
answer leaves, every listening process has dropped what the write changed. Writers share
fences, as a database shares a commit flush: a fence asked for while the previous notice is
being sent joins the next one, which is sent after every joiner's commit (each asks after
its own), so under concurrent writes one notice and one answer per peer cover many writes
(PostgreSQL serializes the commits of transactions that notify: fewer notices, more writes).
A fence also carries the notices no trigger sends (`u:<viewers>` of likes and reposts:
migrations/0011), in the transaction of its own notice and before it, so every feed has
applied them when it answers. Peers are known
from their hellos (`h:<origin>`, sent on connecting and every `keepalive_s`, which is also the
keepalive; answered once by a hello back) and forgotten after 3 x keepalive_s of silence or a
goodbye (`g:<origin>`); a peer that died without one costs each fence its timeout until then.

Cost: one connection per process; per `keepalive_s` one notice; per fence one notice to all
and one answer per peer, to the writer only (O(processes) deliveries per fence, and at most
one fence notice in flight plus one forming per process). The callbacks
run on the event loop, once per notification (a write statement sends at most two).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import Callable

import asyncpg

CHANNEL = "arbor.changes"
log = logging.getLogger("arbor.change_feed")


# Ids per notice (migrations/0010's arbor_notify_ids sends `*` past 100: a payload stays far
# below NOTIFY's 8000 bytes).
_IDS_PER_NOTICE = 100


class _Fence:
    """One fence notice and the writers waiting on it (`joiners`): those that asked before
    it was sent. `waiting`: the feeds yet to answer (set when it is sent). `ids`: notices the
    writers asked to go out with it, by kind (`u`: viewers whose own reactions changed)."""

    __slots__ = ("n", "done", "waiting", "joiners", "ids")

    def __init__(self, n: str, done: asyncio.Future):
        self.n, self.done = n, done
        self.waiting: set[str] = set()
        self.joiners = 0
        self.ids: dict[str, set[int]] = {}


def notices(ids: dict[str, set[int]]) -> list[str]:
    """`kind:<id>,<id>...` payloads (migrations/0010), at most _IDS_PER_NOTICE ids each."""
    out = []
    for kind, found in ids.items():
        ordered = sorted(found)
        for i in range(0, len(ordered), _IDS_PER_NOTICE):
            out.append(f"{kind}:" + ",".join(map(str, ordered[i:i + _IDS_PER_NOTICE])))
    return out


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
        self.fences_incomplete = 0  # fences that timed out before every peer answered
        self.last_error: str | None = None
        self.down_since: float | None = time.monotonic()
        self.origin = secrets.token_hex(8)  # this feed, among the processes listening
        self.ack_channel = f"{CHANNEL}.ack.{self.origin}"
        self.peers: dict[str, float] = {}   # other feeds' origins -> last heard (monotonic)
        self.listening = asyncio.Event()    # set from the first LISTEN on (wait_up)
        self._con: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the listening connection
        self._fences: dict[str, _Fence] = {}      # sent, not yet answered by every feed
        self._forming: _Fence | None = None       # asked for, not sent yet: joinable
        self._fence_ids = itertools.count(1)
        self.fence_notices = 0     # fence notices sent (fewer than fences under load)
        self._sending: set[asyncio.Task] = set()

    def snapshot(self) -> dict:
        return {"up": self.up, "received": self.received, "connects": self.connects,
                "failures": self.failures, "peers": len(self.live_peers()),
                "fences_incomplete": self.fences_incomplete,
                "fence_notices": self.fence_notices, "last_error": self.last_error,
                "down_for_s": (round(time.monotonic() - self.down_since, 3)
                               if self.down_since is not None else None)}

    def live_peers(self) -> set[str]:
        horizon = time.monotonic() - 3 * self.keepalive_s
        return {o for o, seen in self.peers.items() if seen >= horizon}

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

    async def close(self) -> None:
        """Say goodbye (peers stop waiting for this feed's answers), best effort."""
        if self.up and self._con is not None:
            try:
                await asyncio.wait_for(self._notify(CHANNEL, f"g:{self.origin}"), 1.0)
            except Exception:  # noqa: BLE001 - they forget it after 3 x keepalive_s
                pass

    def _went_down(self) -> None:
        if self.up or self.down_since is None:
            self.down_since = time.monotonic()
        self.failures += 1
        self.up = False
        forming, self._forming = self._forming, None   # the next fence starts afresh
        for f in [*self._fences.values(), *([forming] if forming else [])]:
            if not f.done.done():
                f.done.set_result(False)

    async def _notify(self, channel: str, payload: str) -> None:
        con = self._con
        if con is None:
            raise ConnectionError("not listening")
        async with self._lock:
            await asyncio.wait_for(con.execute("SELECT pg_notify($1, $2)", channel, payload),
                                   self.connect_timeout)

    def _send_soon(self, channel: str, payload: str) -> None:
        task = asyncio.ensure_future(self._notify(channel, payload))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("change feed: a notice was not sent: %s", task.exception())

    async def _listen_once(self) -> None:
        lost = asyncio.Event()
        con = await asyncpg.connect(self.dsn, timeout=self.connect_timeout,
                                    server_settings={"application_name": "arbor-change-feed"})
        self._con = con
        try:
            con.add_termination_listener(lambda _c: lost.set())
            await asyncio.wait_for(con.add_listener(CHANNEL, self._notified),
                                   self.connect_timeout)
            await asyncio.wait_for(con.add_listener(self.ack_channel, self._acked),
                                   self.connect_timeout)
            self.connects += 1
            self.up, self.down_since, self.last_error = True, None, None
            self.listening.set()
            log.info("change feed: listening on %s", CHANNEL)
            self.on_reset()  # whatever was sent while nobody listened is lost
            await self._notify(CHANNEL, f"h:{self.origin}")
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.keepalive_s)
                except asyncio.TimeoutError:
                    await self._notify(CHANNEL, f"h:{self.origin}")  # the keepalive too
            self.last_error = "connection closed"
        finally:
            self._con = None
            con.terminate()

    async def fence(self, timeout: float, ids: dict[str, list[int]] | None = None) -> bool:
        """Wait until every listening process (this one and its live peers) has applied every
        notice committed before now: this process's last write's. False when not listening,
        or past `timeout` (counted in fences_incomplete). Joins the fence being formed, if
        any (not yet sent, so sent after this call: it covers what committed before).
        `ids`: notices by kind that no trigger sends (`{"u": [viewer]}` for a reaction: its
        transaction notifies nothing, migrations/0011), sent with the fence's, before it."""
        if not self.up or self._con is None:
            return False
        f = self._forming
        if f is None:
            f = self._forming = _Fence(str(next(self._fence_ids)),
                                       asyncio.get_running_loop().create_future())
            task = asyncio.ensure_future(self._send_fence(f))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        for kind, found in (ids or {}).items():
            f.ids.setdefault(kind, set()).update(found)
        f.joiners += 1
        try:
            async with asyncio.timeout(timeout):
                # shielded: one joiner giving up (its timeout, its client gone) leaves the
                # others waiting
                done = bool(await asyncio.shield(f.done))
        except asyncio.TimeoutError:
            done = False
        finally:
            f.joiners -= 1
            if f.joiners == 0:   # nobody waits for it any more
                self._fences.pop(f.n, None)
                if self._forming is f:
                    self._forming = None
                if not f.done.done():
                    f.done.set_result(False)
        if not done:
            self.fences_incomplete += 1
        return done

    async def _send_fence(self, f: _Fence) -> None:
        try:
            con = self._con
            if con is None:
                raise ConnectionError("not listening")
            async with self._lock:
                # from here on a writer asking for a fence needs the next notice: this one
                # may go out before its commit
                if self._forming is f:
                    self._forming = None
                # the writers' own notices go out even when nobody waits for the fence any
                # more (they gave up): they are what tells the other processes
                payloads = notices(f.ids)
                if not f.done.done():
                    f.waiting = self.live_peers() | {self.origin}
                    self._fences[f.n] = f
                    self.fence_notices += 1
                    payloads.append(f"f:{self.origin}:{f.n}")
                if not payloads:
                    return
                if len(payloads) == 1:
                    await asyncio.wait_for(con.execute("SELECT pg_notify($1, $2)", CHANNEL,
                                                       payloads[0]), self.connect_timeout)
                else:
                    # one transaction (executemany is atomic), in this order: every feed
                    # applies the joiners' notices before it answers the fence
                    await asyncio.wait_for(con.executemany(
                        "SELECT pg_notify($1, $2)", [(CHANNEL, p) for p in payloads]),
                        self.connect_timeout)
        except (asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                ConnectionError) as e:
            log.debug("change feed: a fence notice was not sent: %s", e)
            if self._forming is f:
                self._forming = None
            if not f.done.done():
                f.done.set_result(False)

    def notify_soon(self, ids: dict[str, list[int]]) -> None:
        """The notices `ids` stands for, without waiting for anyone (no fence); nothing when
        not listening (the caches' TTLs are then the bound, as for notices missed)."""
        if self.up and self._con is not None:
            for payload in notices({k: set(v) for k, v in ids.items()}):
                self._send_soon(CHANNEL, payload)

    def _answered(self, n: str, who: str) -> None:
        f = self._fences.get(n)
        if f is None:
            return
        f.waiting.discard(who)
        if not f.waiting and not f.done.done():
            f.done.set_result(True)

    def _acked(self, _con, _pid: int, _channel: str, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        n, _, who = rest.partition(":")
        if kind == "k":
            self.peers[who] = time.monotonic()
            self._answered(n, who)

    def _notified(self, _con, _pid: int, _channel: str, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind == "f":  # a fence: ours came back, or answer another's
            origin, _, n = rest.partition(":")
            if origin == self.origin:
                self._answered(n, origin)
            else:
                self.peers[origin] = time.monotonic()
                self._send_soon(f"{CHANNEL}.ack.{origin}", f"k:{n}:{self.origin}")
            return
        if kind == "h":
            if rest != self.origin:
                new = rest not in self.peers
                self.peers[rest] = time.monotonic()
                if new:  # so that it knows of this one before the next keepalive
                    self._send_soon(CHANNEL, f"h:{self.origin}")
            return
        if kind == "g":
            self.peers.pop(rest, None)
            for n in list(self._fences):
                self._answered(n, rest)
            return
        self.received += 1
        try:
            self.on_change(payload)
        except Exception:  # noqa: BLE001 - one bad payload must not stop the feed
            log.exception("change feed: could not apply %r", payload[:200])
