"""Charging a client's budgets (service/rate_limit_rules.py) through a Store (service/
rate_limit_store.py): `before` a request runs, `after` it has its answer.

Per request, in store operations (each O(1); one Redis call each with a shared store):
  before: 1 (the request's first unit, read or write, charged atomically: a client with
          nothing left is refused before any work, however many requests it has in flight);
  after:  0 for a cached read or a write; 1 more for a rendered read (the rest of its cost);
          2 more for a 404 (the 404 budget and a look at what is left of it).
Refused: 0 when this process already knows the client is over (it remembers until when),
         2 otherwise (the charge that did not fit, and a look at the window to say when to
         come back).

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

import time
from collections import OrderedDict
from dataclasses import dataclass

from . import rate_limit_rules as rules
from .rate_limit_rules import ClientState, Policy
from .rate_limit_store import Store


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
    policies: tuple[Policy, ...]   # the budgets this request spends (for the headers)
    by_name: dict


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
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = ClientState()
            if len(self._states) > self.max_clients:
                self._evict()
        else:
            self._states.move_to_end(key)
        return state

    def _evict(self) -> None:
        # the least recently seen client with nothing in flight (a state with requests in
        # flight must stay: their `after` will look for it)
        for key, state in self._states.items():
            if state.inflight == 0:
                del self._states[key]
                return

    async def before(self, key: str, budget: str,
                     policies: dict[str, Policy]) -> Ticket | Refusal:
        now = self.clock()
        policy, nf = policies[budget], policies[rules.NOT_FOUND]
        spent = (policy, nf)
        state = self._state(key)
        blocked = state.blocked_by(spent, now)
        if blocked is not None:
            self.refused += 1
            return Refusal(blocked[0].name, rules.retry_after_s(blocked[1] - now), spent)
        if not rules.inflight_allowed(state, nf, now):
            self.refused += 1
            return Refusal(rules.NOT_FOUND, rules.retry_after_s(
                rules.seconds_until_inflight_allowed(state, nf, now)), spent)
        if not await self.store.hit(policy.item, key, 1):
            self.refused += 1
            wait = (await self.store.window(policy.item, key)).seconds_until(policy)
            state.block(policy, self.clock() + wait)
            return Refusal(budget, rules.retry_after_s(wait), spent)
        state.inflight += 1
        return Ticket(key, state, budget, spent, policies)

    async def after(self, ticket: Ticket, extra: int, not_found: bool) -> None:
        """The request is answered: charge `extra` more units of its budget, and one unit of
        the 404 budget when it was a 404."""
        state = ticket.state
        state.inflight -= 1
        if extra > 0:
            policy = ticket.by_name[ticket.budget]
            if not await self.store.hit(policy.item, ticket.key, extra):
                state.block(policy, self.clock() + rules.debt_seconds(extra, policy))
        if not_found:
            nf = ticket.by_name[rules.NOT_FOUND]
            charged = await self.store.hit(nf.item, ticket.key, 1)
            window = await self.store.window(nf.item, ticket.key)
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
        window = await self.store.window(policy.item, ticket.key)
        left = window.remaining(policy)
        if left >= policy.quota:
            return policy, left, 0
        return policy, left, rules.retry_after_s(window.seconds_until(policy, left + 1))

    def snapshot(self) -> dict:
        return {"clients": len(self._states), "max_clients": self.max_clients,
                "refused": self.refused}
