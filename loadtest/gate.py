"""The SLO gate: a run's figures against thresholds, a verdict with a report and an exit code.

Pure (no Locust, no I/O but reading the SLO file): loadtest/hooks.py turns Locust's
aggregated stats into `RunFigures` on the master (or the single local process) and calls
`evaluate` once the run has stopped.

Exit codes: 0 every SLO met; 1 at least one missed (the report names each); 2 the run itself
went wrong, so its figures say nothing (no request at all, or the load test's own code raised).

What counts against the error ratio: every failed request (unexpected status, wrong body,
connection error) and, by default, shed and rate-limited ones (503 `overloaded`, 429): a
service that sheds honest load has not met its SLO. With a `shed_ratio` they are taken out
of the error ratio and gated by that ratio instead, for runs that drive the service past
capacity on purpose (shed answers are then the correct behaviour, up to a point).

Percentiles are per route (`"GET /v1/conversations/{post_id}"`) and overall; a route with
fewer than `min_requests` requests is reported but not gated on latency (a p99 of ten samples
is noise). Thresholds: built-in defaults < the SLO file's [defaults] < command-line options;
the file's [routes."METHOD /template"] tables override per route.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

PASS, MISSED, RUN_ERROR = 0, 1, 2

# shed/limited requests are recorded as failures whose message starts with these
SHED_PREFIXES = ("shed:", "limited:")


@dataclass(frozen=True)
class Limits:
    """Latency and error thresholds; None: not gated."""
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_ratio: float | None = None


@dataclass(frozen=True)
class Slo:
    default: Limits = Limits(p95_ms=500.0, p99_ms=1500.0)
    routes: Mapping[str, Limits] = field(default_factory=dict)
    error_ratio: float = 0.01            # overall, failures / requests
    shed_ratio: float | None = None      # None: shed and limited count as errors
    min_rps: float | None = None         # overall requests per second
    min_requests: int = 50               # per route, to be gated on latency

    def limits_for(self, route: str) -> Limits:
        own = self.routes.get(route)
        if own is None:
            return self.default
        return Limits(p95_ms=own.p95_ms if own.p95_ms is not None else self.default.p95_ms,
                      p99_ms=own.p99_ms if own.p99_ms is not None else self.default.p99_ms,
                      error_ratio=own.error_ratio)


@dataclass(frozen=True)
class RouteFigures:
    route: str            # "METHOD /template", or "total"
    requests: int
    failures: int         # every failure, shed and limited included
    shed: int             # failures that were 503 overloaded or 429
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float


@dataclass(frozen=True)
class RunFigures:
    routes: list[RouteFigures]
    total: RouteFigures
    exceptions: int = 0   # errors raised by the load test's own code


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    missed: list[str]
    report: str


class SloFileError(ValueError):
    pass


_LIMIT_KEYS = {"p95_ms", "p99_ms", "error_ratio"}
_TOP_KEYS = {"error_ratio", "shed_ratio", "min_rps", "min_requests"}


def _number(table: Mapping[str, Any], key: str, where: str) -> float:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SloFileError(f"{where}: {key} must be a number >= 0, not {value!r}")
    return float(value)


def _limits(table: Any, where: str) -> Limits:
    if not isinstance(table, dict):
        raise SloFileError(f"{where} must be a table")
    unknown = set(table) - _LIMIT_KEYS
    if unknown:
        raise SloFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(sorted(_LIMIT_KEYS))})")
    return Limits(**{k: _number(table, k, where) for k in table})


def parse_slo(doc: Mapping[str, Any], base: Slo = Slo()) -> Slo:
    """An Slo from a parsed SLO file (see loadtest/slo.toml), over `base`."""
    unknown = set(doc) - {"defaults", "routes"}
    if unknown:
        raise SloFileError(f"unknown table(s) {', '.join(sorted(unknown))} "
                           "(known: defaults, routes)")
    slo = base
    defaults = dict(doc.get("defaults", {}))
    top = {k: defaults.pop(k) for k in list(defaults) if k in _TOP_KEYS}
    if defaults:
        limits = _limits(defaults, "[defaults]")
        slo = replace(slo, default=Limits(
            p95_ms=limits.p95_ms if "p95_ms" in defaults else slo.default.p95_ms,
            p99_ms=limits.p99_ms if "p99_ms" in defaults else slo.default.p99_ms))
    for key in top:
        value = _number(top, key, "[defaults]")
        slo = replace(slo, **{key: int(value) if key == "min_requests" else value})
    routes = doc.get("routes", {})
    if not isinstance(routes, dict):
        raise SloFileError("[routes] must be a table")
    parsed = {}
    for route, table in routes.items():
        method, _, path = route.partition(" ")
        if not method.isupper() or not path.startswith("/"):
            raise SloFileError(f"[routes.{route!r}]: name routes as \"METHOD /template\", "
                               "e.g. \"GET /v1/conversations/{post_id}\"")
        parsed[route] = _limits(table, f"[routes.{route!r}]")
    return replace(slo, routes={**slo.routes, **parsed})


def load_slo(path: str | None, *, p95_ms: float | None = None, p99_ms: float | None = None,
             error_ratio: float | None = None, shed_ratio: float | None = None,
             min_rps: float | None = None, min_requests: int | None = None) -> Slo:
    """Defaults, then the file (TOML) if any, then the options given (None: not given)."""
    slo = Slo()
    if path:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SloFileError(f"{path}: {e}") from None
        slo = parse_slo(doc, slo)
    default = slo.default
    if p95_ms is not None:
        default = replace(default, p95_ms=p95_ms)
    if p99_ms is not None:
        default = replace(default, p99_ms=p99_ms)
    if p95_ms is not None or p99_ms is not None:
        # an explicit option is a limit for every route, over the file's per-route ones
        routes = {r: replace(l, p95_ms=p95_ms if p95_ms is not None else l.p95_ms,
                             p99_ms=p99_ms if p99_ms is not None else l.p99_ms)
                  for r, l in slo.routes.items()}
        slo = replace(slo, routes=routes)
    slo = replace(slo, default=default)
    for key, value in (("error_ratio", error_ratio), ("shed_ratio", shed_ratio),
                       ("min_rps", min_rps), ("min_requests", min_requests)):
        if value is not None:
            slo = replace(slo, **{key: value})
    return slo


def _ratio(n: int, of: int) -> float:
    return n / of if of else 0.0


def _fmt_ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"


def evaluate(slo: Slo, run: RunFigures) -> Verdict:
    """The verdict on a finished run."""
    total = run.total
    if total.requests == 0:
        return Verdict(RUN_ERROR, [], "SLO gate: RUN ERROR (exit 2): no request was made "
                       "(is the service up, the data file right?)")
    if run.exceptions:
        return Verdict(RUN_ERROR, [], f"SLO gate: RUN ERROR (exit 2): the load test's own "
                       f"code raised {run.exceptions} time(s); see Locust's exception report")

    missed: list[str] = []
    lines = [f"{'route':<46} {'reqs':>7} {'fail':>6} {'shed':>6} {'rps':>7} "
             f"{'p50':>6} {'p95':>6} {'p99':>6}  (ms; limits after /)"]
    for r in sorted(run.routes, key=lambda r: r.route) + [total]:
        limits = slo.limits_for(r.route) if r is not total else Limits()
        gated = r is not total and r.requests >= slo.min_requests
        marks = []
        for q, value, limit in (("p95", r.p95_ms, limits.p95_ms),
                                ("p99", r.p99_ms, limits.p99_ms)):
            text = _fmt_ms(value)
            if limit is not None and gated:
                text += f"/{_fmt_ms(limit)}"
                if value > limit:
                    missed.append(f"{q} of {r.route} is {_fmt_ms(value)} ms > "
                                  f"{_fmt_ms(limit)} ms")
                    text += "!"
            marks.append(text)
        errors = r.failures if slo.shed_ratio is None else r.failures - r.shed
        if limits.error_ratio is not None and r is not total \
                and _ratio(errors, r.requests) > limits.error_ratio:
            missed.append(f"error ratio of {r.route} is {_ratio(errors, r.requests):.2%} > "
                          f"{limits.error_ratio:.2%}")
        note = "" if gated or r is total else "  (too few requests to gate latency)"
        lines.append(f"{r.route:<46} {r.requests:>7} {r.failures:>6} {r.shed:>6} "
                     f"{r.rps:>7.1f} {_fmt_ms(r.p50_ms):>6} {marks[0]:>6} {marks[1]:>6}{note}")

    errors = total.failures if slo.shed_ratio is None else total.failures - total.shed
    what = "failures incl. shed/limited" if slo.shed_ratio is None else "failures excl. shed"
    summary = [f"error ratio ({what}): {_ratio(errors, total.requests):.2%} "
               f"(limit {slo.error_ratio:.2%})"]
    if _ratio(errors, total.requests) > slo.error_ratio:
        missed.append(f"error ratio is {_ratio(errors, total.requests):.2%} > "
                      f"{slo.error_ratio:.2%} ({errors} of {total.requests} requests; {what})")
    if slo.shed_ratio is not None:
        summary.append(f"shed/limited ratio: {_ratio(total.shed, total.requests):.2%} "
                       f"(limit {slo.shed_ratio:.2%})")
        if _ratio(total.shed, total.requests) > slo.shed_ratio:
            missed.append(f"shed/limited ratio is {_ratio(total.shed, total.requests):.2%} > "
                          f"{slo.shed_ratio:.2%}")
    if slo.min_rps is not None:
        summary.append(f"throughput: {total.rps:.1f} rps (minimum {slo.min_rps:g})")
        if total.rps < slo.min_rps:
            missed.append(f"throughput is {total.rps:.1f} rps < {slo.min_rps:g} rps")

    code = MISSED if missed else PASS
    head = (f"SLO gate: {'PASS' if code == PASS else 'MISSED'} (exit {code})")
    body = lines + summary
    if missed:
        body += ["missed:"] + [f"  - {m}" for m in missed]
    return Verdict(code, missed, "\n".join([head, *body]))
