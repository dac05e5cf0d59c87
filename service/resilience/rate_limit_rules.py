"""Per-client rate limits: what a request costs, which budgets it spends, what the client is
told. Pure logic (no I/O); service/resilience/rate_limiter.py applies it over a `limits` storage.

Budgets (each a sliding window of `q` units per `w` seconds, settings `rate_limit_*`, per
account overridable through the admin API):
  * `read`: GET/HEAD/OPTIONS. Cost by outcome (known only after the answer, so the first
    unit is charged before the handler runs and the rest after it):
        served from the render cache (`Arbor-Cache: hit` or `stale`)    1
        a conversation's first page, rendered (200)                     rate_limit_cost_render
          (and a Mastodon /api/v1/statuses/{id}/context, rendered, any page of it)
        any other read answered 200 (continuations, quotes, /v1/me)     rate_limit_cost_page
        any other answer (4xx, 503)                                     1
  * `write`: POST/PUT/PATCH/DELETE, 1 each (before the handler);
  * `not_found`: 1 for every answer that is a 404, whatever the route, on top of the above.
    Normal reading rarely meets a 404; probing ids meets little else, and this budget is
    small, so a prober is throttled long before it can walk an id space.
Not limited at all: the ops endpoints (/healthz, /readyz, /metrics: probes and scrapes must
answer most of all under attack), addresses in `rate_limit_exempt`, and admin requests that
carry the admin token.

Over a budget: 429 `rate_limited` with `Retry-After` and the IETF httpapi RateLimit fields
(draft-ietf-httpapi-ratelimit-headers-11): `RateLimit-Policy: "read";q=3000;w=300` (every
budget the request spends) and `RateLimit: "read";r=0;t=12` (the exhausted one).
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from functools import lru_cache

import limits

from service.core.clients import parse_networks
from service.core.rate_limit_syntax import parse_rate

READ, WRITE, NOT_FOUND = "read", "write", "not_found"
BUDGETS = (READ, WRITE, NOT_FOUND)
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_CONVERSATIONS = "/v1/conversations/"
_STATUSES, _CONTEXT = "/api/v1/statuses/", "/context"
_PAGES = "/conversations/"  # the HTML pages of the same reads (service/api/pages)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Policy:
    """One budget: `item` is the `limits` rate (amount per window) it is kept with; `quota`
    and `window_s` its amount and window, read on every request (plain fields: cheaper than
    the item's methods)."""
    name: str
    item: limits.RateLimitItem
    quota: int = 0
    window_s: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "quota", self.item.amount)
        object.__setattr__(self, "window_s", self.item.get_expiry())

    def header_item(self) -> str:
        return f'"{self.name}";q={self.quota};w={self.window_s}'


@lru_cache(maxsize=1024)
@lru_cache(maxsize=1024)
def policy(name: str, text: str) -> Policy:
    return Policy(name, parse_rate(text))


def classify(method: str, path: str) -> str | None:
    """The budget a request spends up front: READ or WRITE; None for ops endpoints (free)."""
    if path in OPS_PATHS:
        return None
    return READ if method in _READ_METHODS else WRITE


def is_first_page(path: str) -> bool:
    """/v1/conversations/{id} (or its page /conversations/{id}), not .../replies or
    .../ancestors; and a Mastodon context (its continuations are the same path with a cursor
    in the query, which costs the same)."""
    if path.startswith(_STATUSES) and path.endswith(_CONTEXT):
        return True
    for prefix in (_CONVERSATIONS, _PAGES):
        if path.startswith(prefix):
            return "/" not in path[len(prefix):]
    return False


def read_cost(path: str, status: int, cache: str | None, render: int, page: int) -> int:
    """Units of the read budget a read spent, by its outcome (see the module docstring):
    `render` and `page` are the settings rate_limit_cost_render and rate_limit_cost_page."""
    if cache == "hit" or cache == "stale":
        return 1
    if status == 200:
        return render if is_first_page(path) else page
    return 1


def retry_after_s(seconds: float) -> int:
    """Whole seconds, at least 1 (delay-seconds: a client that waits this long may retry)."""
    return max(1, math.ceil(seconds - 1e-9))


def policy_header(policies: list[Policy]) -> str:
    return ", ".join(p.header_item() for p in policies)


def ratelimit_header(name: str, remaining: int, reset_s: int) -> str:
    return f'"{name}";r={max(0, remaining)};t={max(0, reset_s)}'


class NetworkSet:
    """Addresses and CIDR ranges, matched in O(number of distinct prefix lengths), not
    O(entries): one set of masked network numbers per (IP version, prefix length)."""

    def __init__(self, networks=()):
        self._by_prefix: dict[tuple[int, int], set[int]] = {}
        self.size = 0
        for net in networks:
            net = ipaddress.ip_network(net, strict=False)
            bucket = self._by_prefix.setdefault((net.version, net.prefixlen), set())
            if int(net.network_address) not in bucket:
                bucket.add(int(net.network_address))
                self.size += 1
        self._prefixes = tuple(sorted(self._by_prefix))

    def __len__(self) -> int:
        return self.size

    def __contains__(self, address: str) -> bool:
        if not self._prefixes:
            return False
        addr = _parse_address(address)
        if addr is None:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        value, bits = int(addr), addr.max_prefixlen
        for version, prefix in self._prefixes:
            if version == addr.version and \
                    (value >> (bits - prefix) << (bits - prefix) if prefix else 0) \
                    in self._by_prefix[(version, prefix)]:
                return True
        return False


