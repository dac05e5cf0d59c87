"""A real Mastodon client, Mastodon.py (unpatched), against the running server on the embedded
PostgreSQL: it checks the instance's version, reads a thread, posts a reply (retried with the
same idempotency key), quotes, favourites and reblogs, deletes, and meets the uniform 404.
One test drives `arbor serve` itself, as `make run` starts it, in its own process.

Mastodon.py is synchronous (requests): the calls run in a thread, never on the test's loop.
"""
from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import urllib.request

import pytest
from mastodon import Mastodon, MastodonNotFoundError, MastodonUnauthorizedError


def _client(base_url: str, token: str | None = None, **kwargs) -> Mastodon:
    return Mastodon(access_token=token, api_base_url=base_url, request_timeout=30,
                    ratelimit_method="throw", **kwargs)


async def _thread(world, prefix: str):
    """A root by its author, two replies, one with a reply of its own, and a deleted reply
    that still carries one: what a comment widget reads."""
    author = await world.account(f"{prefix}_author")
    other = await world.account(f"{prefix}_other")
    root = await world.post(author, "root post")
    first = await world.post(other, "first reply", reply_to=root)
    nested = await world.post(author, "nested", reply_to=first)
    second = await world.post(other, "second reply", reply_to=root)
    gone = await world.post(other, "deleted reply", reply_to=root)
    orphan = await world.post(author, "reply under a deleted one", reply_to=gone)
    await world.delete(gone)
    # Mastodon.py's ids compare equal to the JSON's strings
    return str(author), str(root), [str(first), str(nested), str(second), str(orphan)], str(gone)


async def test_mastodon_py_reads_and_writes_a_conversation(world, live_server):
    author, root, replies, gone = await _thread(world, "mpy")
    first, nested, second, orphan = replies
    viewer = await world.account("mpy_viewer")
    token = await world.token(viewer)

    def run() -> None:
        # version_check_mode="created": Mastodon.py reads /api/v1/instance and refuses calls
        # the reported version does not have
        api = _client(live_server, token, version_check_mode="created")
        assert api.retrieve_mastodon_version() == "4.5.0"
        assert api.verify_minimum_version("4.5.0", cached=True)
        me = api.account_verify_credentials()
        assert me.username == "mpy_viewer" and me.id == str(viewer)
        assert api.account(author).acct == "mpy_author"

        context = api.status_context(first)
        assert [s.id for s in context.ancestors] == [root]
        assert [s.id for s in context.descendants] == [nested]
        whole = api.status_context(root)
        ids = [s.id for s in whole.descendants]
        assert sorted(ids) == sorted(replies) and gone not in ids
        assert ids.index(first) + 1 == ids.index(nested)  # depth-first
        by_id = {s.id: s for s in whole.descendants}
        assert by_id[orphan].in_reply_to_id == gone  # kept attached to the hidden post
        assert by_id[nested].account.acct == "mpy_author"
        assert by_id[nested].created_at.tzinfo is not None  # parsed as a datetime

        reply = api.status_post("a reply from Mastodon.py", in_reply_to_id=nested,
                                idempotency_key="mpy-reply-1")
        retried = api.status_post("a reply from Mastodon.py", in_reply_to_id=nested,
                                  idempotency_key="mpy-reply-1")
        assert retried.id == reply.id and reply.in_reply_to_id == nested
        assert reply.in_reply_to_account_id == author
        assert reply.content == "<p>a reply from Mastodon.py</p>"
        after = api.status_context(root)
        ids = [s.id for s in after.descendants]
        assert ids.count(reply.id) == 1 and ids.index(nested) + 1 == ids.index(reply.id)

        quote = api.status_post("quoting the root", quoted_status_id=root)
        assert quote.quote.state == "accepted" and quote.quote.quoted_status.id == root

        liked = api.status_favourite(second)
        assert liked.favourited is True and liked.favourites_count == 1
        assert api.status_favourite(second).favourites_count == 1  # idempotent
        assert api.status(second).favourited is True
        assert api.status_unfavourite(second).favourites_count == 0
        boosted = api.status_reblog(second)
        assert boosted.reblogged is True and boosted.reblogs_count == 1
        assert api.status_unreblog(second).reblogged is False

        deleted = api.status_delete(reply)
        assert deleted.id == reply.id and deleted.text == "a reply from Mastodon.py"
        with pytest.raises(MastodonNotFoundError) as missing:
            api.status(reply.id)
        with pytest.raises(MastodonNotFoundError) as never:
            api.status("999999999999999")
        assert missing.value.args[1:] == never.value.args[1:]  # status, reason, "Record not found"
        assert missing.value.args[3] == "Record not found"

        anonymous = _client(live_server)
        assert [s.id for s in anonymous.status_context(first).descendants] == [nested]
        assert anonymous.status(first).favourited is None  # not sent to the anonymous
        with pytest.raises(MastodonUnauthorizedError):
            _client(live_server, "arb_no-such-token").account_verify_credentials()

    await asyncio.to_thread(run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_mastodon_py_against_arbor_serve(world, pg_dsn, tmp_path):
    """`arbor serve` (what `make run` runs, here on the tests' PostgreSQL rather than a second
    embedded one): Mastodon.py reads a thread and writes into it."""
    author, root, replies, _ = await _thread(world, "serve")
    token = await world.token(int(author))
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        os.path.join(os.path.dirname(sys.executable), "arbor"), "serve",
        "--setting", f"port={port}", "--setting", f"database_url={pg_dsn}",
        "--setting", "db_pool_min=1", "--setting", "db_pool_max=2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ARBOR_DATA_DIR": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    try:
        def run() -> None:
            deadline = time.monotonic() + 60
            while True:  # until it listens (it applies migrations first)
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.returncode is not None:
                        raise
                    time.sleep(0.2)
            api = _client(base, token, version_check_mode="created")
            assert api.retrieve_mastodon_version() == "4.5.0"
            assert sorted(s.id for s in api.status_context(root).descendants) == sorted(replies)
            reply = api.status_post("through arbor serve", in_reply_to_id=root,
                                    idempotency_key="serve-1")
            assert reply.id in [s.id for s in api.status_context(root).descendants]
            assert api.status_favourite(reply).favourited is True
        await asyncio.to_thread(run)
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]
