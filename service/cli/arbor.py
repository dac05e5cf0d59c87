"""The `arbor` command: its parser and main; serve, seed, migrate and settings here, the
other subcommands in their own modules (accounts.py, import_posts.py, repair.py; export.py
is `seed --export`)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg
import orjson
from aiohttp import web

from storage import migrations, seeding

from service.app import create_app
from service.core import logs
from service.core.settings import BY_NAME, SettingsError, markdown_table
from service.http import gc_tuning
from service.http.middlewares import AccessLogger

from . import accounts, export, import_posts, repair, workers
from .common import settings_of, with_database

log = logging.getLogger("arbor.cli")


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    logs.configure(settings.log_level, settings.log_format, worker=workers.index())
    count = workers.worker_count(settings.workers if args.workers is None
                                 else BY_NAME["workers"].parse(args.workers))
    if settings.sources.get("cursor_secret") == "generated":
        log.warning("cursor_secret is not set: using a random key; cursors will not survive a "
                    "restart (set ARBOR_CURSOR_SECRET)%s",
                    f"; the {count} workers share one" if count > 1 else "")
    if count > 1:
        return workers.Supervisor(settings, count, args.setting or [], demo=args.demo).run()
    return serve_one(settings, demo=args.demo)


def serve_one(settings, *, demo: bool) -> int:
    """One process serving; a worker of `--workers N` when the supervisor started it."""
    in_supervisor = workers.is_worker()
    app = create_app(settings, seed_demo=demo and not in_supervisor)
    gc_tuning.install(app)
    if in_supervisor:
        app.on_startup.append(_watch_supervisor)

    def started(msg: str) -> None:  # aiohttp prints this once every site listens
        log.info("%s", msg.strip())
        workers.report_ready()

    web.run_app(app, host=settings.host, port=settings.port, access_log_class=AccessLogger,
                print=started, shutdown_timeout=settings.worker_shutdown_timeout_s,
                # Workers share the port: the kernel spreads connections over them.
                reuse_port=in_supervisor or None,
                # A client that disconnects cancels its request's work (coalesced renders
                # run on, shielded, while another request still waits for them).
                handler_cancellation=True)
    return 0


async def _watch_supervisor(app: web.Application) -> None:
    task = asyncio.create_task(workers.watch_supervisor())
    app.on_cleanup.append(lambda _app: _cancel(task))


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()


def cmd_seed(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    logs.configure(settings.log_level, settings.log_format)
    if args.export is None:
        report = with_database(settings,
                               lambda dsn: asyncio.run(seeding.seed_dsn(dsn, args.preset)))
    else:
        report = with_database(settings, lambda dsn: asyncio.run(export.seed_and_export(
            dsn, args.preset, args.export, accounts=args.export_accounts,
            labels=args.export_labels)))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    async def run(dsn: str) -> list[int]:
        con = await asyncpg.connect(dsn)
        try:
            return await migrations.apply(con)
        finally:
            await con.close()

    settings = settings_of(args)
    logs.configure(settings.log_level, settings.log_format)
    applied = with_database(settings, lambda dsn: asyncio.run(run(dsn)))
    print(f"applied: {applied or 'nothing (up to date)'}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    for row in settings_of(args).public():
        print(f"{row['name']:<26} {str(row['value']):<20} ({row['source']})  {row['help']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arbor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help_text: str, parent=None) -> argparse.ArgumentParser:
        p = (parent or sub).add_parser(name, help=help_text)
        p.add_argument("--setting", action="append", metavar="NAME=VALUE",
                       help="override a setting (repeatable); see `arbor settings`")
        p.add_argument("--config", metavar="FILE",
                       help="a TOML file of settings (name = value), below the environment "
                            "and --setting (default: $ARBOR_CONFIG)")
        p.set_defaults(fn=fn)
        return p

    serve = command("serve", cmd_serve, "run the HTTP service")
    serve.add_argument("--demo", action="store_true",
                       help="seed the demo data when the database has no posts")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="processes on the one port (setting `workers`; 0: one per CPU)")
    seed = command("seed", cmd_seed, "load a data preset (idempotent)")
    seed.add_argument("--preset", required=True, choices=("demo", "viral", "bench"))
    export.register_options(seed)
    command("migrate", cmd_migrate, "apply pending migrations")
    settings = command("settings", cmd_settings, "list every setting and its current value")
    settings.add_argument("--markdown", action="store_true", help="print the README table")
    accounts.register(sub, command)
    import_posts.register(sub, command)
    repair.register(sub, command)
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
