"""Errors raised before the handlers, in the one JSON error shape.

aiohttp answers a request it cannot parse (a request line or header over its limit, a bad
method, a malformed header or URL) and anything that escapes the middlewares (a 500, a 504)
from one method, `RequestHandler.handle_error`, as plain text that echoes what was received
(the request line, up to 100 bytes of it). The subclass here answers those in the shape every
other error has, `{"error": {"code", "message"}}`, with a fixed message per kind that repeats
nothing of the request, and logs one line per bad request instead of a traceback (a client's
garbage is not the service's error). A body that does not decode is found later, while a
handler reads it: service/http/middlewares.py answers that with `error_body` too. `install()`
makes aiohttp's server build it: the server looks the class up in `aiohttp.web_server` for
each connection.
"""
from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from aiohttp import http_exceptions, web, web_protocol, web_server

log = logging.getLogger("arbor.http")

# (exception class, code, message), most specific first: a message names the problem only.
_KINDS: tuple[tuple[type[BaseException], str, str], ...] = (
    (http_exceptions.LineTooLong, "request_too_large",
     "the request line or a header line is longer than the server accepts"),
    (http_exceptions.BadHttpMethod, "bad_request", "the request line has no valid HTTP method"),
    (http_exceptions.InvalidURLError, "bad_request", "the request target is not a valid URL"),
    (http_exceptions.BadStatusLine, "bad_request", "the request line is malformed"),
    (http_exceptions.InvalidHeader, "bad_request", "a header is malformed"),
    (http_exceptions.PayloadEncodingError, "bad_request",
     "the body does not match its Content-Encoding or Transfer-Encoding"),
    (web_protocol.RequestPayloadError, "bad_request",
     "the body does not match its Content-Encoding or Transfer-Encoding"),
    (http_exceptions.BadHttpMessage, "bad_request", "the request is not valid HTTP"),
)
CLIENT_ERRORS = (http_exceptions.HttpProcessingError, web_protocol.RequestPayloadError)
_BY_STATUS = {500: ("internal", "internal error"),
              504: ("timeout", "the request took too long")}


def error_body(status: int, exc: BaseException | None) -> tuple[str, str]:
    """The (code, message) for an error aiohttp raises before or around the handlers."""
    if exc is not None:
        for kind, code, message in _KINDS:
            if isinstance(exc, kind):
                return code, message
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    return "bad_request" if 400 <= status < 500 else "http_error", phrase.lower()


class JsonErrorRequestHandler(web_protocol.RequestHandler):
    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:  # a client's malformed request: one line, no traceback, nothing of its bytes
            log.info("malformed request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:  # as aiohttp: a response is on its way already
            raise ConnectionError("Response is sent already, cannot send another response "
                                  "with the error message")
        code, text = error_body(status, exc)
        resp = web.Response(status=status, content_type="application/json",
                            body=orjson.dumps({"error": {"code": code, "message": text}}))
        resp.force_close()
        return resp

    def log_exception(self, *args, **kw) -> None:
        # After a handler answered a body it could not read, aiohttp drains the rest of the
        # body, meets the same error and logs it as "Unhandled exception": it is the client's.
        exc = kw.get("exc_info")
        if isinstance(exc, CLIENT_ERRORS):
            log.info("malformed request body: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)


def install() -> None:
    """Make aiohttp's server use JsonErrorRequestHandler (idempotent)."""
    web_server.RequestHandler = JsonErrorRequestHandler  # type: ignore[misc]
