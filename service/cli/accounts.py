"""`arbor accounts create | token | suspend`: the admin API's account work from a shell.

They run against settings.database_url, or the embedded server, with migrations applied first,
through the same storage functions as the admin API.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any, Awaitable, Callable

import orjson

from storage import account_tokens, account_writes, migrations
from storage.account_queries import STATES, account_by_ref
from storage.db import Database
from storage.rows import AccountRow

from service.inputs.bodies import HANDLE_PATTERN, TEXT_PATTERN

from .common import settings_of, with_database


class CliError(Exception):
    """A problem to print as `arbor: ...` with exit status 1."""


def _account_json(a: AccountRow) -> str:
    return orjson.dumps({"id": str(a.id), "handle": a.handle, "display_name": a.display_name,
                         "state": a.state, "protected": a.protected, "has_avatar": a.has_avatar,
                         "verified": a.verified, "created_at": a.created_at},
                        option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z).decode()


async def _on_database(dsn: str, work: Callable[[Database], Awaitable[str]]) -> str:
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.pool.acquire() as con:
            await migrations.apply(con)
        return await work(db)
    finally:
        await db.close()


async def _account(db: Database, ref: str) -> AccountRow:
    account = await account_by_ref(db, ref)
    if account is None:
        raise CliError(f"no account with id or handle {ref!r}")
    return account


def _create(args: argparse.Namespace) -> Callable[[Database], Awaitable[str]]:
    if not re.fullmatch(HANDLE_PATTERN.removeprefix("^").removesuffix("$"), args.handle):
        raise CliError("--handle must be 1-63 of A-Z a-z 0-9 _ . - (not starting with . or -)")
    if not re.fullmatch(TEXT_PATTERN.removeprefix("^").removesuffix("$"), args.display_name):
        raise CliError("--display-name must not contain control characters")

    async def work(db: Database) -> str:
        try:
            account = await account_writes.create_account(
                db, args.handle, args.display_name, protected=args.protected,
                has_avatar=args.has_avatar, verified=args.verified)
        except account_writes.HandleTaken:
            raise CliError(f"the handle {args.handle!r} is taken") from None
        return _account_json(account)
    return work


def _token(args: argparse.Namespace) -> Callable[[Database], Awaitable[str]]:
    async def work(db: Database) -> str:
        account = await _account(db, args.account)
        return (await account_tokens.create_token(db, account.id, args.label)).token
    return work


def _suspend(args: argparse.Namespace) -> Callable[[Database], Awaitable[str]]:
    async def work(db: Database) -> str:
        account = await _account(db, args.account)
        changed = await account_writes.update_account(db, account.id, state=args.state)
        return _account_json(changed)
    return work


def _runner(build: Callable[[argparse.Namespace], Callable[[Database], Awaitable[str]]]):
    def run(args: argparse.Namespace) -> int:
        settings = settings_of(args)
        try:
            work = build(args)
            out = with_database(settings, lambda dsn: asyncio.run(_on_database(dsn, work)))
        except CliError as e:
            print(f"arbor: {e}", file=sys.stderr)
            return 1
        print(out)
        return 0
    return run


def register(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `accounts` and its subcommands; `command(name, fn, help, parent)` makes a parser
    with the common --setting option."""
    accounts = sub.add_parser("accounts", help="create accounts, issue tokens, suspend")
    inner = accounts.add_subparsers(dest="accounts_command", required=True)
    create = command("create", _runner(_create), "create an account; prints it as JSON", inner)
    create.add_argument("--handle", required=True)
    create.add_argument("--display-name", default="")
    for flag in ("protected", "has-avatar", "verified"):
        create.add_argument(f"--{flag}", action="store_true")
    token = command("token", _runner(_token),
                    "print a new bearer token for ACCOUNT (an id or a handle); shown only once",
                    inner)
    token.add_argument("account", metavar="ACCOUNT")
    token.add_argument("--label", default="cli")
    suspend = command("suspend", _runner(_suspend),
                      "set ACCOUNT's state (default suspended); prints it as JSON", inner)
    suspend.add_argument("account", metavar="ACCOUNT")
    suspend.add_argument("--state", choices=STATES, default="suspended")
