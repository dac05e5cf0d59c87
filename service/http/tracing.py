"""OpenTelemetry tracing, optional: the `otel` extra (`pip install 'arbor[otel]'`) and the
setting `tracing_enabled`. Off (the default), nothing here runs: the middleware is not in the
app's list, so it costs a request nothing. On, each request is one SERVER span, named
`METHOD route` (the route's template, never the raw path), a child of the client's
`traceparent` when it sent a valid one, with the request id, the status and the route as
attributes; the span's trace id goes into the request's log lines (service/core/logs.py).
Spans are sampled (`tracing_sample_ratio`, following a client's sampled flag), batched and
exported over OTLP/HTTP in a background thread (`tracing_otlp_endpoint`, else the standard
OTEL_EXPORTER_OTLP_* environment). Per app: its own TracerProvider, shut down (flushed) at
cleanup; the global OpenTelemetry state is left alone.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import AsyncIterator

from aiohttp import web

from service.core.request_ids import CURRENT
from service.core.settings import Settings, SettingsError

from .keys import REQUEST_CONTEXT, SETTINGS, TRACER_PROVIDER

try:  # the `otel` extra
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    _MISSING: ImportError | None = None
except ImportError as e:
    trace = None
    _MISSING = e

_SERVER = trace.SpanKind.SERVER if trace is not None else None


def middlewares(settings: Settings) -> list:
    """[the tracing middleware] when tracing is on, else []; an error naming the extra when
    it is on but not installed."""
    if not settings.tracing_enabled:
        return []
    if _MISSING is not None:
        raise SettingsError(f"setting tracing_enabled is true but OpenTelemetry is not "
                            f"installed ({_MISSING.name or _MISSING}): pip install 'arbor[otel]'")
    return [traced]


def install(app: web.Application) -> None:
    """The app's TracerProvider (when tracing is on), shut down at cleanup."""
    s = app[SETTINGS]
    if not s.tracing_enabled:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "arbor"}),
                              sampler=ParentBased(TraceIdRatioBased(s.tracing_sample_ratio)))
    exporter = OTLPSpanExporter(endpoint=s.tracing_otlp_endpoint or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    app[TRACER_PROVIDER] = provider
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    yield
    provider = app[TRACER_PROVIDER]
    # flushes what is batched (bounded by the exporter's timeout), in a thread
    await asyncio.get_running_loop().run_in_executor(None, provider.shutdown)


_PROPAGATOR = TraceContextTextMapPropagator() if trace is not None else None


@web.middleware
async def traced(request: web.Request, handler) -> web.StreamResponse:
    tracer = request.app[TRACER_PROVIDER].get_tracer("arbor")
    ctx = request.get(REQUEST_CONTEXT)
    parent = None
    if ctx is not None and ctx.traceparent is not None:  # validated by request_ids
        parent = _PROPAGATOR.extract({"traceparent": ctx.traceparent})
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    with tracer.start_as_current_span(f"{request.method} {route}", context=parent, kind=_SERVER,
                                      record_exception=True, set_status_on_exception=True,
                                      attributes={"http.request.method": request.method,
                                                  "http.route": route,
                                                  "url.path": request.path}) as span:
        token = None
        if ctx is not None:
            span.set_attribute("arbor.request_id", ctx.request_id)
            if ctx.trace_id is None and span.get_span_context().is_valid:
                # a trace started here: its id in the request's log lines, access line too
                ctx = dataclasses.replace(
                    ctx, trace_id=format(span.get_span_context().trace_id, "032x"))
                request[REQUEST_CONTEXT] = ctx
                token = CURRENT.set(ctx)
        try:
            response = await handler(request)
        finally:
            if token is not None:
                CURRENT.reset(token)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        return response
