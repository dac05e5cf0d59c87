"""The default mix's users (FastHttpUser: geventhttpclient, several times what HttpUser sends
per core, so the load generator is not the bottleneck on a small box).

    AnonymousReader (weight 5)  opens conversations at their root or at a reply deep in them
                                (with a small `ancestors`, so the chain is cut), then reads on
                                through every kind of cursor: more, sections, nested,
                                ancestors; glances at quotes
    SignedInReader  (weight 3)  the same with its own account's token, after setting up its
                                own relations (follows, a mute, a muted word) through /v1/me
    ViralCrowd      (weight 3)  everyone on the one huge conversation: its first page, its
                                top replies, and far down its million replies
    Writer          (weight 1)  replies, quotes and deletes its own posts, each with an
                                `Idempotency-Key`, and sometimes retries one (a replay)

Requests are named by route template ("/v1/conversations/{post_id}"), never by id. Tags pick
scenarios: `--tags read`, `anonymous`, `signed_in`, `viral`, `write` (a class whose tasks
are all filtered out is dropped: loadtest/hooks.py). How answers are recorded:

    2xx as expected, with the expected shape        success
    429 (rate limited)                              failure "limited: 429 <code>"
    503 `overloaded` (shed)                         failure "shed: 503 overloaded"
    anything else (a 500, a 404 for a seeded post, a 503 unavailable, a wrong body, ...)
                                                    failure "error: <status> <code>"

Shed and limited users wait out `Retry-After` (capped at 5 s), as a polite client does.
"""
from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

import gevent
import orjson
from locust import between, tag, task
from locust.contrib.fasthttp import FastHttpUser

from . import data as data_file
from .reading import ancestors_cursor, page_cursors, view_cursors

CONVERSATION = "/v1/conversations/{post_id}"
REPLIES = "/v1/conversations/{post_id}/replies"
ANCESTORS = "/v1/conversations/{post_id}/ancestors"
QUOTES = "/v1/posts/{post_id}/quotes"
POSTS = "/v1/posts"
POST = "/v1/posts/{post_id}"
QUEUE = 8                    # cursors a reader keeps to read on from
MAX_RETRY_AFTER_S = 5.0
_account_numbers = itertools.count()


def _code(resp) -> str:
    try:
        return orjson.loads(resp.content)["error"]["code"]
    except Exception:  # noqa: BLE001 - any body: the status says enough
        return "-"


class ArborUser(FastHttpUser):
    """What every user of the mix shares: the data file, recording answers, politeness."""
    abstract = True
    wait_time = between(0.2, 1.0)

    def data(self) -> data_file.Data:
        return data_file.load(self.environment.parsed_options.arbor_data)

    def call(self, method: str, path: str, name: str, expect: tuple[int, ...] = (200,),
                **kwargs) -> tuple[int, Any]:
        """(status, parsed JSON body or None); records the answer as described above."""
        wait = 0.0
        with self.client.request(method, path, name=name, catch_response=True,
                                 **kwargs) as resp:
            status = resp.status_code
            body = None
            if status in expect:
                try:
                    body = orjson.loads(resp.content) if resp.content else None
                except orjson.JSONDecodeError:
                    resp.failure(f"error: {status} body is not JSON")
                    return status, None
                problem = self.check(name, status, body, resp)
                if problem:
                    resp.failure(f"error: {status} {problem}")
                else:
                    resp.success()
            elif status == 429:
                resp.failure(f"limited: 429 {_code(resp)}")
                wait = self._retry_after(resp)
            elif status == 503 and _code(resp) == "overloaded":
                resp.failure("shed: 503 overloaded")
                wait = self._retry_after(resp)
            else:
                resp.failure(f"error: {status} {_code(resp) if status else resp.error!r}")
                if status == 503:
                    wait = self._retry_after(resp)
        if wait:
            gevent.sleep(wait)   # after the with: the wait is not part of the response time
        return status, body

    @staticmethod
    def _retry_after(resp) -> float:
        try:
            value = float(resp.headers.get("Retry-After", "1"))
        except (TypeError, ValueError):
            value = 1.0
        return min(MAX_RETRY_AFTER_S, max(0.0, value)) * random.uniform(1.0, 1.2)

    def check(self, name: str, status: int, body: Any, resp) -> str | None:
        """What is wrong with an expected answer's body, or None."""
        if status == 204:
            return None
        if not isinstance(body, dict):
            return "body is not an object"
        if status == 404:
            return None if (body.get("error") or {}).get("code") == "not_found" \
                else "not a 404 body"
        if name == CONVERSATION:
            if not isinstance(body.get("focal"), dict) or "focal_id" not in body:
                return "no focal post"
        elif name in (REPLIES, ANCESTORS, QUOTES) and not isinstance(body.get("items"), list):
            return "no items"
        elif name == POSTS and not body.get("id"):
            return "no id"
        return None


