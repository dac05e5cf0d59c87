"""The rate limits' part of every operation of the contract: the 429 and 403 (`denied`)
answers and the RateLimit header fields on every limited operation (all but /healthz,
/readyz, /metrics). The admin endpoints of the rate limits are under openapi/admin/
(accounts' rate_limits, deny_list, top_clients)."""
from __future__ import annotations

from service.resilience import rate_limit_rules as rules

from .common import Json, error

_HEADERS = {
    "RateLimit-Policy": {
        "description": "The budgets this request spends, as in "
                       "draft-ietf-httpapi-ratelimit-headers: `\"read\";q=3000;w=300, "
                       "\"not_found\";q=60;w=300` (quota units per window seconds). On every "
                       "429; on other answers when `rate_limit_headers` is `always`.",
        "schema": {"type": "string"}},
    "RateLimit": {
        "description": "The budget's units left and the seconds within which no more can be "
                       "spent: `\"read\";r=0;t=12`. On every 429 (the spent budget); on other "
                       "answers when `rate_limit_headers` is `always` (the request's budget).",
        "schema": {"type": "string"}},
}
_TOO_MANY = {
    "description": "Rate limited (`rate_limited`): the client (its token's account, else its "
                   "address) spent a budget; wait Retry-After seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait.", "required": True,
                                "schema": {"type": "integer", "minimum": 1}},
                **{k: {**v, "required": True} for k, v in _HEADERS.items()}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_DENIED = "The client is on the deny list (`denied`)."
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def add_rate_limit_answers(paths: Json) -> None:
    """429 and 403 on every limited operation, the RateLimit fields on its other answers."""
    for path, operations in paths.items():
        if path in rules.OPS_PATHS:
            continue
        for method, op in operations.items():
            if method not in _METHODS:
                continue
            responses = op["responses"]
            for status, response in responses.items():
                if status.startswith(("2", "4", "5")) and "$ref" not in response:
                    response["headers"] = {**_HEADERS, **response.get("headers", {})}
            responses["429"] = _TOO_MANY
            if "403" in responses:
                old = responses["403"]
                responses["403"] = {**old, "description": f"{old['description']} Or: {_DENIED}"}
            else:
                responses["403"] = error(_DENIED)
