"""Refusals answered in the protocol (service/http/early_refusal.py), through real sockets and
the real app: the same bytes as the middlewares' 503 (headers, CORS, Mastodon's shape, HEAD),
the same counts (shed by reason and route, top clients, a limited client's budget), the usual
path for what it does not take (pipelined requests, Connection: close, ops paths), the access
log line, and its use of aiohttp's router agreeing with the router."""
from __future__ import annotations

import asyncio
import logging
import re
import time
from types import SimpleNamespace

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from service.app import create_app
from service.http import early_refusal
from service.http.admission_middleware import ADMISSION
from service.http.keys import RATE_LIMITS
from service.http.middlewares import AccessLogger

HOLD = "/test/hold"


async def _app(aiohttp_client, settings, server_kwargs=None, **overrides):
    s = settings.replace(**{"admission_enabled": True, "concurrency_limit": 2,
                            "admission_queue_size": 0, "trusted_proxies": "127.0.0.1",
                            **overrides})
    app = create_app(s)
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()          # holds its slot like a long render
        return web.json_response({"ok": True})

    app.router.add_get(HOLD, hold)
    client = await aiohttp_client(app, server_kwargs=server_kwargs or {})
    holders = [asyncio.ensure_future(client.get(HOLD)) for _ in range(2)]
    for _ in range(100):
        if app[ADMISSION].controller.inflight == 2:
            break
        await asyncio.sleep(0.01)
    assert app[ADMISSION].controller.inflight == 2
    return client, app, release, holders