@lru_cache(maxsize=4096)
def _parse_address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@lru_cache(maxsize=64)
def network_set(text: str) -> NetworkSet:
    """A comma-separated setting (`rate_limit_exempt`) as a NetworkSet (parsed once)."""
    return NetworkSet(parse_networks(text))


RESERVE_SHARE = 100      # a chunk is 1/100 of a budget's quota
RESERVE_WINDOW_SHARE = 10  # held at most a tenth of its window


def reserve_chunk(policy: Policy) -> int:
    """Units taken from the store at once (service/resilience/rate_limiter.py): 1% of the quota."""
    return max(1, policy.quota // RESERVE_SHARE)


def refill_below(policy: Policy) -> int:
    """Units held at which the next chunk is taken ahead: a quarter of a chunk."""
    return reserve_chunk(policy) // 4


def reserve_ttl_s(policy: Policy) -> float:
    return policy.window_s / RESERVE_WINDOW_SHARE


@dataclass(slots=True)
class ClientState:
    """What this process remembers of one client between its requests."""
    # budget -> (refuse at once until then (time.time()), the policy that was spent): a
    # block holds only while that budget's policy is unchanged (a live change starts over)
    blocked: dict | None = None
    # budget -> [units held, the policy they were taken for, until when]
    reserves: dict | None = None
    inflight: int = 0
    refilling: bool = False            # a chunk is being taken ahead (Limiter._refill)
    nf_remaining: float | None = None  # the 404 budget left when last seen; None: untouched
    nf_seen_at: float = 0.0

    def block(self, policy: Policy, until: float) -> None:
        if self.blocked is None:
            self.blocked = {}
        old = self.blocked.get(policy.name)
        if old is None or old[1] != policy or old[0] < until:
            self.blocked[policy.name] = (until, policy)

    def blocked_by(self, policies: tuple[Policy, ...], now: float) -> tuple[Policy, float] | None:
        """The spent budget among `policies` that refuses a request now, and until when."""
        if not self.blocked:
            return None
        for p in policies:
            found = self.blocked.get(p.name)
            if found is not None:
                if found[1] == p and found[0] > now:
                    return p, found[0]
                del self.blocked[p.name]
        return None


def nf_estimate(state: ClientState, policy: Policy, now: float) -> float:
    """The 404 budget left now, from what was seen last and the window's refill rate."""
    if state.nf_remaining is None:
        return float(policy.quota)
    refill = (now - state.nf_seen_at) * policy.quota / policy.window_s
    return min(float(policy.quota), state.nf_remaining + refill)


def inflight_allowed(state: ClientState, policy: Policy, now: float) -> bool:
    """A client may have at most as many requests in flight as it has 404s left (at most
    the 404 budget's quota, 60 by default: far more than any client app has in flight):
    each of them could end in a 404, which is charged only after the answer, so without this
    bound a prober opening many connections would get a whole burst of probes through at
    first, and again each time one unit of its budget came back."""
    return state.inflight + 1 <= nf_estimate(state, policy, now)


def seconds_until_inflight_allowed(state: ClientState, policy: Policy, now: float) -> float:
    missing = state.inflight + 1 - nf_estimate(state, policy, now)
    return max(0.0, missing) * policy.window_s / policy.quota


def debt_seconds(units: int, policy: Policy) -> float:
    """How long a budget at its limit takes to win back `units` (the sliding window returns
    quota/window units per second): how long a client that was charged more than it had
    left is refused."""
    return units * policy.window_s / policy.quota


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window counter's state (limits' get_sliding_window): the previous window's
    count and the seconds until it weighs nothing, the current window's count and the
    seconds until it expires (between one and two windows from now)."""
    previous: int
    previous_ttl: float
    current: int
    current_ttl: float

    def weighted(self, window_s: float) -> float:
        return self.previous * self.previous_ttl / window_s + self.current

    def remaining(self, policy: Policy) -> int:
        return max(0, policy.quota - math.floor(self.weighted(policy.window_s)))

    def seconds_until(self, policy: Policy, need: int = 1) -> float:
        """When `need` units fit again (limits admits a hit of n units when
        floor(weighted) + n <= quota): the previous window's weight falls linearly to 0
        until the current one ends; then the current one becomes the previous and falls."""
        w, quota = float(policy.window_s), policy.quota
        below = quota - need + 1           # weighted must fall below this
        if self.weighted(w) < below:
            return 0.0
        ends = max(0.0, self.current_ttl - w)  # when the current window becomes the previous
        if self.current < below and self.previous > 0:
            t = self.previous_ttl - (below - self.current) * w / self.previous
            if t < ends:
                return max(0.0, t) + 1e-3
        if self.current <= 0:
            return ends + 1e-3
        return ends + max(0.0, w * (1 - below / self.current)) + 1e-3
