"""A reading session on Arbor: open a conversation, read on through its reply pages, glance at a
post's quotes. Clients that are shed (503 `overloaded`) wait out `Retry-After`, as a polite app
does.

    .venv/bin/pip install -e '.[load]'
    ARBOR_POST_IDS_FILE=ids.txt .venv/bin/locust -f loadtest/locustfile.py \\
        --host http://127.0.0.1:8080 --headless -u 200 -r 20 -t 2m

ids.txt: one post id per line, e.g. the bench preset's top replies:
    psql ... -c "SELECT id FROM posts p JOIN post_counts c ON c.post_id = p.id
                 WHERE c.likes >= 5000000" -At > ids.txt
(or ARBOR_POST_IDS=1,2,3). With `make run` (the demo preset), the ids printed in its log
(`demo conversations: ...`) work, except `tombstone`: that post is deleted on purpose and
answers 404. The README's "Load shedding" section shows the run it measures (50 users).

Locust is closed-loop: each user waits for an answer before its next request, so offered load
falls when the service slows down. For a fixed offered rate (what "3x the peak" means) use
bench/overload.py, which is open-loop.
"""
from __future__ import annotations

import os
import random
import time

from locust import HttpUser, between, task


def _post_ids() -> list[str]:
    path = os.environ.get("ARBOR_POST_IDS_FILE")
    if path:
        with open(path) as f:
            ids = [line.strip() for line in f if line.strip()]
    else:
        ids = [x.strip() for x in os.environ.get("ARBOR_POST_IDS", "").split(",") if x.strip()]
    if not ids:
        raise SystemExit("set ARBOR_POST_IDS_FILE (one post id per line) or ARBOR_POST_IDS")
    return ids


POST_IDS = _post_ids()
TOKEN = os.environ.get("ARBOR_TOKEN")  # optional: read as a signed-in viewer


class Reader(HttpUser):
    wait_time = between(0.5, 3.0)

    def on_start(self) -> None:
        self.next_page: str | None = None
        self.post_id = random.choice(POST_IDS)
        if TOKEN:
            self.client.headers["Authorization"] = f"Bearer {TOKEN}"

    def _get(self, path: str, name: str):
        with self.client.get(path, name=name, catch_response=True) as resp:
            if resp.status_code == 503:
                # shed or degraded: report it, then wait as the server asks
                code = "unavailable"
                try:
                    code = resp.json()["error"]["code"]
                except Exception:  # noqa: BLE001 - any body: still a 503
                    pass
                resp.failure(f"503 {code}")
                time.sleep(float(resp.headers.get("Retry-After", "1")))
                return None
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}")
                return None
            resp.success()
            return resp.json()

    @task(8)
    def open_conversation(self) -> None:
        self.post_id = random.choice(POST_IDS)
        view = self._get(f"/v1/conversations/{self.post_id}", "/v1/conversations/{id}")
        replies = (view or {}).get("focal", {}).get("replies") or {}
        cursor = (replies.get("more") or {}).get("cursor")
        self.next_page = (f"/v1/conversations/{self.post_id}/replies?cursor={cursor}"
                          if cursor else None)

    @task(3)
    def read_on(self) -> None:
        if self.next_page is None:
            return
        page = self._get(self.next_page, "/v1/conversations/{id}/replies")
        cursor = ((page or {}).get("more") or {}).get("cursor")
        self.next_page = (f"/v1/conversations/{self.post_id}/replies?cursor={cursor}"
                          if cursor else None)

    @task(1)
    def quotes(self) -> None:
        self._get(f"/v1/posts/{self.post_id}/quotes", "/v1/posts/{id}/quotes")
