"""What the `arbor` commands share: their settings (defaults, the config file, environment,
then each command's --setting overrides) and a database to run against (settings.database_url, or the
embedded server, started for the command when none runs)."""
from __future__ import annotations

import argparse
from typing import Callable, TypeVar

from service.core.settings import (Settings, embedded_postgres_class, load_settings,
                                   parse_assignments)

T = TypeVar("T")


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings: the command's --setting NAME=VALUE overrides, over the environment, over
    the config file (--config FILE, else ARBOR_CONFIG), over the defaults."""
    return load_settings(overrides=parse_assignments(args.setting or []),
                         config_file=getattr(args, "config", None))


def with_database(settings: Settings, fn: Callable[[str], T]) -> T:
    """Run fn(dsn) against settings.database_url, or the embedded server (started and stopped
    around the call when this process started it)."""
    if settings.database_url:
        return fn(settings.database_url)
    server = embedded_postgres_class()(settings.data_dir)
    dsn = server.start()
    try:
        return fn(dsn)
    finally:
        if server.started_here:
            server.stop()
