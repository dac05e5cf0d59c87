"""One embedded PostgreSQL per test session; every test builds its own conversations in it."""
from __future__ import annotations

import asyncio

import pytest

from service.app import create_app
from service.settings import load_settings
from storage import migrations
from storage.db import Database
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres

from .builders import World


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
