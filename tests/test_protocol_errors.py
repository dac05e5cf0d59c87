"""Errors aiohttp raises before any handler runs (a request it cannot parse) are JSON in the
one error shape, say what is wrong without echoing the request, and close the connection.
Sent over a raw socket: an HTTP client would refuse to send most of these."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from service.http.protocol_errors import error_body

LONG = "A" * 9000  # aiohttp's limit on a request line or header line is 8190 bytes


async def raw(client, data: bytes) -> tuple[int, dict, bytes]:
    """(status, headers, body) of the answer to `data`, read until the server closes."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("request_bytes, code", [
    (f"GET /v1/conversations/1?q={LONG} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
     "request_too_large"),
    (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {LONG}\r\n\r\n".encode(), "request_too_large"),
    (b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "bad_request"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "bad_request"),
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", "bad_request"),
])
async def test_unparseable_requests_get_the_json_error_shape(client, request_bytes, code):
    status, headers, body = await raw(client, request_bytes)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = orjson.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["code"] == code and error["message"]
    assert b"AAAA" not in body and b"not http" not in body and b"colon" not in body
    # and the connection is closed (raw() read to the end of the stream)


async def test_a_good_request_on_the_same_server_still_works(client):
    status, headers, body = await raw(client, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                              b"Connection: close\r\n\r\n")
    assert status == 200


def test_errors_around_the_handlers_have_codes():
    assert error_body(500, RuntimeError("x")) == ("internal", "internal error")
    assert error_body(504, None)[0] == "timeout"
    assert error_body(413, None) == ("bad_request", "request entity too large")


@pytest.mark.parametrize("framing, payload", [
    ("Transfer-Encoding: chunked", "zz\r\n{\"text\": \"hi\"}\r\n0\r\n\r\n"),
    ("Content-Encoding: gzip\r\nContent-Length: 16", "not gzip at all!"),
])
async def test_a_malformed_body_is_a_400_not_a_500(client, world, framing, payload):
    """Body errors surface while the request is parsed (a bad chunk) or while a handler reads
    the body (a body that does not decompress)."""
    token = await world.token(await world.account())
    status, headers, body = await raw(client, (
        "POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n{payload}").encode())
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert orjson.loads(body)["error"]["code"] == "bad_request"


async def test_an_error_escaping_the_middlewares_is_a_json_500(aiohttp_client):
    """What aiohttp answers itself when a handler (or a middleware before service/http/middlewares'
    errors) raises: the same shape."""
    from aiohttp import web

    from service.http import protocol_errors

    async def broken(request):
        raise RuntimeError("a bug")

    protocol_errors.install()
    app = web.Application()
    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    status, headers, body = await raw(client, b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500 and headers["content-type"].startswith("application/json")
    assert orjson.loads(body) == {"error": {"code": "internal", "message": "internal error"}}
