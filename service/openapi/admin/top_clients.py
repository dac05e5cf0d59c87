"""The contract of /v1/admin/top_clients (service/api/admin/top_clients.py)."""
from __future__ import annotations

from service.core.settings import Settings
from service.resilience.top_clients import BUCKETS, MEASURES

from ..common import ADMIN, ADMIN_ERRORS, Json, obj


def schemas(s: Settings) -> Json:
    counted = {"client": {"type": "string"},
               **{m: {"type": "integer", "minimum": 0} for m in MEASURES}}
    per_measure = {m: {"type": "integer", "minimum": 0} for m in MEASURES}
    return {
        "TopClients": obj({
            "minutes": {"type": "integer"}, "size": {"type": "integer"},
            "events": obj(per_measure), "max_undercount": obj(per_measure),
            **{f"by_{m}": {"type": "array", "items": obj(counted)} for m in MEASURES}}),
    }


def paths(s: Settings) -> Json:
    return {
        "/v1/admin/top_clients": {
            "get": {"operationId": "topClients", "security": ADMIN,
                    "summary": "The heaviest clients of the last minutes by requests, 404s and "
                               "429s, from bounded summaries (counts may be low by at most "
                               "`max_undercount`).",
                    "parameters": [
                        {"name": "minutes", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": BUCKETS,
                                    "default": 5}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                    "default": 20}}],
                    "responses": {"200": {"description": "The report.", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/TopClients"}}}}, **ADMIN_ERRORS}}},
    }
