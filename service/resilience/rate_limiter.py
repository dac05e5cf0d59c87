"""Charging a client's budgets (service/resilience/rate_limit_rules.py) through a Store
(service/resilience/rate_limit_store.py): `before` a request runs, `after` it has its answer.

Per request, in store operations (each O(1); one Redis call each with a shared store):
  before: the request's first unit, read or write, charged before any work, so that a
          client with nothing left is refused however many requests it has in flight;
  after:  nothing more for a cached read or a write; the rest of a rendered read's cost;
          for a 404, 2 (the 404 budget, one at a time, and a look at what is left of it).
Units of the read and write budgets are taken from the store a chunk at a time
(rate_limit_rules.reserve_chunk: 1% of the quota, 30 of the default 3000 read units) and
held for the client in this process for at most a tenth of the window: most requests make
no store call at all (with Redis: one call per 30 cached reads, not one each), and the next
chunk is taken ahead when a quarter of one is left (in a task with Redis; at once from the
in-process counters, where nothing waits), so that a steady client's requests keep finding
units held. Near the end of a budget a chunk no longer fits and units
are taken one request at a time, so nobody is refused early; a process may hold at most a
chunk and a quarter of a client's budget unused (charged, not spent), which a client that
spends less than that never notices and a busy one spends.
Refused: no store call when this process already knows the client is over (it remembers
until the Retry-After it gave, at least the moment a unit is back), else up to 3 (the chunk, the unit, a look at the window to say when to come
back).

A cost charged after the answer may not fit what is left: the answer has been given (the
work is done), so the client is refused locally for as long as the budget takes to win
back the difference ("debt"), which is what the next requests would have been refused for
had the cost been known up front. The 404 budget is charged only after the answer, so a
client that has spent part of it may have no more requests in flight than it has 404s left
(rate_limit_rules.inflight_allowed).

Local state per client (blocked until, requests in flight, 404s left) is kept for at most
`max_clients` clients, least recently seen first out.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from . import rate_limit_rules as rules
from .rate_limit_rules import ClientState, Policy
from .rate_limit_store import Store

log = logging.getLogger("arbor.rate_limits")


@dataclass(frozen=True, slots=True)
class Refusal:
    budget: str
    retry_after: int      # whole seconds
    policies: tuple[Policy, ...]

    @property
    def policy(self) -> Policy:
        return next(p for p in self.policies if p.name == self.budget)


@dataclass(slots=True)
class Ticket:
    key: str
    state: ClientState
    budget: str
    by_name: dict          # the client's policies by budget

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The budgets this request spends (for the headers)."""
        return (self.by_name[self.budget], self.by_name[rules.NOT_FOUND])


