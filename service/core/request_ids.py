"""Request ids and W3C trace context: parsing (pure) and the per-request context variable
that every log line of a request reads (service/core/logs.py).

A request id is the client's `X-Request-Id` when it is 1..max_length characters of
[A-Za-z0-9._:+=/-] (no spaces, quotes or control characters: safe in a log line and a
header), else one generated here (32 hex digits). A `traceparent` (W3C Trace Context level 1:
`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zeros, version not ff)
is passed through when valid and ignored otherwise; its trace id is logged. O(length) each.
"""
from __future__ import annotations

import contextvars
import random
import re
from dataclasses import dataclass

REQUEST_ID_CHARS = re.compile(r"[A-Za-z0-9._:+=/-]+")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    trace_id: str | None = None     # from a valid traceparent
    parent_id: str | None = None
    traceparent: str | None = None  # the header as received, when valid


CURRENT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "arbor_request", default=None)


def new_request_id() -> str:
    # Unique, not secret (it is sent to the client and logged): the random module's generator,
    # seeded from os.urandom at start and again in each forked child. os.urandom itself is a
    # getrandom() system call, ~9 us a request under load here, a sixth of a cached read.
    return f"{random.getrandbits(128):032x}"


def valid_request_id(value: str | None, max_length: int) -> str | None:
    """The client's request id when it is acceptable, else None (then generate one)."""
    if not value or len(value) > max_length or not REQUEST_ID_CHARS.fullmatch(value):
        return None
    return value


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, parent id) of a valid traceparent, else None. A version above 00 may carry
    more fields after the four (the spec's forward compatibility); 00 may not."""
    if not value or len(value) > 512:
        return None
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, _flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 \
            or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


def context_of(request_id_header: str | None, traceparent_header: str | None,
               max_length: int) -> RequestContext:
    request_id = valid_request_id(request_id_header, max_length) or new_request_id()
    trace = parse_traceparent(traceparent_header)
    if trace is None:
        return RequestContext(request_id)
    return RequestContext(request_id, trace[0], trace[1], traceparent_header.strip())
