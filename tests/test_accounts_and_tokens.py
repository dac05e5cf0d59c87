"""Accounts and bearer tokens: stored hashed, resolved to a viewer, revoked, refused for
accounts that are not active; the `arbor accounts` commands."""
from __future__ import annotations

import hashlib

import orjson
import pytest

from service.http.keys import VIEWERS
from service.cli.arbor import main as arbor
from storage import account_tokens, account_writes, relation_queries
from storage.account_queries import account_by_ref
from storage.db import start_query_stats


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_is_stored_only_as_its_sha256(world, db):
    account = await world.account()
    new = await account_tokens.create_token(db, account, "laptop")
    assert new.token.startswith("arb_") and len(new.token) > 40
    assert new.token_id == hashlib.sha256(new.token.encode()).hexdigest()
    rows = await db.fetch("SELECT token_hash, label FROM account_tokens WHERE account_id = $1",
                          account)
    assert [(bytes(r["token_hash"]), r["label"]) for r in rows] == [
        (hashlib.sha256(new.token.encode()).digest(), "laptop")]
    leaked = await db.fetchval(
        """SELECT count(*) FROM account_tokens
           WHERE position($1::bytea IN token_hash) > 0 OR label LIKE '%' || $2 || '%'""",
        new.token.encode(), new.token)
    assert leaked == 0


async def test_token_resolves_to_its_viewer_until_revoked(client, world, db):
    me, friend = await world.account(), await world.account()
    await world.relate("follows", me, friend)
    new = await account_tokens.create_token(db, me)
    resp = await client.get("/v1/me/follows", headers=bearer(new.token))
    assert resp.status == 200
    assert [item["id"] for item in (await resp.json())["items"]] == [str(friend)]

    assert await account_tokens.revoke_token(db, new.token_hash) == me
    assert await account_tokens.revoke_token(db, new.token_hash) == me  # again is fine
    client.app[VIEWERS].forget_token(new.token_hash)  # what the admin API does on revoke
    resp = await client.get("/v1/me/follows", headers=bearer(new.token))
    assert resp.status == 401


async def test_viewer_relations_load_in_one_round_trip(world, db):
    me, a, b, c = [await world.account() for _ in range(4)]
    await world.relate("follows", me, a)
    await world.relate("blocks", me, b)
    await world.relate("blocks", c, me)
    await world.relate("mutes", me, c)
    await world.mute_word(me, "  Spoiler  ALERT ")
    stats = start_query_stats()
    viewer = await relation_queries.viewer_relations(db, me)
    assert stats.round_trips == 1
    assert (viewer.id, viewer.follows, viewer.blocks, viewer.blocked_by, viewer.mutes,
            viewer.muted_words) == (me, {a}, {b}, {c}, {c}, ("spoiler alert",))


@pytest.mark.parametrize("state", ["suspended", "deactivated", "locked"])
async def test_a_token_of_an_account_that_is_not_active_is_401(client, world, state):
    account = await world.account()
    token = await world.token(account)
    assert (await client.get("/v1/me/follows", headers=bearer(token))).status == 200
    await account_writes.update_account(world.db, account, state=state)
    client.app[VIEWERS].forget_account(account)  # what the admin API does on a state change
    resp = await client.get("/v1/me/follows", headers=bearer(token))
    assert resp.status == 401
    body = await resp.json()
    unknown = await client.get("/v1/me/follows", headers=bearer("arb_no-such-token"))
    assert body == await unknown.json()  # never says why
    assert body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic dXNlcjpwdw==", "arb_x",
                                    "Bearer a b", "Bearer " + "x" * 600, "Bearer \u00e9t\u00e9"])
async def test_malformed_authorization_is_401_with_www_authenticate(client, header):
    resp = await client.get("/v1/me/follows", headers={"Authorization": header})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_scheme_is_case_insensitive(client, world):
    token = await world.token(await world.account())
    resp = await client.get("/v1/me/follows", headers={"Authorization": f"bearer {token}"})
    assert resp.status == 200


async def test_handle_is_unique(db):
    await account_writes.create_account(db, "unique_handle_1")
    with pytest.raises(account_writes.HandleTaken):
        await account_writes.create_account(db, "unique_handle_1")


async def test_account_change_reports_only_real_changes(db):
    account = await account_writes.create_account(db, "flags_1", "Flags")
    changed = await account_writes.update_account(db, account.id, verified=True)
    assert (changed.verified, changed.protected, changed.display_name) == (True, False, "Flags")
    assert await account_writes.update_account(db, 1, verified=True) is None
    with pytest.raises(ValueError):
        await account_writes.update_account(db, account.id, state="banned")


def test_cli_creates_an_account_issues_a_token_and_suspends(pg_dsn, capsys):
    setting = ["--setting", f"database_url={pg_dsn}"]
    assert arbor(["accounts", "create", "--handle", "cli_user", "--display-name", "Cli User",
                  "--protected", *setting]) == 0
    created = orjson.loads(capsys.readouterr().out)
    assert (created["handle"], created["display_name"], created["protected"],
            created["state"]) == ("cli_user", "Cli User", True, "active")

    assert arbor(["accounts", "token", "cli_user", *setting]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("arb_")
    assert arbor(["accounts", "token", created["id"], *setting]) == 0
    assert capsys.readouterr().out.strip() != token

    assert arbor(["accounts", "suspend", "cli_user", *setting]) == 0
    assert orjson.loads(capsys.readouterr().out)["state"] == "suspended"
    assert arbor(["accounts", "suspend", "cli_user", "--state", "active", *setting]) == 0
    assert orjson.loads(capsys.readouterr().out)["state"] == "active"


def test_cli_refuses_a_taken_handle_and_an_unknown_account(pg_dsn, capsys):
    setting = ["--setting", f"database_url={pg_dsn}"]
    assert arbor(["accounts", "create", "--handle", "cli_twice", *setting]) == 0
    capsys.readouterr()
    assert arbor(["accounts", "create", "--handle", "cli_twice", *setting]) == 1
    assert "taken" in capsys.readouterr().err
    assert arbor(["accounts", "token", "nobody_has_this", *setting]) == 1
    assert "no account" in capsys.readouterr().err
    assert arbor(["accounts", "create", "--handle", "bad handle", *setting]) == 1
    assert "--handle" in capsys.readouterr().err


async def test_cli_token_authenticates(client, pg_dsn, capsys, db):
    import asyncio

    setting = ["--setting", f"database_url={pg_dsn}"]
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(
        None, arbor, ["accounts", "create", "--handle", "cli_auth", *setting]) == 0
    assert await loop.run_in_executor(None, arbor, ["accounts", "token", "cli_auth", *setting]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    resp = await client.get("/v1/me/follows", headers=bearer(token))
    assert resp.status == 200
    assert (await account_by_ref(db, "cli_auth")).state == "active"
