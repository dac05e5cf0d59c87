"""A conversation's caps on its view limits, as the admin API takes them
(PUT /v1/admin/conversations/{post_id}/limits): each cap an integer in its range, or null
for none. Pure: every problem is a 400 that names it."""
from __future__ import annotations

from storage.rows import Caps

from service.core.errors import bad_request

RANGES = {"depth": (0, 100), "branching": (1, 1000), "max_nodes": (1, 10_000),
          "ancestors": (1, 1000)}


def parse_caps(body: object) -> Caps:
    if not isinstance(body, dict) or not set(body) <= set(RANGES):
        raise bad_request("invalid_body", f"the body must be an object with any of "
                                          f"{', '.join(RANGES)} (integers, or null for no cap)")
    values = {}
    for name, value in body.items():
        lo, hi = RANGES[name]
        if isinstance(value, float) and value.is_integer():  # JSON's 3.0 is the integer 3
            value = int(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not lo <= value <= hi):
            raise bad_request("invalid_parameter", f"{name} must be an integer between {lo} "
                                                   f"and {hi}, or null")
        values[name] = value
    return Caps(**values)
