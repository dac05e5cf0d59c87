"""OpenTelemetry tracing (the `otel` extra, setting tracing_enabled): off, no tracing code is
in the request path; on, each request is a SERVER span, a child of the client's traceparent,
exported over OTLP/HTTP to a real receiver (an HTTP server here that decodes the protobuf
export requests), its trace id in the request's log context."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)

from service.app import create_app
from service.core.request_ids import CURRENT
from service.core.settings import SettingsError
from service.http import tracing
from service.http.keys import TRACER_PROVIDER

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
async def receiver():
    """An OTLP/HTTP trace receiver on a real port: collects the spans it is sent."""
    spans = []

    async def export(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest.FromString(await request.read())
        for rs in message.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append((service, span))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")
    app = web.Application()
    app.router.add_post("/v1/traces", export)
    server = TestServer(app)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/v1/traces", spans
    await server.close()


def _attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


async def test_tracing_off_puts_nothing_in_the_request_path(settings):
    app = create_app(settings)
    assert not settings.tracing_enabled
    assert tracing.traced not in app.middlewares and TRACER_PROVIDER not in app


async def test_spans_are_children_of_the_clients_traceparent_and_exported(
        aiohttp_client, settings, world, receiver):
    endpoint, spans = receiver
    app = create_app(settings.replace(tracing_enabled=True, tracing_sample_ratio=0.0,
                                      tracing_otlp_endpoint=endpoint))
    assert tracing.traced in app.middlewares
    client = await aiohttp_client(app)
    a = await world.account()
    root = await world.post(a, "root")
    resp = await client.get(f"/v1/conversations/{root}", headers={
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "X-Request-Id": "traced-1"})
    assert resp.status == 200
    # not sampled by the client, ratio 0: not recorded
    assert (await client.get("/v1/conversations/999999999")).status == 404
    await client.close()  # the app's cleanup flushes the batch to the receiver
    assert len(spans) == 1, spans
    service, span = spans[0]
    assert service["service.name"] == "arbor"
    assert span.name == "GET /v1/conversations/{post_id}"
    assert span.kind == span.SPAN_KIND_SERVER
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID
    attrs = _attrs(span)
    assert attrs["arbor.request_id"] == "traced-1"
    assert attrs["http.route"] == "/v1/conversations/{post_id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["url.path"] == f"/v1/conversations/{root}"


async def test_a_trace_started_here_has_its_id_in_the_log_context(aiohttp_client, settings,
                                                                    receiver):
    endpoint, spans = receiver
    app = create_app(settings.replace(tracing_enabled=True, tracing_sample_ratio=1.0,
                                      tracing_otlp_endpoint=endpoint))

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"trace_id": CURRENT.get().trace_id})
    app.router.add_get("/test/trace", whoami)
    client = await aiohttp_client(app)
    logged = (await (await client.get("/test/trace")).json())["trace_id"]
    missing = await client.get("/no/such/path")
    assert missing.status == 404
    await client.close()
    by_name = {span.name: span for _, span in spans}
    assert set(by_name) == {"GET /test/trace", "GET unmatched"}
    assert by_name["GET /test/trace"].trace_id.hex() == logged
    assert len(by_name["GET /test/trace"].parent_span_id) == 0  # a root span


def test_tracing_on_without_the_extra_is_an_error_naming_it(settings, monkeypatch):
    monkeypatch.setattr(tracing, "_MISSING", ImportError("no module", name="opentelemetry"))
    with pytest.raises(SettingsError, match=r"pip install 'arbor\[otel\]'"):
        create_app(settings.replace(tracing_enabled=True))
