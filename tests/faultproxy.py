"""A TCP proxy that breaks the network on demand, for outage tests and drills.

    proxy = await FaultProxy(unix_socket_path="/tmp/pg/.s.PGSQL.5432").start()
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
    proxy.latency = 0.2     # every chunk waits 200 ms before it is forwarded (each direction)
    proxy.blackhole()       # forward nothing; sockets stay open, so reads hang (a partition)
    proxy.refuse()          # stop listening: new connections are refused (ECONNREFUSED)
    proxy.reset_all()       # close every open connection abruptly (RST where TCP allows)
    proxy.heal()            # forward again, accept again, no latency
    await proxy.close()

Listens on 127.0.0.1 (a free port unless `listen_port` is given) and forwards each accepted
connection to `target_host:target_port` or to the Unix socket `unix_socket_path`, in both
directions. Standard library only, asyncio only: the proxy runs in the event loop that
started it, so a test's client, the app under test and the proxy can share one loop.

Black hole semantics: data already read is held, not dropped, and nothing more is read, so
the kernel's buffers fill and the peers see exactly what a network partition looks like (TCP
retransmits silently; reads hang until the peer's own timeout). `heal()` lets held data
through, as a healed partition does. Connections accepted during a black hole are not
connected upstream until it heals.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from typing import Optional

FORWARD = "forward"
BLACKHOLE = "blackhole"
REFUSE = "refuse"
MODES = (FORWARD, BLACKHOLE, REFUSE)
_CHUNK = 65536


def _linger_zero(writer: asyncio.StreamWriter | None) -> None:
    """Make the next close of this socket send a TCP RST instead of a FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Connection:
    def __init__(self, proxy: "FaultProxy", client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter):
        self.proxy = proxy
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task] = []
        self.closed = False

    async def run(self) -> None:
        try:
            await self.proxy._gate()
            if self.closed:
                return
            try:
                up_reader, up_writer = await self.proxy._open_upstream()
            except OSError:
                self.abort()  # the target is down: the client sees its connection reset
                return
            self.upstream_writer = up_writer
            if self.closed:  # reset while connecting
                self.abort()
                return
            self.tasks = [asyncio.ensure_future(self._pump(self.client_reader, up_writer)),
                          asyncio.ensure_future(self._pump(up_reader, self.client_writer))]
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.closed:
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self.proxy._gate()
                if self.closed:
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return

    def close(self) -> None:
        """Close both sides gracefully (FIN)."""
        if self.closed:
            self._forget()
            return
        self.closed = True
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                try:
                    writer.close()
                except (OSError, RuntimeError):
                    pass
        self._forget()

    def abort(self) -> None:
        """Close both sides abruptly: RST on TCP sockets, no flushing of buffered data."""
        self.closed = True
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                _linger_zero(writer)
                writer.transport.abort()
        self._forget()

    def _forget(self) -> None:
        self.proxy._connections.discard(self)


class FaultProxy:
    """See the module docstring. Attributes: `latency` (seconds per forwarded chunk), `mode`
    (forward, blackhole or refuse), `port`, `accepted` (connections accepted so far),
    `open_connections`."""

    def __init__(self, target_host: Optional[str] = None, target_port: Optional[int] = None, *,
                 unix_socket_path: Optional[str] = None, listen_host: str = "127.0.0.1",
                 listen_port: int = 0):
        if (unix_socket_path is None) == (target_host is None or target_port is None):
            raise ValueError("give either target_host and target_port, or unix_socket_path")
        self.target_host = target_host
        self.target_port = target_port
        self.unix_socket_path = unix_socket_path
        self.listen_host = listen_host
        self.port = listen_port
        self.latency = 0.0
        self.accepted = 0
        self._mode = FORWARD
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> "FaultProxy":
        await self._listen()
        return self

    async def close(self) -> None:
        """Stop listening and close every connection abruptly."""
        self._closed = True
        self._open.set()  # release anything held by a black hole, so its task can end
        self._stop_listening()
        self.reset_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "FaultProxy":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def dsn(self, user: str = "postgres", database: str = "postgres") -> str:
        """A PostgreSQL DSN that connects through this proxy."""
        return f"postgresql://{user}@{self.listen_host}:{self.port}/{database}"

    # -- faults ----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        {FORWARD: self.heal_mode, BLACKHOLE: self.blackhole, REFUSE: self.refuse}[value]()

    def blackhole(self) -> None:
        """Forward nothing, in either direction, on open and new connections; keep sockets
        open. Clients hang until their own timeouts."""
        self._set_listening(True)
        self._mode = BLACKHOLE
        self._open.clear()

    def refuse(self) -> None:
        """Refuse new connections (the listening socket is closed: ECONNREFUSED). Open
        connections keep forwarding; combine with reset_all() for a server that went down."""
        self._mode = REFUSE
        self._open.set()
        self._set_listening(False)

    def reset_all(self) -> int:
        """Close every open connection abruptly (RST); returns how many there were."""
        connections = list(self._connections)
        for conn in connections:
            conn.abort()
        return len(connections)

    def heal_mode(self) -> None:
        """Back to forwarding (and listening), keeping the latency as it is."""
        self._mode = FORWARD
        self._open.set()
        self._set_listening(True)

    def heal(self) -> None:
        """Forward again, accept again, no added latency. Held data flows on."""
        self.latency = 0.0
        self.heal_mode()

    # -- internals -------------------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()  # open connections are not touched
            self._server = None

    def _set_listening(self, listening: bool) -> None:
        if self._closed:
            return
        if not listening:
            self._stop_listening()
        elif self._server is None:
            # Called from synchronous code inside the running loop; listening again on the
            # same port is quick, and connections that arrive before it are refused, which
            # is what a server coming back looks like.
            task = asyncio.ensure_future(self._listen())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_listening(self, timeout: float = 5.0) -> None:
        """Wait until the proxy accepts connections again (after heal() from refuse)."""
        async with asyncio.timeout(timeout):
            while self._server is None or not self._server.is_serving():
                await asyncio.sleep(0.005)

    async def _gate(self) -> None:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        while not self._open.is_set():
            await self._open.wait()

    async def _open_upstream(self):
        if self.unix_socket_path is not None:
            return await asyncio.open_unix_connection(self.unix_socket_path, limit=_CHUNK)
        return await asyncio.open_connection(self.target_host, self.target_port, limit=_CHUNK)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self._closed or self._mode == REFUSE:  # raced with refuse(): drop it at once
            _linger_zero(writer)
            writer.transport.abort()
            return
        self.accepted += 1
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await conn.run()
        except asyncio.CancelledError:
            conn.abort()
        finally:
            if task is not None:
                self._tasks.discard(task)


def unix_socket_of(dsn: str) -> str:
    """The Unix socket path a `postgresql://...?host=/dir[&port=N]` DSN connects to."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or ""])[0]
    if not host.startswith("/"):
        raise ValueError(f"not a Unix-socket DSN: {dsn!r}")
    port = query.get("port", [str(parts.port or 5432)])[0]
    return f"{host.rstrip('/')}/.s.PGSQL.{port}"
