"""The enumeration oracle, measured: (1) does a hidden post's 404 take as long as a missing
id's, (2) how soon is an id-probing client throttled, and how many ids can it walk per hour.

    python bench/enumeration.py [--rounds 200] [--probes 400]

Starts a throw-away embedded PostgreSQL and Arbor (trusted_proxies=127.0.0.1, so that the
probing client can be given an address of its own with X-Forwarded-For; the timing client
stays on loopback, which `rate_limit_exempt` leaves unlimited by default), builds through the
HTTP API a thread whose focal candidates sit 6 replies deep: one visible, and one hidden for
each reason (deleted; author suspended; author protected and not followed; author blocks the
viewer), then:

1. timing: `--rounds` rounds, each requesting every hidden post and a missing id once, in a
   shuffled order (interleaved, so that drift hits every kind alike), for an anonymous and
   for a signed-in viewer; prints the median of each kind and its ratio to the missing id's
   (target: within 5%), beside a second missing id's (what the run's noise alone makes of
   two identical cases), and checks that every 404 is byte-for-byte the same, headers
   included (but Date; the requests send one X-Request-Id, which every answer echoes);
2. probing: one client (its own forwarded address) asks for random ids until it gets a 429;
   prints after how many probes, what its 429 says, and the most ids per hour the 404 budget
   lets a client walk.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from harness import arbor_service, percentile, verdict  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

ADMIN = "bench-admin-token"
TOLERANCE = 0.05
PROBER = "198.51.100.23"  # TEST-NET-2: only ever a header value here


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.s, self.base = session, base

    async def call(self, method: str, path: str, token: str = ADMIN, json=None,
                   expect=(200, 201, 204)) -> dict | None:
        async with self.s.request(method, self.base + path, json=json,
                                  headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.json() if r.status != 204 else None
            if r.status not in expect:
                raise SystemExit(f"{method} {path}: {r.status} {body}")
            return body

    async def account(self, handle: str, **flags) -> tuple[str, str]:
        acc = await self.call("POST", "/v1/admin/accounts", json={"handle": handle, **flags})
        tok = await self.call("POST", f"/v1/admin/accounts/{acc['id']}/tokens", json={})
        return acc["id"], tok["token"]

    async def post(self, token: str, text: str, reply_to: str | None = None) -> str:
        body = {"text": text, **({"in_reply_to_id": reply_to} if reply_to else {})}
        return (await self.call("POST", "/v1/posts", token=token, json=body))["id"]


async def build(api: Api) -> tuple[dict[str, str], str]:
    """{kind: post id} and the signed-in viewer's token."""
    run = random.randrange(10**6)
    _, alice = await api.account(f"alice{run}")
    _, viewer = await api.account(f"viewer{run}")
    sam_id, sam = await api.account(f"sam{run}")
    _, pat = await api.account(f"pat{run}", protected=True)
    _, bea = await api.account(f"bea{run}")
    parent = await api.post(alice, "root")
    for depth in range(1, 6):
        parent = await api.post(alice, f"reply at depth {depth}", parent)
    posts = {"visible": await api.post(alice, "visible focal", parent),
             "deleted": await api.post(alice, "deleted focal", parent),
             "suspended": await api.post(sam, "suspended author's focal", parent),
             "protected": await api.post(pat, "protected author's focal", parent),
             "blocked": await api.post(bea, "blocking author's focal", parent)}
    await api.call("DELETE", f"/v1/posts/{posts['deleted']}", token=alice)
    await api.call("PATCH", f"/v1/admin/accounts/{sam_id}", json={"state": "suspended"})
    # bea blocks the viewer: the viewer must not learn it from the 404
    viewer_account = await _account_of(api, viewer)
    await api.call("PUT", f"/v1/me/blocks/{viewer_account}", token=bea)
    posts["missing"] = str(int(posts["blocked"]) + 7919)  # an id no post has
    posts["missing_too"] = str(int(posts["blocked"]) + 104729)  # another: the noise floor
    return posts, viewer


async def _account_of(api: Api, token: str) -> str:
    """The viewer's account id: the author of a post it writes (then deletes)."""
    async with api.s.post(api.base + "/v1/posts", json={"text": "who am i"},
                          headers={"Authorization": f"Bearer {token}"}) as r:
        post = await r.json()
    await api.call("DELETE", f"/v1/posts/{post['id']}", token=token)
    return post["author"]["id"]


