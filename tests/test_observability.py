"""Issue 17 part 2: process_*/python_* series, the pool, 503s and degraded answers by reason,
request ids and trace context in responses and in every log line, JSON logs, the metrics
media type with its version."""
from __future__ import annotations

import asyncio
import io
import logging
import re

import asyncpg
import orjson
import pytest
from aiohttp import web

from service.app import create_app
from service.core import logs
from service.core.request_ids import CURRENT, RequestContext, context_of, parse_traceparent
from service.http.keys import READS
from service.http.middlewares import AccessLogger
from service.resilience.faults import Faults

from .conftest import PROXIED_APP_SETTINGS
from .test_outages import TIMEOUT, open_breaker, small_tree

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def value(text: str, series: str) -> float:
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert m, f"{series} not in /metrics"
    return float(m.group(1))


async def test_metrics_have_process_and_python_series_and_a_versioned_media_type(client):
    resp = await client.get("/metrics")
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await resp.text()
    assert value(text, "process_resident_memory_bytes") > 1e6
    assert value(text, "process_open_fds") > 3
    assert value(text, "process_start_time_seconds") > 1.7e9
    assert re.search(r'^python_info\{.*major="3"', text, re.M)
    assert re.search(r'^python_gc_collections_total\{generation="0"\}', text, re.M)


# -- request ids and trace context ----------------------------------------------------------
def test_request_id_and_traceparent_parsing():
    assert context_of("abc-123_X.y:z", None, 128).request_id == "abc-123_X.y:z"
    for bad in ("", "a b", "a\"b", "x" * 129, "é", "a\nb", "<script>"):
        generated = context_of(bad, None, 128).request_id
        assert re.fullmatch(r"[0-9a-f]{32}", generated), bad
    assert context_of(None, None, 128).request_id != context_of(None, None, 128).request_id
    assert parse_traceparent(TRACEPARENT) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    for bad in ("00-" + "0" * 32 + "-00f067aa0ba902b7-01",            # zero trace id
                "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # zero parent id
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
                TRACEPARENT + "-extra", "00-4bf9-00f0-01", "garbage", ""):
        assert parse_traceparent(bad) is None, bad
    # a later version may add fields; its first four are still read
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")


async def test_request_ids_are_echoed_validated_or_generated(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    resp = await client.get(f"/v1/conversations/{root}",
                            headers={"X-Request-Id": "client-id-1", "traceparent": TRACEPARENT})
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == "client-id-1"
    assert resp.headers["traceparent"] == TRACEPARENT
    for headers in ({}, {"X-Request-Id": "bad id with spaces"},
                    {"X-Request-Id": "x" * 129, "traceparent": "00-zz-zz-01"}):
        resp = await client.get("/v1/conversations/999999999", headers=headers)  # a 404 too
        assert resp.status == 404
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])
        assert "traceparent" not in resp.headers
    # errors raised before the routes (no such path, wrong method) carry it too
    resp = await client.post("/healthz", headers={"X-Request-Id": "r2"})
    assert resp.status == 405 and resp.headers["X-Request-Id"] == "r2"


async def test_request_id_length_is_a_setting(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.replace(request_id_max_length=8)))
    assert (await client.get("/healthz", headers={"X-Request-Id": "12345678"})
            ).headers["X-Request-Id"] == "12345678"
    assert (await client.get("/healthz", headers={"X-Request-Id": "123456789"})
            ).headers["X-Request-Id"] != "123456789"


