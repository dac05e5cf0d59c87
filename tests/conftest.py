"""One embedded PostgreSQL per test session; every test builds its own conversations in it."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.app import create_app
from service.core.settings import load_settings
from storage import migrations
from storage.db import Database
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres

from .builders import World


def pytest_configure(config):
    # --basetemp (pyproject.toml: .arbor/pytest-tmp) is made without its parents: a fresh
    # checkout has no .arbor/ yet.
    if config.option.basetemp:
        Path(config.option.basetemp).parent.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory):
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", FAST_UNSAFE_OPTIONS)
    dsn = server.start()

    async def migrate():
        import asyncpg
        con = await asyncpg.connect(dsn)
        try:
            await migrations.apply(con)
        finally:
            await con.close()

    asyncio.run(migrate())
    yield dsn
    server.stop("immediate")


@pytest.fixture(scope="session")
def settings(pg_dsn):
    return load_settings(env={}, overrides={"database_url": pg_dsn, "cursor_secret": "test-secret",
                                            "db_pool_min": 1, "db_pool_max": 8,
                                            # Tests write behind the service's back (storage
                                            # calls): its fresh-render cache is off here;
                                            # caching tests make their own app with it on.
                                            "render_cache_ttl_s": 0,
                                            # ...and for the same reason no change feed:
                                            # a write behind the service's back would
                                            # reach its caches a moment later, racing the
                                            # tests' next read. The coherence tests
                                            # (test_cache_coherence.py, test_workers.py)
                                            # turn it on.
                                            "cache_notifications_enabled": False,
                                            # Tests fire bursts (200 concurrent writes):
                                            # load shedding is off here; test_admission.py
                                            # makes its own apps with it on.
                                            "admission_enabled": False,
                                            "admin_token": "test-admin-token"})


@pytest.fixture(scope="session")
async def db(pg_dsn):
    database = await Database.connect(pg_dsn, min_size=1, max_size=8)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def world(db):
    return World(db)


@pytest.fixture
async def client(aiohttp_client, settings):
    app = create_app(settings)
    return await aiohttp_client(app)


@pytest.fixture(scope="session")
def live_server(settings):
    """The real app on a real port, in its own thread and event loop, for clients that block
    (schemathesis) or that must not share the test's loop."""
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def start():
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = runner.addresses[0][1]
        state["runner"] = runner

    def run():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="live-server", daemon=True)
    thread.start()
    assert ready.wait(60) and "port" in state, "live server did not start"
    yield f"http://127.0.0.1:{state['port']}"
    asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


# -- fault injection (tests/faultproxy.py) ------------------------------------------------
# Short database timeouts for apps behind the proxy: a black-holed database must cost a
# request well under a second or two, and the tests bound every request with a client timeout.
PROXIED_APP_SETTINGS = {"db_connect_timeout_s": 0.5, "db_acquire_timeout_s": 1.0,
                        "db_statement_timeout_ms": 500, "db_command_timeout_s": 1.0,
                        "db_pool_min": 1, "db_pool_max": 4}


@pytest.fixture
async def fault_proxy(pg_dsn):
    """A FaultProxy in front of the session's PostgreSQL (its Unix socket); healed and closed
    at teardown."""
    from .faultproxy import FaultProxy, unix_socket_of

    proxy = await FaultProxy(unix_socket_path=unix_socket_of(pg_dsn)).start()
    yield proxy
    proxy.heal()
    await proxy.close()


@pytest.fixture
def proxied_dsn(fault_proxy):
    """A TCP DSN to the session's PostgreSQL through `fault_proxy`."""
    return fault_proxy.dsn()


@pytest.fixture
async def proxied_app_client(aiohttp_client, settings, fault_proxy, proxied_dsn):
    """A test client of the app whose database is reached through `fault_proxy`, with short
    database timeouts (PROXIED_APP_SETTINGS)."""
    app = create_app(settings.replace(database_url=proxied_dsn, **PROXIED_APP_SETTINGS))
    client = await aiohttp_client(app)
    yield client
    # Heal before the app closes its pool: a graceful close through a black hole would wait.
    fault_proxy.heal()
    await fault_proxy.wait_listening()
