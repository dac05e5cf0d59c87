"""Locust's glue: the suite's options, checks at start-up, and the SLO gate at the end.

Options (beside Locust's own; also in the web UI and in a locust.conf):
    --arbor-data PATH       the export (default loadtest/data.json; env ARBOR_LOADTEST_DATA)
    --shape NAME            constant | step | spike | soak (loadtest/shapes.py)
    --slo-p95-ms, --slo-p99-ms MS     per-route latency limits (every route)
    --slo-error-ratio R     overall failures / requests (default 0.01)
    --slo-shed-ratio R      gate shed (503 overloaded) and limited (429) by R, apart from
                            the error ratio (default: they count as errors)
    --slo-min-rps N         overall throughput floor
    --slo-min-requests N    a route with fewer is not gated on latency (default 50)
    --slo-file PATH         TOML: [defaults] and per-route [routes."GET /v1/..."] limits
    --slo-report PATH       also write the verdict as JSON
    --slo-off               no gate: Locust's own exit code

The gate runs where the aggregated stats are: the master (with --processes or
--master/--worker) or the single local process, on `quitting`, and sets the exit code:
0 met, 1 missed (the report names each missed SLO), 2 run error (loadtest/gate.py).
A bad --slo-file, --shape or data file stops the run before it starts, with exit code 2.
SelectedShape runs the shape of --shape (loadtest/shapes.py).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter

from locust import LoadTestShape, events
from locust.runners import WorkerRunner

from . import data as data_file
from .gate import SHED_PREFIXES, RUN_ERROR, RouteFigures, RunFigures, SloFileError, evaluate, \
    load_slo
from .shapes import SHAPES, users_at

log = logging.getLogger("arbor.loadtest")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("Arbor", "the Arbor suite and its SLO gate")
    group.add_argument("--arbor-data", default=os.environ.get("ARBOR_LOADTEST_DATA",
                                                              "loadtest/data.json"),
                       help="the data file of `arbor seed --preset bench --export PATH`")
    group.add_argument("--shape", default="constant", choices=SHAPES,
                       help="load shape: -u is its peak, -t its length")
    group.add_argument("--slo-p95-ms", type=float, default=None, help="p95 limit per route")
    group.add_argument("--slo-p99-ms", type=float, default=None, help="p99 limit per route")
    group.add_argument("--slo-error-ratio", type=float, default=None,
                       help="overall failures / requests limit (default 0.01)")
    group.add_argument("--slo-shed-ratio", type=float, default=None,
                       help="gate 503 overloaded + 429 by this ratio, apart from errors")
    group.add_argument("--slo-min-rps", type=float, default=None, help="throughput floor")
    group.add_argument("--slo-min-requests", type=int, default=None,
                       help="fewest requests for a route to be gated on latency (50)")
    group.add_argument("--slo-file", default=None, help="TOML file of limits (per route)")
    group.add_argument("--slo-report", default=None, help="write the verdict as JSON here")
    group.add_argument("--slo-off", action="store_true", default=False,
                       help="no SLO gate: Locust's own exit code")


def _slo(options):
    return load_slo(options.slo_file, p95_ms=options.slo_p95_ms, p99_ms=options.slo_p99_ms,
                    error_ratio=options.slo_error_ratio, shed_ratio=options.slo_shed_ratio,
                    min_rps=options.slo_min_rps, min_requests=options.slo_min_requests)


def _stop(message: str) -> None:
    print(f"loadtest: {message}", file=sys.stderr)
    sys.exit(RUN_ERROR)


@events.init.add_listener
def _check(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return   # a worker gets the master's options with its first spawn, and spawns
        # only the classes the master dispatches
    # A class whose every task --tags/--exclude-tags filter out would only raise "no tasks"
    # (Locust filters when the run starts, and keeps such classes): filter now (once; Locust
    # then skips it) and drop them, before the master or local runner dispatches users.
    environment._filter_tasks_by_tags()
    kept = [u for u in environment.user_classes if u.tasks]
    if not kept:
        _stop("--tags/--exclude-tags leave no task to run")
    environment.user_classes[:] = kept
    try:
        if not options.slo_off:
            _slo(options)
        data_file.load(options.arbor_data)
    except (SloFileError, data_file.DataError) as e:
        _stop(str(e))


def figures(environment) -> RunFigures:
    """The aggregated stats as the gate's figures."""
    stats = environment.stats
    shed: Counter[str] = Counter()
    for error in stats.errors.values():
        if any(p in str(error.error) for p in SHED_PREFIXES):
            shed[f"{error.method} {error.name}"] += error.occurrences

    def route(entry, key: str) -> RouteFigures:
        n = entry.num_requests
        pct = (lambda q: float(entry.get_response_time_percentile(q) or 0)) if n else \
            (lambda q: 0.0)
        return RouteFigures(key, n, entry.num_failures,
                            sum(shed.values()) if key == "total" else shed[key],
                            pct(0.5), pct(0.95), pct(0.99), float(entry.total_rps or 0))

    routes = [route(e, f"{e.method} {e.name}") for e in stats.entries.values()]
    exceptions = sum(e["count"] for e in getattr(environment.runner, "exceptions", {}).values())
    return RunFigures(routes, route(stats.total, "total"), exceptions)


@events.quitting.add_listener
def _gate(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None or options.slo_off or isinstance(environment.runner, WorkerRunner):
        return
    verdict = evaluate(_slo(options), figures(environment))
    print(verdict.report, flush=True)
    if options.slo_report:
        with open(options.slo_report, "w") as f:
            json.dump({"exit_code": verdict.exit_code, "missed": verdict.missed,
                       "report": verdict.report}, f, indent=2)
    environment.process_exit_code = verdict.exit_code


class SelectedShape(LoadTestShape):
    use_common_options = True   # -u, -r, -t keep their meaning

    def tick(self):
        options = self.runner.environment.parsed_options
        return users_at(getattr(options, "shape", "constant"), self.get_run_time(),
                        options.num_users or 1, options.spawn_rate or 1,
                        options.run_time)