@pytest.fixture
def captured_logs():
    """logs.configure with its handler writing to a buffer; the root logger restored after."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    buffers = {}

    def configure(fmt: str) -> io.StringIO:
        logs.configure("INFO", fmt)
        buffers[fmt] = buf = io.StringIO()
        root.handlers[0].setStream(buf)
        return buf
    yield configure
    root.handlers[:] = saved
    root.setLevel(level)


@pytest.fixture
async def logging_app(settings):
    """The app on a real port with the access logger `arbor serve` uses, and one more route
    that logs twice; yields a GET function."""
    import aiohttp
    app = create_app(settings)

    async def noisy(request: web.Request) -> web.Response:
        logging.getLogger("arbor.test").warning("inside the handler")
        await asyncio.sleep(0)  # still the same request's context after a suspension
        logging.getLogger("arbor.test").info("after a wait")
        return web.json_response({})
    app.router.add_get("/test/noisy", noisy)
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        async def get(path, **kw):
            async with session.get(path, **kw) as resp:
                await resp.read()
                return resp
        yield get
    await runner.cleanup()


async def test_every_log_line_of_a_request_has_its_ids_in_text(captured_logs, logging_app):
    buf = captured_logs("text")
    await logging_app("/test/noisy", headers={"X-Request-Id": "req-7", "traceparent": TRACEPARENT})
    await logging_app("/test/noisy")
    await asyncio.sleep(0.05)  # the access log is written after the answer
    lines = [line for line in buf.getvalue().splitlines()
             if "inside the handler" in line or "after a wait" in line or "/test/noisy" in line]
    assert len(lines) == 6, lines  # two handler lines and one access line per request
    first = [line for line in lines if "req-7" in line]
    assert len(first) == 3
    assert all(line.endswith("request_id=req-7 trace_id=4bf92f3577b34da6a3ce929d0e0e4736")
               for line in first), first
    others = [line for line in lines if "req-7" not in line]
    ids = {re.search(r"request_id=([0-9a-f]{32})$", line).group(1) for line in others}
    assert len(ids) == 1  # one generated id, the same in each of the second request's lines
    logging.getLogger("arbor.test").warning("outside any request")
    assert buf.getvalue().splitlines()[-1].endswith("outside any request")


async def test_json_logs_are_one_object_per_line(captured_logs, logging_app):
    buf = captured_logs("json")
    await logging_app("/test/noisy?x=1", headers={"X-Request-Id": "json-1"})
    await asyncio.sleep(0.05)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("arbor.test").exception("with a traceback")
    records = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    mine = [r for r in records if r.get("request_id") == "json-1"]
    assert [r["message"] for r in mine][:2] == ["inside the handler", "after a wait"]
    assert any("/test/noisy?x=1" in r["message"] and r["logger"] == "aiohttp.access"
               for r in mine)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in records)
    assert records[-1]["level"] == "ERROR" and "ValueError: boom" in records[-1]["exception"]
    assert "request_id" not in records[-1]


def test_log_format_setting_is_validated():
    from service.core.settings import SettingsError, load_settings
    assert load_settings(env={"ARBOR_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="log_format"):
        load_settings(env={"ARBOR_LOG_FORMAT": "xml"})


def test_context_variable_is_what_the_filter_reads():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logs.formatter("text"))
    handler.addFilter(logs._RequestContext())
    logger = logging.getLogger("arbor.test.ctx")
    logger.addHandler(handler)
    try:
        token = CURRENT.set(RequestContext("rid-1"))
        logger.warning("one")
        CURRENT.reset(token)
        logger.warning("two")
    finally:
        logger.removeHandler(handler)
    one, two = buf.getvalue().splitlines()
    assert one.endswith("one request_id=rid-1") and two.endswith("two")


# -- 503s, degraded answers and the pool in /metrics ---------------------------------------
async def test_503s_and_stale_answers_are_counted_by_reason(aiohttp_client, settings,
                                                             fault_proxy, proxied_dsn, world):
    app = create_app(settings.replace(database_url=proxied_dsn, render_cache_ttl_s=0.01,
                                      **PROXIED_APP_SETTINGS))
    client = await aiohttp_client(app, timeout=TIMEOUT)
    try:
        root = await small_tree(world)
        assert (await client.get(f"/v1/conversations/{root}")).status == 200
        before = await (await client.get("/metrics")).text()
        assert value(before, 'arbor_degraded_responses_total{part="stale"}') == 0
        assert value(before, 'arbor_unavailable_responses_total{reason="database_unavailable"}') == 0
        await asyncio.sleep(0.02)
        await open_breaker(client, fault_proxy, world)   # 5 uncached reads answered 503
        resp = await client.get(f"/v1/conversations/{root}")
        assert resp.headers["Arbor-Degraded"] == "stale"
        text = await (await client.get("/metrics")).text()
        assert value(text, 'arbor_degraded_responses_total{part="stale"}') == 1
        assert value(text, 'arbor_unavailable_responses_total{reason="database_unavailable"}') == \
            app[READS].database.failure_threshold
    finally:
        fault_proxy.heal()
        await fault_proxy.wait_listening()


async def test_shed_503s_are_counted_as_overloaded(aiohttp_client, settings):
    from service.http.admission_middleware import ADMISSION
    app = create_app(settings.replace(admission_enabled=True, admission_queue_size=0,
                                      concurrency_limit=1))
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await gate.wait()
        return web.json_response({})
    app.router.add_get("/v1/test/slow", slow)  # not an ops path: admission applies
    client = await aiohttp_client(app)
    first = asyncio.ensure_future(client.get("/v1/test/slow"))
    while app[ADMISSION].controller.inflight < 1:
        await asyncio.sleep(0.01)
    shed = await client.get("/v1/test/slow", headers={"X-Request-Id": "shed-1"})
    # the Mastodon API reshapes error bodies ({"error": message}): still counted by its code
    mastodon = await client.get("/api/v1/instance", headers={"X-Request-Id": "shed-2"})
    gate.set()
    assert (await first).status == 200
    assert shed.status == 503 and shed.headers["X-Request-Id"] == "shed-1"
    assert mastodon.status == 503 and mastodon.headers["X-Request-Id"] == "shed-2"
    assert isinstance((await mastodon.json())["error"], str)
    text = await (await client.get("/metrics")).text()
    assert value(text, 'arbor_unavailable_responses_total{reason="overloaded"}') == 2
    assert 'reason="unknown"' not in text


async def test_degraded_parts_are_counted(aiohttp_client, settings, world):
    faults = Faults()
    client = await aiohttp_client(create_app(settings, faults=faults))
    a = await world.account()
    root = await world.post(a, "root")
    await world.post(a, "reply", reply_to=root, rank_key=1)
    faults.ranking = asyncpg.QueryCanceledError("injected")
    body = await (await client.get(f"/v1/conversations/{root}")).json()
    assert body["degraded"] == ["ranking"]
    faults.ranking = None
    text = await (await client.get("/metrics")).text()
    assert value(text, 'arbor_degraded_responses_total{part="ranking"}') == 1
    assert value(text, 'arbor_degraded_responses_total{part="partial"}') == 0


def test_degraded_parts_are_read_from_the_body():
    from service.http.ops_metrics import degraded_parts
    assert degraded_parts(b'{"focal":{},"degraded":["ranking","quotes"],"partial":true}') == \
        ["partial", "ranking", "quotes"]
    assert degraded_parts(b'{"focal":{"text":"\\"partial\\":true"},"degraded":[],'
                          b'"partial":false}') == []


async def test_pool_gauges_and_waits(aiohttp_client, settings, world):
    app = create_app(settings.replace(db_pool_min=1, db_pool_max=1))
    client = await aiohttp_client(app)
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, 5)
    text = await (await client.get("/metrics")).text()
    assert value(text, "arbor_db_pool_max") == 1
    waits_before = value(text, "arbor_db_pool_waits_total")
    results = await asyncio.gather(*(client.get(f"/v1/conversations/{root}?depth={d}")
                                     for d in range(1, 9)))
    assert all(r.status == 200 for r in results)
    text = await (await client.get("/metrics")).text()
    assert value(text, "arbor_db_pool_size") == 1
    assert value(text, "arbor_db_pool_in_use") == 0 and value(text, "arbor_db_pool_idle") == 1
    # one connection, eight renders at once: all but the first waited for it, more than once
    assert value(text, "arbor_db_pool_waits_total") - waits_before >= 7
    assert value(text, "arbor_db_pool_wait_seconds_total") > 0
    assert value(text, "arbor_db_pool_acquire_timeouts_total") == 0



async def test_compression_is_counted_by_coding_once_per_cached_body(aiohttp_client, settings,
                                                                     world):
    client = await aiohttp_client(create_app(settings.replace(render_cache_ttl_s=60)))
    a = await world.account()
    root = await world.post(a, "root " * 50)
    await world.fan(a, root, 20)
    identity = {"Accept-Encoding": "identity"}   # /metrics itself is not compressed here
    before = await (await client.get("/metrics", headers=identity)).text()
    ask = {"Accept-Encoding": "br"}
    first = await client.get(f"/v1/conversations/{root}", headers=ask,
                             auto_decompress=False)
    sent = await first.read()
    assert first.headers["Content-Encoding"] == "br"
    again = await client.get(f"/v1/conversations/{root}", headers=ask, auto_decompress=False)
    assert again.headers["Arbor-Cache"] == "hit" and await again.read() == sent
    plain = await (await client.get(f"/v1/conversations/{root}", headers=identity)).read()
    text = await (await client.get("/metrics", headers=identity)).text()

    def grew(series: str) -> float:
        return value(text, series) - value(before, series)
    # the cached body was compressed once, for both answers
    assert grew('arbor_compression_bodies_total{coding="br"}') == 1
    assert grew('arbor_compression_input_bytes_total{coding="br"}') == len(plain)
    assert grew('arbor_compression_output_bytes_total{coding="br"}') == len(sent)
    assert 0 < grew('arbor_compression_seconds_total{coding="br"}') < 1
    assert grew('arbor_compression_bodies_total{coding="gzip"}') == 0


async def _own_database(pg_dsn: str, name: str) -> str:
    """A fresh, migrated database of its own on the session's server: no other app's reaction
    folder (the session's live server runs one) can fold its deltas first."""
    from urllib.parse import urlsplit, urlunsplit

    from storage import migrations
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = urlunsplit(urlsplit(pg_dsn)._replace(path="/" + name))
    con = await asyncpg.connect(dsn)
    try:
        await migrations.apply(con)
    finally:
        await con.close()
    return dsn


async def test_reaction_folding_is_counted_and_its_failures_too(aiohttp_client, settings,
                                                                fault_proxy, pg_dsn):
    from storage import account_tokens, post_writes
    from storage.db import Database
    dsn = await _own_database(pg_dsn, "fold_metrics")
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        await post_writes.insert_account(db, 1, "author")
        await post_writes.insert_account(db, 2, "liker")
        post = (await post_writes.insert_post(db, 1, "like me")).id
        token = (await account_tokens.create_token(db, 2, "test")).token
    finally:
        await db.close()
    app = create_app(settings.replace(database_url=fault_proxy.dsn(database="fold_metrics"),
                                      reactions_fold_interval_ms=50, **PROXIED_APP_SETTINGS))
    client = await aiohttp_client(app, timeout=TIMEOUT)
    auth = {"Authorization": f"Bearer {token}"}

    async def metrics() -> str:
        return await (await client.get("/metrics")).text()

    async def until(check, what: str, seconds: float = 10.0) -> str:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            text = await metrics()
            if check(text):
                return text
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.05)
    await until(lambda t: value(t, "arbor_reaction_fold_rounds_total") > 0, "no fold round")
    before = await metrics()
    assert (await client.put(f"/v1/posts/{post}/like", headers=auth)).status == 200
    text = await until(lambda t: value(t, "arbor_reaction_folded_posts_total")
                       > value(before, "arbor_reaction_folded_posts_total"), "the like not folded")
    assert value(text, "arbor_reaction_folded_posts_total") - \
        value(before, "arbor_reaction_folded_posts_total") == 1
    assert value(text, "arbor_reaction_fold_failures_total") == 0
    assert abs(value(text, "arbor_reaction_fold_last_success_timestamp_seconds")
               - __import__("time").time()) < 5
    try:
        fault_proxy.blackhole()
        fault_proxy.reset_all()
        text = await until(lambda t: value(t, "arbor_reaction_fold_failures_total") > 0,
                           "a fold against a black-holed database did not count as failed")
        stalled = value(text, "arbor_reaction_fold_last_success_timestamp_seconds")
    finally:
        fault_proxy.heal_mode()
    await until(lambda t: value(t, "arbor_reaction_fold_last_success_timestamp_seconds")
                > stalled, "folding did not resume")

