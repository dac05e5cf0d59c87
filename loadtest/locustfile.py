"""Arbor's load test: the default mix of users with an SLO gate. Run from the repository root:

    .venv/bin/arbor seed --preset bench --export loadtest/data.json   # ids and tokens, no psql
    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 \\
        --headless -u 40 -r 10 -t 1m --slo-file loadtest/slo.toml \\
        --html .arbor/loadtest/report.html --csv .arbor/loadtest/run

or `make loadtest`, which seeds, starts the service, runs this gated and stops everything.
Users and tags: loadtest/users.py; shapes (`--shape step|spike|soak`): loadtest/shapes.py;
the gate's options and exit codes (0 met, 1 missed, 2 run error): loadtest/hooks.py.
Works with `--processes N` and with `--master` / `--worker` (the gate runs on the master).

Locust is closed-loop: each user waits for an answer before its next request, so offered load
falls when the service slows down. For a fixed offered rate use bench/overload.py (open-loop).
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:   # `loadtest` is a package of the repository
    sys.path.insert(0, _ROOT)

from loadtest.hooks import SelectedShape  # noqa: E402,F401 - and the options, the gate
from loadtest.users import AnonymousReader, SignedInReader, ViralCrowd, Writer  # noqa: E402,F401