async def _raw(client, payload: bytes, answers: int = 1, head: bool = False) -> bytes:
    """Bytes written on a fresh connection; the `answers` responses read back (`head`: to a
    HEAD, without bodies)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(payload)
    out = b""
    try:
        for _ in range(answers):
            top = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = re.search(rb"(?i)content-length: (\d+)", top)
            body = b"" if head or length is None else await asyncio.wait_for(
                reader.readexactly(int(length.group(1))), 10)
            out += top + body
    finally:
        writer.close()
    return out


def _request(path: str, method: str = "GET", extra: str = "", close: bool = False) -> bytes:
    # a fixed request id: the same on both paths (else each generates its own)
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-7\r\n{extra}"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def _parse(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return lines[0], headers, body


def _same_answer(early: bytes, usual: bytes) -> None:
    """Equal but for Date, and Connection: close on the usual one (the request asked it)."""
    (s1, h1, b1), (s2, h2, b2) = _parse(early), _parse(usual)
    for h in (h1, h2):
        h.pop("date")
    h2.pop("connection", None)
    assert (s1, h1, b1) == (s2, h2, b2)


async def _finish(release, holders) -> None:
    release.set()
    for r in await asyncio.gather(*holders):
        r.close()


CASES = [
    ("/v1/conversations/1", ""),
    ("/v1/conversations/1/replies?cursor=x", "Origin: https://blog.example\r\n"),
    ("/v1/posts/1/quotes", "Authorization: Bearer nobody-knows-it\r\n"
                           "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"),
    ("/api/v1/statuses/1/context", "Origin: https://elsewhere.example\r\n"),
]


@pytest.mark.parametrize("origins", ["*", "https://blog.example"])
async def test_an_early_refusal_is_the_middlewares_503_byte_for_byte(aiohttp_client, settings,
                                                                     origins):
    client, app, release, holders = await _app(aiohttp_client, settings,
                                               http_cors_origins=origins)
    gate = app[ADMISSION]
    try:
        for path, extra in CASES:
            for method in ("GET", "HEAD"):
                before = gate.shed_early
                early = await _raw(client, _request(path, method, extra),
                                   head=method == "HEAD")
                assert gate.shed_early == before + 1, (path, method)
                # Connection: close takes the usual path (the middlewares answer)
                usual = await _raw(client, _request(path, method, extra, close=True),
                                   head=method == "HEAD")
                assert gate.shed_early == before + 1
                _same_answer(early, usual)
                status, headers, body = _parse(early)
                assert status == "HTTP/1.1 503 Service Unavailable"
                assert headers["retry-after"] == "1" and headers["cache-control"] == "no-store"
                assert headers["content-type"] == "application/json"
                assert headers["x-request-id"] == "req-7"
                assert ("traceparent" in headers) == ("traceparent" in extra)
                if method == "HEAD":
                    assert body == b""
                elif path.startswith("/api/"):
                    assert orjson.loads(body) == {"error": orjson.loads(
                        early_refusal.SHED_BODY)["error"]["message"]}
                else:
                    assert orjson.loads(body)["error"]["code"] == "overloaded"
        # CORS as the middleware gives it: any origin may read anonymously, or only the one
        _, anonymous, _ = _parse(await _raw(client, _request("/v1/conversations/1")))
        _, blog, _ = _parse(await _raw(client, _request(
            "/v1/conversations/1", extra="Origin: https://blog.example\r\n")))
        assert blog["access-control-allow-origin"] == ("*" if origins == "*"
                                                       else "https://blog.example")
        assert ("access-control-allow-origin" in anonymous) == (origins == "*")
    finally:
        await _finish(release, holders)


async def test_early_refusals_are_counted_by_reason_and_route(aiohttp_client, settings):
    client, app, release, holders = await _app(aiohttp_client, settings)
    gate = app[ADMISSION]
    try:
        for _ in range(5):
            async with client.get("/v1/conversations/7", headers={
                    "X-Forwarded-For": "198.51.100.9"}) as r:       # keep-alive: early
                assert r.status == 503
        # the first took the usual way: its client had no units held in this process yet
        assert gate.shed_early == 4
        assert gate.snapshot()["shed_by_route"]["/v1/conversations/{post_id}"] == {
            "queue_full": 5}
        assert gate.controller.counters.shed["queue_full"][0] == 5     # first pages
        metrics = await (await client.get("/metrics")).text()
        assert re.search(r'arbor_admission_shed_total\{reason="queue_full",'
                         r'route="/v1/conversations/\{post_id\}"\} 5\.0', metrics)
        # 503s by reason (request_ids.unavailable): the early ones too
        assert re.search(r'arbor_unavailable_responses_total\{reason="overloaded"\} 5\.0', metrics)
        ready = orjson.loads(await (await client.get("/readyz")).read())
        assert ready["details"]["admission"]["shed_early"] == 4
        assert "198.51.100.9" in str(app[RATE_LIMITS].top.top(time.time()))
        # ops endpoints are never refused, early or not
        assert (await client.get("/healthz")).status == 200
    finally:
        await _finish(release, holders)


async def test_a_limited_client_is_charged_for_early_refusals_and_then_gets_429(
        aiohttp_client, settings):
    # 300 units, taken from the store 3 at a time (1% chunks) and held in this process: the
    # request that takes a chunk goes the usual way, the two after it are refused early
    client, app, release, holders = await _app(aiohttp_client, settings,
                                               rate_limit_read="300/5minutes")
    gate = app[ADMISSION]
    greedy = {"X-Forwarded-For": "203.0.113.5"}
    statuses = []
    try:
        for _ in range(320):
            async with client.get("/v1/conversations/1", headers=greedy) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert r.headers["Retry-After"] and "RateLimit" in r.headers
        assert gate.shed_early >= 150              # most were refused in the protocol
        assert statuses.count(503) == 300          # each spent one unit of its budget
        assert set(statuses[300:]) == {429}        # then the budget says no, not admission
    finally:
        await _finish(release, holders)


async def test_what_the_early_path_does_not_take_goes_the_usual_way(aiohttp_client, settings):
    client, app, release, holders = await _app(aiohttp_client, settings)
    gate = app[ADMISSION]
    try:
        # two requests in one segment (pipelined): both answered, in order, the usual way
        answer = await _raw(client, _request("/v1/conversations/1")
                            + _request("/v1/posts/2/quotes"), answers=2)
        assert answer.count(b"HTTP/1.1 503 ") == 2 and gate.shed_early == 0
        # a body, a write: the usual way, still refused
        answer = await _raw(client, b"POST /v1/posts HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 503 ") and gate.shed_early == 0
        # ops paths and a path that is no route are not refused early
        assert (await _raw(client, _request("/readyz"))).startswith(b"HTTP/1.1 200")
        assert gate.shed_early == 0
        await _raw(client, _request("/no/such/route"))
        assert gate.shed_early == 0
        # and the connection an early refusal answered serves its next request
        reader, writer = await asyncio.open_connection(client.host, client.port)
        for path in ("/v1/conversations/1", "/healthz", "/v1/conversations/2"):
            writer.write(_request(path))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 503" if path != "/healthz" else b"HTTP/1.1 200")
        writer.close()
        assert gate.shed_early == 2
    finally:
        await _finish(release, holders)
    # slots free again: nothing is refused
    assert (await client.get(HOLD)).status == 200


async def test_a_burst_read_in_one_turn_is_refused_early_beyond_what_the_queue_takes(
        aiohttp_client, settings):
    # Every request of a burst is read (data_received) before the first reaches admission:
    # those the queue takes are let through, the rest refused in the protocol, not all let
    # through and the excess refused by the middleware (Admission.refuse's announcements).
    client, app, release, holders = await _app(aiohttp_client, settings,
                                               admission_queue_size=3)
    gate = app[ADMISSION]
    conns = [await asyncio.open_connection(client.host, client.port) for _ in range(10)]
    try:
        await asyncio.sleep(0.05)                  # each connection's handler is waiting
        for _, writer in conns:                    # one turn: no await between the writes
            writer.write(_request("/v1/conversations/1"))
        reads = [asyncio.ensure_future(reader.readuntil(b"\r\n\r\n")) for reader, _ in conns]
        for _ in range(200):
            if sum(r.done() for r in reads) >= 7:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)                  # no eighth answer comes
        done = [r.result() for r in reads if r.done()]
        assert len(done) == 7 and all(h.startswith(b"HTTP/1.1 503 ") for h in done)
        assert gate.shed_early == 7 and gate.controller.queued == 3
        assert gate.snapshot()["shed_by_reason"]["queue_full"] == 7
    finally:
        await _finish(release, holders)
        # the three that waited are served
        rest = await asyncio.wait_for(asyncio.gather(*[r for r in reads if not r.done()]), 10)
        assert len(rest) == 3 and not any(h.startswith(b"HTTP/1.1 503 ") for h in rest)
        for _, writer in conns:
            writer.close()


async def test_the_access_log_has_the_early_refusals_line(settings, caplog, unused_tcp_port):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    app = create_app(settings.replace(admission_enabled=True, concurrency_limit=1,
                                      admission_queue_size=0))
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"ok": True})

    app.router.add_get(HOLD, hold)
    runner = web.AppRunner(app, access_log_class=AccessLogger)   # as `arbor serve` runs it
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    where = SimpleNamespace(host="127.0.0.1", port=unused_tcp_port)
    try:
        holder = asyncio.ensure_future(_raw(where, _request(HOLD)))
        while app[ADMISSION].controller.inflight < 1:
            await asyncio.sleep(0.01)
        assert (await _raw(where, _request("/v1/conversations/5?depth=2"))).startswith(
            b"HTTP/1.1 503")
        assert app[ADMISSION].shed_early == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
        assert any(re.fullmatch(r"127\.0\.0\.1 GET /v1/conversations/5\?depth=2 status=503 "
                                r"bytes=\d+ ms=\d+\.\d db_round_trips=0", line)
                   for line in lines), lines
        release.set()
        await holder
    finally:
        await runner.cleanup()


async def test_route_of_agrees_with_aiohttps_router(settings):
    app = create_app(settings.replace(admission_enabled=True))
    app.router.freeze()
    for resource in app.router.resources():
        path = re.sub(r"\{[^}]+\}", "12", resource.canonical)
        for route in resource:
            method = route.method
            request = make_mocked_request(method, path, app=app)
            match = await app.router.resolve(request)
            expected = match.route.resource.canonical if match.route.resource else None
            assert early_refusal.route_of(app, method, path) == expected, (method, path)
    assert early_refusal.route_of(app, "GET", "/nowhere") is None
    assert early_refusal.route_of(app, "PUT", "/v1/conversations/1") is None   # a 405


async def test_give_back_undoes_held(settings):
    state = create_app(settings.replace(admission_enabled=True))[RATE_LIMITS]
    limiter, policies, now = state.limiter, state.policies(None), time.time()
    ticket = await limiter.before("c", "read", policies, now)     # reserves a chunk
    limiter.abandon(ticket)
    s = ticket.state
    units, inflight = s.reserves["read"][0], s.inflight
    held = limiter.held("c", "read", policies, now)
    assert s.reserves["read"][0] == units - 1 and s.inflight == inflight + 1
    limiter.give_back(held)
    assert s.reserves["read"][0] == units and s.inflight == inflight
