"""The `arbor` command: serve, seed, migrate, settings, accounts."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import orjson
from aiohttp import web

from service.core import logs
from service.core.settings import SettingsError, load_settings, markdown_table, parse_assignments
from service.http import gc_tuning

from . import accounts as account_cli, import_posts as import_cli, repair as repair_cli

log = logging.getLogger("arbor.cli")


def _settings(args: argparse.Namespace):
    return load_settings(overrides=parse_assignments(args.setting or []))


def _with_database(settings, fn):
    """Run fn(dsn) against settings.database_url, or the embedded server (started and stopped
    around the call when this process started it)."""
    if settings.database_url:
        return fn(settings.database_url)
    from storage.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir)
    dsn = server.start()
    try:
        return fn(dsn)
    finally:
        if server.started_here:
            server.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app import create_app
    from service.http.middlewares import AccessLogger

    settings = _settings(args)
    logs.configure(settings.log_level)
    if settings.sources.get("cursor_secret") == "generated":
        log.warning("cursor_secret is not set: using a random key; cursors will not survive a "
                    "restart (set ARBOR_CURSOR_SECRET)")
    app = create_app(settings, seed_demo=args.demo)
    gc_tuning.install(app)
    web.run_app(app, host=settings.host, port=settings.port, access_log_class=AccessLogger,
                print=lambda msg: log.info("%s", msg.strip()), shutdown_timeout=10,
                # A client that disconnects cancels its request's work (coalesced renders
                # run on, shielded, while another request still waits for them).
                handler_cancellation=True)
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from storage import seeding

    settings = _settings(args)
    logs.configure(settings.log_level)
    report = _with_database(settings,
                            lambda dsn: asyncio.run(seeding.seed_dsn(dsn, args.preset)))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import asyncpg

    from storage import migrations

    async def run(dsn: str) -> list[int]:
        con = await asyncpg.connect(dsn)
        try:
            return await migrations.apply(con)
        finally:
            await con.close()

    settings = _settings(args)
    logs.configure(settings.log_level)
    applied = _with_database(settings, lambda dsn: asyncio.run(run(dsn)))
    print(f"applied: {applied or 'nothing (up to date)'}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    for row in _settings(args).public():
        print(f"{row['name']:<26} {str(row['value']):<20} ({row['source']})  {row['help']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arbor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help_text: str, parent=None) -> argparse.ArgumentParser:
        p = (parent or sub).add_parser(name, help=help_text)
        p.add_argument("--setting", action="append", metavar="NAME=VALUE",
                       help="override a setting (repeatable); see `arbor settings`")
        p.set_defaults(fn=fn)
        return p

    serve = command("serve", cmd_serve, "run the HTTP service")
    serve.add_argument("--demo", action="store_true",
                       help="seed the demo data when the database has no posts")
    seed = command("seed", cmd_seed, "load a data preset (idempotent)")
    seed.add_argument("--preset", required=True, choices=("demo", "viral", "bench"))
    command("migrate", cmd_migrate, "apply pending migrations")
    settings = command("settings", cmd_settings, "list every setting and its current value")
    settings.add_argument("--markdown", action="store_true", help="print the README table")
    account_cli.register(sub, command)
    import_cli.register(sub, command)
    repair_cli.register(sub, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SettingsError as e:
        print(f"arbor: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