class Reader(ArborUser):
    """Opens conversations and reads on through the cursors it finds (see reading.py)."""
    abstract = True

    def on_start(self) -> None:
        self.queue: list[tuple[str, str]] = []
        self.post_id: str | None = None

    def _open(self, post_id: str, query: str = "") -> None:
        _, view = self.call("GET", f"/v1/conversations/{post_id}{query}", CONVERSATION)
        self.post_id = post_id
        if view is not None:
            self.queue = view_cursors(view, limit=QUEUE)
            random.shuffle(self.queue)

    def _read_on(self) -> None:
        if not self.queue:
            return self.open()
        kind, path = self.queue.pop()
        name = ANCESTORS if kind == "ancestors" else REPLIES
        _, page = self.call("GET", path, name)
        if page is None:
            return
        found = (ancestors_cursor(self.post_id, page) if kind == "ancestors"
                 else page_cursors(self.post_id, page, limit=QUEUE))
        self.queue = (found + self.queue)[:QUEUE]

    def open(self) -> None:
        conversation = random.choice(self.data().conversations)
        deep = conversation.posts(1)
        roll = random.random()
        if roll < 0.5 or not conversation.levels:
            self._open(conversation.root)
        elif roll < 0.75 and deep:
            # a reply deep in the tree, with its chain cut: an ancestors cursor
            self._open(random.choice(deep), "?ancestors=1")
        else:
            self._open(random.choice(conversation.posts()))

    # No @task here: Locust collects the tasks of base classes too, so each concrete class
    # declares its own (tagged) tasks that call these.
    def quotes(self) -> None:
        if self.post_id is None:   # the quotes of the post it last opened (and could see)
            return self.open()
        self.call("GET", f"/v1/posts/{self.post_id}/quotes", QUOTES)


class AnonymousReader(Reader):
    weight = 5

    @tag("read", "anonymous")
    @task(4)
    def open_conversation(self) -> None:
        self.open()

    @tag("read", "anonymous")
    @task(6)
    def read_on(self) -> None:
        self._read_on()

    @tag("read", "anonymous")
    @task(1)
    def quotes(self) -> None:
        super().quotes()


