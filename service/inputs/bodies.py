"""JSON request bodies: parsed with orjson, checked field by field. Pure (given the body's
bytes); every problem is a 400 that names it (`invalid_json`, or `invalid_field` with the
field)."""
from __future__ import annotations

import re
from typing import Any

import orjson

from service.core.errors import bad_request

# Text that PostgreSQL and every client can carry: no C0 or C1 control characters.
# The same patterns are in the OpenAPI document, so the contract and the server agree.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
HANDLE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"
MAX_DISPLAY_NAME = 100
MAX_LABEL = 100


def json_object(raw: bytes, allowed: tuple[str, ...], *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object with no field outside `allowed`. An empty body is {} when the
    body is optional."""
    if not raw.strip() and not required:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request("invalid_json", f"the body is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request("invalid_field", f"unknown field(s): {', '.join(u[:40] for u in unknown)}; "
                                           f"allowed: {', '.join(allowed)}")
    return body


def _field_error(name: str, what: str) -> Exception:
    return bad_request("invalid_field", f"{name} must be {what}")


def take_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if name in body and not isinstance(value, bool):
        raise _field_error(name, "true or false")
    return value


def take_text(body: dict[str, Any], name: str, *, max_length: int, pattern: str = TEXT_PATTERN,
              what: str = "text without control characters") -> str | None:
    value = body.get(name)
    if name not in body:
        return None
    if not isinstance(value, str):
        raise _field_error(name, "a string")
    if len(value) > max_length:
        raise _field_error(name, f"at most {max_length} characters")
    if not re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value):
        raise _field_error(name, what)
    return value


def take_choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if name in body and value not in choices:
        raise _field_error(name, f"one of {', '.join(choices)}")
    return value


def take_unit_number(body: dict[str, Any], name: str) -> float:
    """A required number between 0 and 1."""
    value = body.get(name)
    if name not in body:
        raise bad_request("invalid_field", f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _field_error(name, "a number between 0 and 1")
    return float(value)


def require(value: Any, name: str) -> Any:
    if value is None:
        raise bad_request("invalid_field", f"{name} is required")
    return value
