"""Load shapes, chosen with `--shape constant|step|spike|soak`; `-u` is the peak number of
users, `-r` the spawn rate, `-t` the run time (default 60 s for the shaped ones).

    constant  -u users for the whole run (Locust's own behaviour; -t as usual)
    step      5 equal steps up to -u, each a fifth of the run (finds the knee)
    spike     a fifth of -u; at 40% of the run all -u within a second, for a fifth of the
              run; then back to a fifth (does it shed early and recover?)
    soak      ramp to -u over a tenth of the run (at -r), then hold (leaks, drift)

Pure (a time in, a target out; no Locust import, so tests can use it): the LoadTestShape
that calls it is loadtest/hooks.py's SelectedShape (the first LoadTestShape in a locustfile
is the one Locust runs, so there is exactly one).
"""
from __future__ import annotations

import math

SHAPES = ("constant", "step", "spike", "soak")
DEFAULT_SHAPED_SECONDS = 60.0


def users_at(shape: str, elapsed: float, peak: int, rate: float,
             duration: float | None) -> tuple[int, float] | None:
    """(users, spawn rate) at `elapsed` seconds into the run, or None when the run is over."""
    if shape not in SHAPES:
        raise ValueError(f"--shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    peak = max(1, peak)
    if shape == "constant":
        if duration is not None and elapsed >= duration:
            return None
        return peak, rate
    duration = duration or DEFAULT_SHAPED_SECONDS
    if elapsed >= duration:
        return None
    f = elapsed / duration
    if shape == "step":
        step = min(5, int(f * 5) + 1)
        return max(1, math.ceil(peak * step / 5)), max(rate, peak / 5)
    if shape == "spike":
        base = max(1, math.ceil(peak / 5))
        if 0.4 <= f < 0.6:
            return peak, float(peak)           # all at once: a spike, not a ramp
        return base, float(peak)               # and dropped back just as fast
    # soak: the ramp is the spawn rate that reaches the peak in a tenth of the run
    return peak, max(rate, peak / max(1.0, duration / 10))
