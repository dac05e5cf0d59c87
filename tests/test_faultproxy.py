"""The fault-injection proxy itself: forwards, delays, black-holes, refuses, resets, heals."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from .faultproxy import FaultProxy, unix_socket_of

# What a client sees when the connection under it was reset or refused.
CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError,
                     OSError)


async def _connect(dsn: str, timeout: float = 2.0) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=timeout)


async def test_forwards_a_query(fault_proxy, proxied_dsn):
    con = await _connect(proxied_dsn)
    try:
        assert await con.fetchval("SELECT $1::int + 1", 41) == 42
        # a larger answer than one chunk, both ways
        text = "x" * 300_000
        assert await con.fetchval("SELECT $1::text", text) == text
    finally:
        await con.close()
    assert fault_proxy.accepted == 1


async def test_unix_socket_of_reads_the_embedded_dsn():
    assert unix_socket_of("postgresql://postgres:@/postgres?host=/tmp/pg") == "/tmp/pg/.s.PGSQL.5432"
    assert unix_socket_of("postgresql://u@/db?host=/run/pg/&port=5433") == "/run/pg/.s.PGSQL.5433"
    with pytest.raises(ValueError):
        unix_socket_of("postgresql://u@localhost:5432/db")


async def test_needs_exactly_one_target():
    with pytest.raises(ValueError):
        FaultProxy()
    with pytest.raises(ValueError):
        FaultProxy("127.0.0.1", 5432, unix_socket_path="/tmp/x")


async def test_forwards_to_a_tcp_target(pg_dsn):
    # A proxy in front of a proxy: the outer one targets host and port.
    async with FaultProxy(unix_socket_path=unix_socket_of(pg_dsn)) as inner:
        async with FaultProxy("127.0.0.1", inner.port) as outer:
            con = await _connect(outer.dsn())
            try:
                assert await con.fetchval("SELECT 7") == 7
            finally:
                await con.close()


async def test_latency_delays_each_round_trip(fault_proxy, proxied_dsn):
    con = await _connect(proxied_dsn)
    try:
        started = time.monotonic()
        await con.fetchval("SELECT 1")
        fast = time.monotonic() - started
        fault_proxy.latency = 0.2
        started = time.monotonic()
        await con.fetchval("SELECT 1")
        slow = time.monotonic() - started
        fault_proxy.latency = 0
        started = time.monotonic()
        await con.fetchval("SELECT 1")
        healed = time.monotonic() - started
    finally:
        await con.close()
    assert fast < 0.1
    assert slow >= 0.2  # a chunk each way: 0.4 s in practice
    assert slow < 2.0
    assert healed < 0.1


async def test_blackhole_makes_a_query_time_out_and_heal_lets_it_finish(fault_proxy,
                                                                         proxied_dsn):
    con = await _connect(proxied_dsn)
    try:
        fault_proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await con.fetchval("SELECT 1", timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 1.5
        assert fault_proxy.open_connections >= 1  # nothing was closed: a black hole
    finally:
        con.terminate()

    # A query without a timeout waits for as long as the black hole lasts, then completes:
    # held bytes are delivered on heal, as after a healed partition.
    con = None
    fault_proxy.heal()
    con = await _connect(proxied_dsn)
    try:
        fault_proxy.blackhole()
        pending = asyncio.ensure_future(con.fetchval("SELECT 5"))
        await asyncio.sleep(0.3)
        assert not pending.done()
        fault_proxy.heal()
        assert await asyncio.wait_for(pending, 2.0) == 5
    finally:
        await con.close()


async def test_blackhole_makes_new_connections_time_out(fault_proxy, proxied_dsn):
    fault_proxy.blackhole()
    started = time.monotonic()
    with pytest.raises((asyncio.TimeoutError, OSError)):
        await _connect(proxied_dsn, timeout=0.3)
    assert time.monotonic() - started < 1.5
    fault_proxy.heal()
    con = await _connect(proxied_dsn)
    try:
        assert await con.fetchval("SELECT 1") == 1
    finally:
        await con.close()


async def test_reset_makes_the_next_query_fail_with_a_connection_error(fault_proxy, proxied_dsn):
    con = await _connect(proxied_dsn)
    other = await _connect(proxied_dsn)
    try:
        assert fault_proxy.reset_all() == 2
        with pytest.raises(CONNECTION_ERRORS):
            await con.fetchval("SELECT 1", timeout=2)
        await asyncio.sleep(0.05)
        assert other.is_closed()  # the client noticed the reset without sending anything
    finally:
        con.terminate()
        other.terminate()
    # the proxy still forwards new connections (reset is an action, not a mode)
    con = await _connect(proxied_dsn)
    try:
        assert await con.fetchval("SELECT 2") == 2
    finally:
        await con.close()


async def test_refuse_then_heal(fault_proxy, proxied_dsn):
    con = await _connect(proxied_dsn)
    try:
        fault_proxy.refuse()
        assert fault_proxy.mode == "refuse"
        started = time.monotonic()
        with pytest.raises(OSError):  # ConnectionRefusedError
            await _connect(proxied_dsn)
        assert time.monotonic() - started < 0.5  # refused at once, not timed out
        assert await con.fetchval("SELECT 3") == 3  # open connections keep working
        fault_proxy.heal()
        await fault_proxy.wait_listening()
        assert fault_proxy.mode == "forward"
        again = await _connect(proxied_dsn)
        try:
            assert await again.fetchval("SELECT 4") == 4
        finally:
            await again.close()
    finally:
        await con.close()


async def test_mode_property(fault_proxy, proxied_dsn):
    fault_proxy.mode = "blackhole"
    assert fault_proxy.mode == "blackhole"
    fault_proxy.mode = "forward"
    con = await _connect(proxied_dsn)
    try:
        assert await con.fetchval("SELECT 1") == 1
    finally:
        await con.close()
    with pytest.raises(ValueError):
        fault_proxy.mode = "sideways"


async def test_target_down_resets_the_client(tmp_path):
    # Nothing listens on the target: the client's connection is closed at once.
    async with FaultProxy(unix_socket_path=str(tmp_path / ".s.PGSQL.5432")) as proxy:
        started = time.monotonic()
        with pytest.raises(CONNECTION_ERRORS):
            await _connect(proxy.dsn())
        assert time.monotonic() - started < 1.0
