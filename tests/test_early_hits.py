"""Cached reads answered in the protocol (service/http/early_hits.py), through real sockets, the
real app and PostgreSQL: the same answer as the middlewares' for a matrix of requests (codings,
CORS, ids, HEAD, queries, every route it serves), switched live; what it leaves to the usual
path (signed-in, cookies, If-None-Match, misses, Mastodon, pages, Connection: close); the same
counts (render-cache hits and misses, requests by route, a client's budget, the top clients,
the access log); a write seen at once; and hits answered while admission sheds."""
from __future__ import annotations

import asyncio
import logging
import re

from types import SimpleNamespace

import orjson
import pytest
from aiohttp import web

from service.app import create_app
from service.http.admission_middleware import ADMISSION
from service.http.keys import RATE_LIMITS, READS, SETTINGS
from service.http.middlewares import AccessLogger

ADMIN = {"Authorization": "Bearer test-admin-token"}
ME = {"X-Forwarded-For": "192.0.2.7"}   # the client of _request


def _app(settings, **overrides):
    return create_app(settings.replace(**{"render_cache_ttl_s": 60, "stale_ttl_s": 300,
                                          "trusted_proxies": "127.0.0.1", **overrides}))


async def _raw(client, payload: bytes, head: bool = False) -> bytes:
    """One request on a fresh connection, its answer as sent."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(payload)
    try:
        top = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = re.search(rb"(?i)content-length: (\d+)", top)
        body = b"" if head or length is None else await asyncio.wait_for(
            reader.readexactly(int(length.group(1))), 10)
    finally:
        writer.close()
    return top + body


def _request(path: str, method: str = "GET", extra: str = "", close: bool = False) -> bytes:
    # a fixed request id (else each answer has its own) and a fixed client
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-7\r\n"
            f"X-Forwarded-For: 192.0.2.7\r\n{extra}"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def _parse(answer: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if name.lower() == "date":
            continue
        if name.lower() == "server-timing":  # its total duration differs, nothing else
            value = re.sub(r"total;dur=[\d.]+", "total;dur=T", value)
        headers.append((name.lower(), value))
    return lines[0], headers, body


async def _live(client, **changes) -> None:
    resp = await client.patch("/v1/admin/settings", json=changes, headers=ADMIN)
    assert resp.status == 200, await resp.text()


async def _thread(world) -> tuple[int, int]:
    author = await world.account()
    root = await world.post(author, "a root long enough to be worth compressing " * 4)
    replies = await world.fan(author, root, 30)
    await world.post(author, "quoting it", quote=root)   # /v1/posts/{root}/quotes shows it
    return root, replies[0]


def _early(client) -> int:
    return client.server.app[READS].cache.early_hits


@pytest.mark.parametrize("origins", ["*", "https://blog.example"])
async def test_an_early_hit_is_the_usual_answer_byte_for_byte(aiohttp_client, settings, world,
                                                               origins):
    client = await aiohttp_client(_app(settings, http_cors_origins=origins,
                                       http_cors_auth_origins="https://blog.example"))
    root, reply = await _thread(world)
    reader = await world.account()
    token = await world.token(reader)
    auth = {"Authorization": f"Bearer {token}"}
    cursors = []
    for headers in ({}, auth):   # a cursor is the viewer's own
        body = orjson.loads(await (await client.get(f"/v1/conversations/{root}?max_nodes=5",
                                                    headers=headers)).read())
        cursors.append(_first_cursor(body))
    assert None not in cursors
    paths = [f"/v1/conversations/{root}", f"/v1/conversations/{root}?max_nodes=5",
             [f"/v1/conversations/{root}/replies?cursor={c}" for c in cursors],
             f"/v1/conversations/{reply}", f"/v1/posts/{root}",
             f"/v1/posts/{root}/quotes"]
    variants = ["", "Accept-Encoding: gzip\r\n", "Accept-Encoding: gzip, deflate, br\r\n",
                "Accept-Encoding: br;q=0.4, gzip;q=0.9\r\n", "Accept-Encoding: identity\r\n",
                "Origin: https://blog.example\r\n", "Origin: https://elsewhere.example\r\n",
                "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
                # signed in: its own cache entry, Cache-Control and CORS origins
                f"Authorization: Bearer {token}\r\n",
                f"Authorization: Bearer {token}\r\nAccept-Encoding: br\r\n"
                "Origin: https://blog.example\r\n",
                f"Authorization: Bearer {token}\r\nOrigin: https://elsewhere.example\r\n"]
    compared = 0
    values = client.server.app[SETTINGS].values
    for paths_of in paths:
        anonymous, signed_in = paths_of if isinstance(paths_of, list) else [paths_of] * 2
        # cached now, and the clients known to the rate limits (a client's first request
        # goes the usual way: its budget is not held in this process yet)
        for path, headers in ((anonymous, ME), (signed_in, {**ME, **auth}),
                              (signed_in, {**ME, **auth})):
            assert (await client.get(path, headers=headers)).status == 200, path
        for extra in variants:
            path = signed_in if "Authorization" in extra else anonymous
            for method in ("GET", "HEAD"):
                request = _request(path, method, extra)
                for _ in range(2):
                    # the client's budget units held in this process run out every
                    # reserve_chunk requests: that one goes the usual way, refilling them
                    before = _early(client)
                    early = await _raw(client, request, head=method == "HEAD")
                    if _early(client) == before + 1:
                        break
                assert _early(client) == before + 1, (path, extra, method)
                # switched as PATCH /v1/admin/settings does (not through it here: a
                # successful PATCH drops every cached read, as any write does)
                values["http_early_cache_hits"] = False
                usual = await _raw(client, request, head=method == "HEAD")
                values["http_early_cache_hits"] = True
                assert _early(client) == before + 1      # the usual path: not early
                assert _parse(early) == _parse(usual), _diff(early, usual)
                assert b"Arbor-Cache: hit" in early
                compared += 1
    assert compared == len(paths) * len(variants) * 2


def _first_cursor(body) -> str | None:
    """The first replies cursor a conversation view offers."""
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            more = node.get("more")
            if isinstance(more, dict) and isinstance(more.get("cursor"), str) and \
                    more["cursor"]:
                return more["cursor"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


async def test_what_it_leaves_to_the_usual_path(aiohttp_client, settings, world):
    app = _app(settings)
    client = await aiohttp_client(app)
    root, _ = await _thread(world)
    path = f"/v1/conversations/{root}"
    cache = app[READS].cache
    # a miss: the usual path renders it, counted once as a miss
    hits, misses = cache.hits, cache.misses
    assert b"Arbor-Cache: miss" in await _raw(client, _request(path))
    assert (cache.hits, cache.misses, cache.early_hits) == (hits, misses + 1, 0)
    reader = await world.account()
    token = await world.token(reader)
    etag = (await client.get(path)).headers["ETag"]
    usual_cases = [
        _request(path, extra="Authorization: Basic dXNlcjpwYXNz\r\n"),   # a 401
        _request(path, extra="Cookie: arbor_session=whatever\r\n"),
        _request(path, extra=f"If-None-Match: {etag}\r\n"),
        _request(path, close=True),
        _request(f"/api/v1/statuses/{root}/context"),
        _request(f"/conversations/{root}"),
        f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode(),
    ]
    for request in usual_cases:
        await _raw(client, request)          # once to cache what it renders
        before = cache.early_hits
        answer = await _raw(client, request)
        assert answer.split(b" ")[1] in (b"200", b"304", b"401"), (request, answer[:200])
        assert cache.early_hits == before, request
    # and the usual answers are still the usual ones: a 401, a 304
    assert (await _raw(client, usual_cases[0])).startswith(b"HTTP/1.1 401")
    assert (await _raw(client, usual_cases[2])).startswith(b"HTTP/1.1 304")
    # a signed-in hit is early, private, and its own entry (not the anonymous one)
    signed_in = _request(path, extra=f"Authorization: Bearer {token}\r\n")
    await _raw(client, signed_in)   # rendered; the token now known, the client is the account
    await _raw(client, signed_in)   # the account's first request: its budget held from now
    before = cache.early_hits
    answer = await _raw(client, signed_in)
    assert cache.early_hits == before + 1
    assert b"Cache-Control: private, no-cache" in answer and b"Arbor-Cache: hit" in answer
    # switched off live: nothing early; and on again
    await _live(client, http_early_cache_hits=False)
    await client.get(path)       # the PATCH dropped the cached reads, as every write does
    before = cache.early_hits
    assert b"Arbor-Cache: hit" in await _raw(client, _request(path))
    assert cache.early_hits == before
    await _live(client, http_early_cache_hits=True)
    await client.get(path)
    assert b"Arbor-Cache: hit" in await _raw(client, _request(path))
    assert cache.early_hits == before + 1


async def test_early_hits_are_counted_and_charged_like_usual_ones(aiohttp_client, settings,
                                                                  world):
    app = _app(settings, rate_limit_read="300/minute", rate_limit_cost_render=1)
    client = await aiohttp_client(app)
    root, _ = await _thread(world)
    path = f"/v1/conversations/{root}"
    cache = app[READS].cache
    hits, misses = cache.hits, cache.misses
    answers = []
    for _ in range(305):
        answers.append(await _raw(client, _request(path)))
    statuses = [a.split(b" ")[1] for a in answers]
    # the render and 299 hits spend the 300 units; then the usual path's 429s
    assert statuses == [b"200"] * 300 + [b"429"] * 5
    # units are held 3 at a time (1% of the quota): most hits are early, every few the usual
    assert cache.early_hits >= 150
    assert (cache.hits - hits, cache.misses - misses) == (299, 1)
    text = (await (await client.get("/metrics")).read()).decode()
    counted = re.search(r'arbor_http_requests_total\{method="GET",route="/v1/conversations/'
                        r'\{post_id\}",status="(\d+)"\} ([\d.]+)', text)
    assert counted is not None and _series(text, "200") == 300   # (429s: arbor_rate_limited)
    early = re.search(r"arbor_render_cache_early_hits_total ([\d.]+)", text)
    assert early is not None and float(early.group(1)) == app[READS].cache.early_hits
    top = await (await client.get("/v1/admin/top_clients", headers=ADMIN)).json()
    mine = [c for c in top["by_requests"] if c["client"] == "ip:192.0.2.7"]
    assert mine == [{"client": "ip:192.0.2.7", "requests": 305, "not_found": 0, "limited": 5}]


def _series(text: str, status: str) -> float:
    """arbor_http_requests_total of GET /v1/conversations/{post_id} with this status."""
    for line in text.splitlines():
        if (line.startswith("arbor_http_requests_total{") and 'method="GET"' in line
                and 'route="/v1/conversations/{post_id}"' in line
                and f'status="{status}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_an_early_hit_is_in_the_access_log(settings, world, caplog, unused_tcp_port):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    app = _app(settings)
    runner = web.AppRunner(app, access_log_class=AccessLogger)   # as `arbor serve` runs it
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    where = SimpleNamespace(host="127.0.0.1", port=unused_tcp_port)
    try:
        root, _ = await _thread(world)
        path = f"/v1/posts/{root}"
        await _raw(where, _request(path))        # rendered, and the client known
        lines = {}
        for early in (True, False):
            app[SETTINGS].values["http_early_cache_hits"] = early
            before = app[READS].cache.early_hits
            answer = await _raw(where, _request(path))
            assert app[READS].cache.early_hits == before + early
            length = len(answer)   # head and body, as aiohttp counts them
            record = [r for r in caplog.records if r.name == "aiohttp.access"][-1]
            assert re.fullmatch(rf"127\.0\.0\.1 GET {path} status=200 bytes={length} "
                                r"ms=\d+\.\d db_round_trips=0", record.getMessage()), \
                record.getMessage()
            assert record.request_id == "req-7"
            lines[early] = re.sub(r"ms=[\d.]+", "", record.getMessage())
        assert lines[True] == lines[False]
    finally:
        await runner.cleanup()


async def test_a_write_is_seen_at_once(aiohttp_client, settings, world):
    app = _app(settings)
    client = await aiohttp_client(app)
    author = await world.account()
    token = await world.token(author)
    root = await world.post(author, "a root")
    path = f"/v1/conversations/{root}"
    await client.get(path, headers=ME)
    before = app[READS].cache.early_hits
    assert b"Arbor-Cache: hit" in await _raw(client, _request(path))
    assert app[READS].cache.early_hits == before + 1
    resp = await client.post("/v1/posts", json={"text": "a new reply", "in_reply_to_id": str(root)},
                             headers={"Authorization": f"Bearer {token}",
                                      "Idempotency-Key": "early-hits-1"})
    assert resp.status == 201, await resp.text()
    answer = await _raw(client, _request(path))
    assert b"Arbor-Cache: miss" in answer and b"a new reply" in answer
    assert app[READS].cache.early_hits == before + 1


async def test_hits_are_answered_while_admission_sheds(aiohttp_client, settings, world):
    app = _app(settings, admission_enabled=True, concurrency_limit=2, admission_queue_size=0)
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"ok": True})

    app.router.add_get("/test/hold", hold)
    client = await aiohttp_client(app)
    root, _ = await _thread(world)
    cached, uncached = f"/v1/conversations/{root}", f"/v1/posts/{root}"
    await client.get(cached, headers=ME)
    holders = [asyncio.ensure_future(client.get("/test/hold")) for _ in range(2)]
    try:
        for _ in range(100):
            if app[ADMISSION].controller.inflight == 2:
                break
            await asyncio.sleep(0.01)
        assert app[ADMISSION].controller.inflight == 2
        shed_before = app[ADMISSION].shed_early
        assert (await _raw(client, _request(cached))).startswith(b"HTTP/1.1 200")
        assert (await _raw(client, _request(uncached))).startswith(b"HTTP/1.1 503")
        assert app[ADMISSION].shed_early == shed_before + 1
    finally:
        release.set()
        for r in await asyncio.gather(*holders):
            r.close()
    assert app[SETTINGS].values["http_early_cache_hits"] is True


def _diff(a, b):
    (s1, h1, b1), (s2, h2, b2) = _parse(a), _parse(b)
    return s1, s2, [x for x in h1 if x not in h2], [x for x in h2 if x not in h1], b1 == b2


def _same_refusal(a: bytes, b: bytes):
    """Two 429s alike but for the seconds left (they were sent a moment apart)."""
    out = []
    for answer in (a, b):
        status, headers, body = _parse(answer)
        fixed = [(n, re.sub(r"\d+", "N", v) if n in ("retry-after", "ratelimit") else v)
                 for n, v in headers if n != "content-length"]
        out.append((status, fixed, re.sub(rb"retry after \d+ s", b"retry after N s", body)))
    return out[0] == out[1]


@pytest.mark.parametrize("origins", ["*", "https://blog.example"])
async def test_a_limited_clients_429_is_answered_early_as_the_middleware_answers_it(
        aiohttp_client, settings, world, origins):
    app = _app(settings, rate_limit_read="5/minute", rate_limit_cost_render=1,
               http_cors_origins=origins)
    client = await aiohttp_client(app)
    root, _ = await _thread(world)
    state = app[RATE_LIMITS]
    statuses = [(await _raw(client, _request(f"/v1/conversations/{root}"))).split(b" ")[1]
                for _ in range(6)]
    assert statuses == [b"200"] * 5 + [b"429"]     # the sixth: refused by the middleware
    values = app[SETTINGS].values
    for path in (f"/v1/conversations/{root}", f"/v1/posts/{root}/quotes",
                 "/v1/conversations/999999999999"):   # cached, not cached, missing: all 429
        for extra in ("", "Origin: https://blog.example\r\n"):
            for method in ("GET", "HEAD"):
                request = _request(path, method, extra)
                before, early_before = state.limiter.refused, state.refused_early
                early = await _raw(client, request, head=method == "HEAD")
                assert (state.limiter.refused, state.refused_early) == (before + 1,
                                                                        early_before + 1)
                values["http_early_cache_hits"] = False
                usual = await _raw(client, request, head=method == "HEAD")
                values["http_early_cache_hits"] = True
                assert (state.limiter.refused, state.refused_early) == (before + 2,
                                                                        early_before + 1)
                assert early.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), early[:100]
                assert _same_refusal(early, usual), (_parse(early), _parse(usual))
    text = (await (await client.get("/metrics")).read()).decode()
    limited = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("arbor_rate_limited_requests_total{"))
    assert limited == 1 + 3 * 2 * 2 * 2    # the first 429, then each early and usual one
    top = await (await client.get("/v1/admin/top_clients", headers=ADMIN)).json()
    mine = [c for c in top["by_requests"] if c["client"] == "ip:192.0.2.7"][0]
    assert mine["limited"] == limited and mine["requests"] == 6 + 3 * 2 * 2 * 2


async def test_under_concurrent_writers_no_early_hit_is_older_than_a_finished_write(
        aiohttp_client, settings, world):
    """Readers keep a conversation hot (early hits) while writers add replies concurrently:
    every read that starts after a write was answered shows that write's reply, and the
    last read's count equals the replies written."""
    app = _app(settings, rate_limit_enabled=False)
    client = await aiohttp_client(app)
    author = await world.account()
    token = await world.token(author)
    root = await world.post(author, "a root")
    path = f"/v1/conversations/{root}?branching=60"   # all 48 replies on the first page
    await client.get(path)
    stop = asyncio.Event()
    stale: list = []
    early_before = app[READS].cache.early_hits

    async def reader() -> None:
        while not stop.is_set():
            await _raw(client, _request(path))

    async def writer(w: int) -> None:
        for i in range(8):
            resp = await client.post("/v1/posts", json={"text": f"reply {w}.{i}",
                                                        "in_reply_to_id": str(root)},
                                     headers={"Authorization": f"Bearer {token}",
                                              "Idempotency-Key": f"concurrent-{w}-{i}"})
            assert resp.status == 201, await resp.text()
            new_id = (await resp.json())["id"]
            answer = await _raw(client, _request(path))   # started after the write's answer
            if new_id.encode() not in answer:
                stale.append((new_id, answer[:120]))
    readers = [asyncio.create_task(reader()) for _ in range(4)]
    await asyncio.gather(*(writer(w) for w in range(6)))
    stop.set()
    await asyncio.gather(*readers)
    assert stale == []
    assert app[READS].cache.early_hits > early_before      # the readers were answered early
    body = orjson.loads((await _raw(client, _request(path))).partition(b"\r\n\r\n")[2])
    assert body["focal"]["counts"]["replies"] == 6 * 8