async def timing(api: Api, posts: dict[str, str], token: str | None, rounds: int,
                 kinds: list[str]) -> tuple[dict[str, float], dict[str, float], bool]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # one request id for all (echoed back): else each answer carries a new generated one,
    # the only header that may differ between two 404s
    headers["X-Request-Id"] = "enumeration-timing"
    times: dict[str, list[float]] = {k: [] for k in kinds}
    seen: dict[str, tuple] = {}
    same = True
    url = api.base + "/v1/conversations/{}"
    for k in kinds:  # warm-up: the viewer cache, the connection, the plans
        for _ in range(5):
            async with api.s.get(url.format(posts[k]), headers=headers) as r:
                await r.read()
    for _ in range(rounds):
        order = kinds[:]
        random.shuffle(order)
        for k in order:
            started = time.perf_counter()
            async with api.s.get(url.format(posts[k]), headers=headers) as r:
                body = await r.read()
            times[k].append(time.perf_counter() - started)
            shape = (r.status, body, tuple((h, v) for h, v in r.headers.items() if h != "Date"))
            if r.status != 404:
                raise SystemExit(f"{k}: expected 404, got {r.status} {body[:200]!r}")
            ref = seen.setdefault("404", shape)
            if shape != ref and same:
                print(f"  {k}: a 404 unlike the first: status {shape[0]} vs {ref[0]}, body "
                      f"{'same' if shape[1] == ref[1] else 'differs'}, headers "
                      f"{sorted(set(shape[2]) ^ set(ref[2]))}")
            same = same and shape == ref
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    p10 = {k: percentile(v, 10) * 1000 for k, v in times.items()}
    return medians, p10, same


async def probing(api: Api, probes: int) -> tuple[int | None, dict, dict]:
    """Random ids from a forwarded address until a 429: (probes until then, its headers, body)."""
    headers = {"X-Forwarded-For": PROBER}
    for n in range(1, probes + 1):
        pid = random.randrange(10**17, 10**18)
        async with api.s.get(f"{api.base}/v1/conversations/{pid}", headers=headers) as r:
            body = await r.read()
            if r.status == 429:
                return n, dict(r.headers), body
    return None, {}, {}


async def run(base: str, args) -> list[tuple[bool, str]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        api = Api(s, base)
        posts, viewer = await build(api)
        async with s.get(f"{base}/v1/conversations/{posts['visible']}") as r:
            assert r.status == 200, r.status
        checks = []
        for who, token, reasons in (("anonymous", None, ["deleted", "suspended", "protected"]),
                                    ("signed-in", viewer, ["deleted", "suspended", "protected",
                                                           "blocked"])):
            medians, p10, same = await timing(api, posts, token, args.rounds,
                                              ["missing", "missing_too", *reasons])
            ref = medians["missing"]
            print(f"{who}: median 404 ms over {args.rounds} interleaved rounds: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in medians.items())
                  + f" (two missing ids differ by {medians['missing_too'] / ref - 1:+.1%}: "
                    f"the noise of this run)")
            # what an attacker filtering noise would look at: the fast end
            print(f"{who}: p10 404 ms: " + ", ".join(f"{k} {v:.3f} ({v / p10['missing']:.3f})"
                                                     for k, v in p10.items()))
            noise = abs(medians["missing_too"] / ref - 1)
            for k in reasons:
                ratio = medians[k] / ref
                checks.append((abs(ratio - 1) <= TOLERANCE,
                               f"{who} {k}: hidden/missing median ratio {ratio:.3f} "
                               f"(within {TOLERANCE:.0%}; p10 ratio {p10[k] / p10['missing']:.3f};"
                               f" two missing ids: {noise:.1%})"))
            checks.append((same, f"{who}: every 404 byte-for-byte the same (headers but Date)"))
        n, headers, body = await probing(api, args.probes)
        policy = headers.get("RateLimit-Policy", "")
        print(f"probing from {PROBER}: first 429 after {n} probes; Retry-After "
              f"{headers.get('Retry-After')}; RateLimit-Policy {policy!r}; RateLimit "
              f"{headers.get('RateLimit')!r}; body {body!r}")
        walk = _ids_per_hour(policy)
        if walk is not None:
            print(f"at most {walk:,} ids per hour per client (the 404 budget, refilled "
                  f"continuously by the sliding window)")
        checks.append((n is not None, f"an id-probing client is throttled (after {n} probes; "
                                      f"at most {walk} ids per hour)"))
        return checks


def _ids_per_hour(policy: str) -> int | None:
    for item in policy.split(","):
        if item.strip().startswith('"not_found"'):
            params = dict(p.split("=") for p in item.strip().split(";")[1:])
            return int(params["q"]) * 3600 // int(params["w"])
    return None


def checks(rounds: int = 200, probes: int = 400) -> list[tuple[bool, str]]:
    args = argparse.Namespace(rounds=rounds, probes=probes)
    with tempfile.TemporaryDirectory(prefix="arbor-enum-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", FAST_UNSAFE_OPTIONS)
        dsn = server.start()
        try:
            with arbor_service(dsn, f"admin_token={ADMIN}", "trusted_proxies=127.0.0.1") \
                    as (base, _):
                return asyncio.run(run(base, args))
        finally:
            server.stop("immediate")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--probes", type=int, default=400)
    args = parser.parse_args(argv)
    return verdict(checks(args.rounds, args.probes))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
