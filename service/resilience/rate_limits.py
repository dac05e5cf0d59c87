"""One app's rate limits: the counter store, the limiter, the top clients, and the lists kept
in PostgreSQL (per-account overrides, the deny list), reloaded every `rate_limit_reload_s`.
The middleware that applies them per request is service/http/rate_limit_middleware.py; the
rules are service/resilience/rate_limit_rules.py.
"""
from __future__ import annotations

import time

from prometheus_client import Counter

from storage import rate_limit_rows

from . import rate_limit_rules as rules
from .rate_limit_rules import NetworkSet, Policy
from .rate_limit_store import Store
from .rate_limiter import Limiter
from .top_clients import TopClients


class RateLimits:
    """Everything the middleware needs, per app."""

    def __init__(self, settings):
        self.settings = settings
        self.store = Store(settings.rate_limit_storage_url,
                           timeout_s=settings.rate_limit_storage_timeout_ms / 1000,
                           max_keys=4 * settings.rate_limit_max_clients)
        self.limiter = Limiter(self.store, max_clients=settings.rate_limit_max_clients)
        self.top = TopClients(settings.top_clients_size)
        self.deny_networks = NetworkSet()
        self.deny_accounts: frozenset[int] = frozenset()
        self.deny_count = 0
        self.overrides: dict[int, dict[str, str | None]] = {}
        self.loaded_at: float | None = None
        self._policies = None  # (the three rate settings, their policies): the defaults
        self.warned_proxy = False  # said once: an exempt proxy that is not trusted
        self._exempt_text: str | None = None
        self._exempt: dict[str, bool] = {}
        self.limited: Counter | None = None   # arbor_rate_limited_requests (route, reason)
        self.refused_early = 0   # of the 429s, those answered in the protocol (early_refusal.py)

    # -- from PostgreSQL -----------------------------------------------------------------
    def use(self, overrides: list[rate_limit_rows.Override],
            entries: list[rate_limit_rows.DenyEntry]) -> None:
        self.overrides = {o.account_id: o.rates for o in overrides}
        self.deny_networks = NetworkSet(e.network for e in entries if e.network is not None)
        self.deny_accounts = frozenset(e.account_id for e in entries
                                       if e.account_id is not None)
        self.deny_count = len(entries)
        self.loaded_at = time.time()

    async def reload(self, db) -> None:
        self.use(await rate_limit_rows.overrides(db), await rate_limit_rows.deny_entries(db))

    # -- per request ---------------------------------------------------------------------
    def denied(self, client) -> bool:
        return (client.account_id is not None and client.account_id in self.deny_accounts) \
            or client.address in self.deny_networks

    def policies(self, account_id: int | None) -> dict[str, Policy]:
        """The budgets of a client: the settings', or its account's override."""
        if account_id is not None and account_id in self.overrides:
            return self.policies_for(self.overrides[account_id])
        v = self.settings.values
        found = self._policies
        if found is None or found[0] is not v["rate_limit_read"] or \
                found[1] is not v["rate_limit_write"] or found[2] is not v["rate_limit_not_found"]:
            found = self._policies = (v["rate_limit_read"], v["rate_limit_write"],
                                      v["rate_limit_not_found"], self.policies_for(None))
        return found[3]

    def exempt(self, address: str, values) -> bool:
        """`address` in rate_limit_exempt (a verdict per address kept until the setting
        changes, at most 4,096 of them)."""
        text = values["rate_limit_exempt"]
        if text is not self._exempt_text:
            self._exempt_text, self._exempt = text, {}
        found = self._exempt.get(address)
        if found is None:
            if len(self._exempt) >= 4096:
                self._exempt.clear()
            found = self._exempt[address] = address in rules.network_set(text)
        return found

    def policies_for(self, override: dict[str, str | None] | None) -> dict[str, Policy]:
        s = self.settings
        rates = {rules.READ: s.rate_limit_read, rules.WRITE: s.rate_limit_write,
                 rules.NOT_FOUND: s.rate_limit_not_found}
        if override:
            rates.update({k: v for k, v in override.items() if v})
        return {name: rules.policy(name, rate) for name, rate in rates.items()}

    def snapshot(self) -> dict:
        return {"enabled": self.settings.rate_limit_enabled, **self.store.snapshot(),
                **self.limiter.snapshot(), "deny_list": self.deny_count,
                "overrides": len(self.overrides),
                "lists_loaded_at": self.loaded_at}