class Limiter:
    def __init__(self, store: Store, *, max_clients: int = 100_000, clock=time.time):
        self.store = store
        self.max_clients = max_clients
        self.clock = clock
        self._states: OrderedDict[str, ClientState] = OrderedDict()
        self.refused = 0

    def __len__(self) -> int:
        return len(self._states)

    def _state(self, key: str) -> ClientState:
        states = self._states
        state = states.get(key)
        if state is None:
            state = states[key] = ClientState()
            if len(states) > self.max_clients:
                self._evict()
        else:
            states.move_to_end(key)
        return state

    def _evict(self) -> None:
        # the least recently seen client with nothing in flight (a state with requests in
        # flight must stay: their `after` will look for it)
        for key, state in self._states.items():
            if state.inflight == 0:
                del self._states[key]
                return

    def held(self, key: str, budget: str, policies: dict[str, Policy],
             now: float) -> Ticket | None:
        """The common case without a coroutine or a store call: a known client, not
        refused, with units of this budget held in this process (see _take) and room in
        flight. None: ask `before`."""
        state = self._states.get(key)
        if state is None or state.blocked or state.nf_remaining is not None:
            return None
        reserves = state.reserves
        if not reserves:
            return None
        held = reserves.get(budget)
        policy = policies[budget]
        if held is None or held[1] is not policy or held[2] <= now or held[0] < 1 \
                or state.inflight >= policies[rules.NOT_FOUND].quota:
            return None
        held[0] -= 1
        if held[0] <= rules.refill_below(policy) and not state.refilling:
            self._refill_ahead(state, policy, key)
        self._states.move_to_end(key)
        state.inflight += 1
        return Ticket(key, state, budget, policies)

    def _refill_ahead(self, state: ClientState, policy: Policy, key: str) -> None:
        """Take the client's next chunk before this one runs out (held() does not wait): a
        steady client then keeps finding units held here, rather than one request a chunk
        waiting on the store (through the middleware's slower path, for answers given
        before it: service/http/early_hits.py). With the counters in this process, at once
        (nothing waits: a task would cost more than the charge); with a shared store, in a
        task. Outside an event loop (a caller that only counts), a shared store is not
        asked."""
        chunk = rules.reserve_chunk(policy)
        # near the end of the budget a chunk does not fit: the usual path takes units one
        # at a time, so nobody is refused early
        if chunk <= 1:
            return
        hit_now = self.store.hit_now
        if hit_now is not None:
            if hit_now(policy, key, chunk):
                self._credit(state, policy, chunk)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        state.refilling = True
        loop.create_task(self._refill(state, policy, key, chunk))

    async def _refill(self, state: ClientState, policy: Policy, key: str, chunk: int) -> None:
        try:
            if await self.store.hit(policy, key, chunk):
                self._credit(state, policy, chunk)
        except Exception as e:  # noqa: BLE001 - the store failed: the usual path asks again
            log.debug("rate limits: taking a chunk ahead failed: %s", e)
        finally:
            state.refilling = False

    def _credit(self, state: ClientState, policy: Policy, chunk: int) -> None:
        """A chunk taken from the store, held for the client (until rules.reserve_ttl_s)."""
        now = self.clock()
        reserves = state.reserves
        if reserves is None:
            reserves = state.reserves = {}
        held = reserves.get(policy.name)
        if held is not None and held[1] is policy and held[2] > now:
            held[0] += chunk
            held[2] = now + rules.reserve_ttl_s(policy)
        else:
            reserves[policy.name] = [chunk, policy, now + rules.reserve_ttl_s(policy)]

    def maybe_blocked(self, key: str) -> bool:
        """Whether this process remembers the client as over some budget (refused_now says
        whether that refuses a given request)."""
        state = self._states.get(key)
        return state is not None and bool(state.blocked)

    def refused_now(self, key: str, budget: str, policies: dict[str, Policy],
                    now: float) -> Refusal | None:
        """`before`'s first answer without a coroutine or a store call: the Refusal of a
        client this process knows to be over a budget of this request (counted), else None
        (then held() or before() decide)."""
        state = self._states.get(key)
        if state is None or not state.blocked:
            return None
        policy, nf = policies[budget], policies[rules.NOT_FOUND]
        blocked = state.blocked_by((policy, nf), now)
        if blocked is None:
            return None
        self.refused += 1
        return Refusal(blocked[0].name, rules.retry_after_s(blocked[1] - now), (policy, nf))

    def give_back(self, ticket: Ticket) -> None:
        """Undo held() at once, nothing else having run in between: the unit it took goes
        back to the reserve (the request will be charged the usual way instead)."""
        state = ticket.state
        state.inflight -= 1
        held = state.reserves.get(ticket.budget) if state.reserves else None
        if held is not None:
            held[0] += 1

    async def before(self, key: str, budget: str, policies: dict[str, Policy],
                     now: float | None = None) -> Ticket | Refusal:
        if now is None:
            now = self.clock()
        policy, nf = policies[budget], policies[rules.NOT_FOUND]
        state = self._state(key)
        if state.blocked:
            blocked = state.blocked_by((policy, nf), now)
            if blocked is not None:
                self.refused += 1
                return Refusal(blocked[0].name, rules.retry_after_s(blocked[1] - now),
                               (policy, nf))
        if state.nf_remaining is not None and rules.nf_estimate(state, nf, now) >= nf.quota:
            state.nf_remaining = None  # the 404 budget is whole again
        if state.inflight >= nf.quota or (state.nf_remaining is not None
                                          and not rules.inflight_allowed(state, nf, now)):
            self.refused += 1
            return Refusal(rules.NOT_FOUND, rules.retry_after_s(
                rules.seconds_until_inflight_allowed(state, nf, now)), (policy, nf))
        if not await self._take(state, policy, key, 1, now):
            self.refused += 1
            retry_after = rules.retry_after_s(
                (await self.store.window(policy, key)).seconds_until(policy))
            # refused at once (no store call) for the Retry-After it is given, not only until
            # the next unit is back: a client that does not wait costs the least to refuse
            state.block(policy, self.clock() + retry_after)
            return Refusal(budget, retry_after, (policy, nf))
        state.inflight += 1
        return Ticket(key, state, budget, policies)

    async def _take(self, state: ClientState, policy: Policy, key: str, units: int,
                    now: float) -> bool:
        """`units` of the client's `policy` budget: from what this process holds reserved
        for it, else from the store a chunk at once (one store call per chunk, not per
        request), else exactly `units` (near the end of the budget)."""
        reserves = state.reserves
        held = reserves.get(policy.name) if reserves else None
        if held is not None and held[1] is policy and held[2] > now and held[0] >= units:
            held[0] -= units
            return True
        chunk = rules.reserve_chunk(policy)
        if chunk > units and await self.store.hit(policy, key, chunk):
            if reserves is None:
                reserves = state.reserves = {}
            reserves[policy.name] = [chunk - units, policy, now + rules.reserve_ttl_s(policy)]
            return True
        return await self.store.hit(policy, key, units)

    async def after(self, ticket: Ticket, extra: int, not_found: bool) -> None:
        """The request is answered: charge `extra` more units of its budget, and one unit of
        the 404 budget when it was a 404."""
        state = ticket.state
        state.inflight -= 1
        if extra > 0:
            policy = ticket.by_name[ticket.budget]
            if not await self._take(state, policy, ticket.key, extra, self.clock()):
                state.block(policy, self.clock() + rules.debt_seconds(extra, policy))
        if not_found:
            nf = ticket.by_name[rules.NOT_FOUND]
            charged = await self.store.hit(nf, ticket.key, 1)
            window = await self.store.window(nf, ticket.key)
            now = self.clock()
            left = window.remaining(nf)
            state.nf_remaining, state.nf_seen_at = float(left), now
            if not charged or left <= 0:
                state.block(nf, now + window.seconds_until(nf))

    def abandon(self, ticket: Ticket) -> None:
        """The request ended with nothing more to charge, or without an answer (the client
        went away)."""
        ticket.state.inflight -= 1

    async def remaining(self, ticket: Ticket) -> tuple[Policy, int, int]:
        """For RateLimit on an answer that was not refused: the budget this request spent,
        the units left of it (r), and the seconds within which no more than those can be
        spent (t: until one more unit is back; 0 when nothing is spent)."""
        policy = ticket.by_name[ticket.budget]
        window = await self.store.window(policy, ticket.key)
        left = window.remaining(policy)
        if left >= policy.quota:
            return policy, left, 0
        return policy, left, rules.retry_after_s(window.seconds_until(policy, left + 1))

    def snapshot(self) -> dict:
        return {"clients": len(self._states), "max_clients": self.max_clients,
                "refused": self.refused}
