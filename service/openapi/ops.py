"""The contract of /healthz, /readyz, /openapi.json and /metrics (service/api/ops.py)."""
from __future__ import annotations

from service.core.settings import Settings

from .common import Json, obj, ok


def schemas(s: Settings) -> Json:
    return {
        "Health": obj({"status": {"type": "string"},
                       # which process answered: with --workers N, one of N
                       "pid": {"type": "integer"}}),
        "Ready": obj({"status": {"enum": ["ok", "degraded"]},
                      "degraded": {"type": "array", "items": {
                          "enum": ["database", "ranking", "overloaded",
                                   "rate_limit_store", "cache_notifications",
                                   "replicas"]}},
                      "details": {"type": "object"}}),
    }


def paths(s: Settings) -> Json:
    return {
        "/healthz": {"get": {"operationId": "healthz", "summary": "The process is alive.",
                             "responses": {"200": ok("Health", "Alive.")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "The service can serve.",
                            "responses": {"200": ok("Ready", "Ready."),
                                          "503": ok("Ready", "Degraded.")}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document.",
                                  "responses": {"200": {
                                      "description": "OpenAPI document.",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (text format 0.0.4: `text/plain; version=0.0.4; "
                       "charset=utf-8`).",
            "responses": {"200": {"description": "Metrics.", "content": {
                "text/plain": {"schema": {"type": "string"}}}}}}},
    }