class SignedIn(ArborUser):
    """A user with its own seeded account and token: the next one of the data file's accounts
    (per process; worker processes start at different offsets)."""
    abstract = True

    def on_start(self) -> None:
        accounts = self.data().accounts
        if not accounts:
            raise data_file.DataError("the data file has no accounts (export with "
                                      "--export-accounts N, N > 0)")
        offset = getattr(self.environment.runner, "worker_index", 0) * 7
        n = (next(_account_numbers) + offset) % len(accounts)
        self.account = accounts[n]
        self.others = [a for a in accounts if a.id != self.account.id]
        self.headers = {"Authorization": f"Bearer {self.account.token}"}

    def call(self, method: str, path: str, name: str, expect: tuple[int, ...] = (200,),
                **kwargs) -> tuple[int, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return super().call(method, path, name, expect, headers=headers, **kwargs)


class SignedInReader(SignedIn, Reader):
    """A 404 on opening a post is expected here (not a failure): the post may be by the
    account this reader mutes, hidden from it alone."""
    weight = 3

    def _open(self, post_id: str, query: str = "") -> None:
        status, view = self.call("GET", f"/v1/conversations/{post_id}{query}", CONVERSATION,
                                 expect=(200, 404))
        if status == 200:
            self.post_id = post_id   # a post hidden from it has no quotes to read either
        self.queue = view_cursors(view, limit=QUEUE) if status == 200 and view else []
        random.shuffle(self.queue)

    def on_start(self) -> None:
        SignedIn.on_start(self)
        Reader.on_start(self)
        # its own relations: a few follows, one mute, one muted word (all idempotent)
        rng = random.Random(self.account.id)
        for other in rng.sample(self.others, min(3, len(self.others))):
            self.call("PUT", f"/v1/me/follows/{other.id}", "/v1/me/follows/{account_id}",
                         expect=(204,))
        if len(self.others) > 3:
            muted = rng.choice(self.others[3:])
            self.call("PUT", f"/v1/me/mutes/{muted.id}", "/v1/me/mutes/{account_id}",
                         expect=(204,))
        self.call("POST", "/v1/me/muted_words", "/v1/me/muted_words",
                     # words the seeded texts do not have: the check runs, hides no seeded post
                     data=orjson.dumps({"word": rng.choice(("spoilers", "crypto giveaway"))}),
                     headers={"Content-Type": "application/json"})

    @tag("read", "signed_in")
    @task(4)
    def open_conversation(self) -> None:
        self.open()

    @tag("read", "signed_in")
    @task(6)
    def read_on(self) -> None:
        self._read_on()

    @tag("read", "signed_in")
    @task(1)
    def quotes(self) -> None:
        Reader.quotes(self)

    @tag("read", "signed_in")
    @task(1)
    def my_follows(self) -> None:
        self.call("GET", "/v1/me/follows?limit=20", "/v1/me/follows")


class ViralCrowd(Reader):
    """Everyone on the huge conversation: its first page (hot), its top replies, and deep
    pages of its direct replies (keyset cursors far into a million rows)."""
    weight = 3

    def open(self) -> None:
        huge = self.data().huge
        if random.random() < 0.7 or not huge.levels:
            self._open(huge.root)
        else:
            self._open(random.choice(huge.posts()))

    @tag("read", "viral")
    @task(4)
    def open_conversation(self) -> None:
        self.open()

    @tag("read", "viral")
    @task(6)
    def read_on(self) -> None:
        self._read_on()


class Writer(SignedIn):
    """Replies, quotes and deletes its own posts, each with an Idempotency-Key; a tenth of
    its writes are sent twice with the same key and must replay (201 and
    `Idempotent-Replayed: true`)."""
    weight = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        super().on_start()
        self.mine: list[str] = []

    def _write(self, body: dict) -> None:
        key = str(uuid.uuid4())
        payload = orjson.dumps(body)
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        status, post = self.call("POST", POSTS, POSTS, expect=(201, 404), data=payload,
                                 headers=headers)
        if status != 201 or post is None:
            return
        self.mine.append(post["id"])
        del self.mine[:-20]
        if random.random() < 0.1:   # a client that did not see the answer retries
            with self.client.request("POST", POSTS, name=POSTS + " (replay)", data=payload,
                                     headers={**self.headers, **headers},
                                     catch_response=True) as resp:
                if resp.status_code != 201 or resp.headers.get("Idempotent-Replayed") != "true":
                    resp.failure(f"error: {resp.status_code} replay not replayed")
                elif orjson.loads(resp.content).get("id") != post["id"]:
                    resp.failure("error: 201 replay answered another post")

    def _target(self) -> str:
        return random.choice(random.choice(self.data().conversations).posts() or
                             (self.data().huge.root,))

    # A 404 on a reply or a quote is expected: the target may be hidden from this account by
    # the relations a SignedInReader sharing the account set up (its mute).
    @tag("write")
    @task(5)
    def reply(self) -> None:
        self._write({"text": f"load test reply {uuid.uuid4().hex[:8]}",
                     "in_reply_to_id": self._target()})

    @tag("write")
    @task(2)
    def quote(self) -> None:
        self._write({"text": f"load test quote {uuid.uuid4().hex[:8]}",
                     "quote_of_id": self._target()})

    @tag("write")
    @task(2)
    def delete(self) -> None:
        if not self.mine:
            return self.reply()
        post_id = self.mine.pop(0)
        self.call("DELETE", f"/v1/posts/{post_id}", POST, expect=(204,),
                     headers={"Idempotency-Key": str(uuid.uuid4())})
