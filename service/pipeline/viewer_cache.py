"""Two bounded TTL caches: token hash -> account id, and account id -> Viewer (its relations).

Only live tokens of active accounts are cached, so a cached token always means "this account
may act". Writes made through this process drop what they change at once (forget_*); writes
made elsewhere (another replica, SQL by hand) show after at most `ttl_s` seconds.

A third map, token hash -> account id for an hour (as many entries as the others), only
says whom a request counts against for rate limits (service/core/clients.py): it never lets a
request act, so it may outlive the token (a request with a revoked token is still a 401).
"""
from __future__ import annotations

from cachetools import TTLCache

from storage.rows import Viewer


CLIENT_KEY_TTL_S = 3600.0


class ViewerCache:
    def __init__(self, ttl_s: float, size: int):
        self.enabled = ttl_s > 0 and size > 0
        self.tokens: TTLCache[bytes, int] = TTLCache(max(size, 1), max(ttl_s, 0.001))
        self.viewers: TTLCache[int, Viewer] = TTLCache(max(size, 1), max(ttl_s, 0.001))
        self.clients: TTLCache[bytes, int] = TTLCache(max(size, 1), CLIENT_KEY_TTL_S)

    def account_of(self, token_hash: bytes) -> int | None:
        return self.tokens.get(token_hash) if self.enabled else None

    def client_of(self, token_hash: bytes) -> int | None:
        """The account a recently valid token belongs to, for rate limits only."""
        return self.clients.get(token_hash) if self.enabled else None

    def viewer(self, account_id: int) -> Viewer | None:
        return self.viewers.get(account_id) if self.enabled else None

    def remember(self, token_hash: bytes | None, viewer: Viewer) -> None:
        if not self.enabled or viewer.id is None:
            return
        if token_hash is not None:
            self.tokens[token_hash] = viewer.id
            self.clients[token_hash] = viewer.id
        self.viewers[viewer.id] = viewer

    def forget_viewers(self, *account_ids: int) -> None:
        """Their relations changed: the next request reloads them."""
        for account_id in account_ids:
            self.viewers.pop(account_id, None)

    def forget_account(self, account_id: int) -> None:
        """Its state changed: drop its relations and every cached token of it."""
        self.forget_viewers(account_id)
        for token_hash in [h for h, owner in self.tokens.items() if owner == account_id]:
            self.tokens.pop(token_hash, None)

    def forget_token(self, token_hash: bytes) -> None:
        self.tokens.pop(token_hash, None)
        self.clients.pop(token_hash, None)

    def clear(self) -> None:
        self.tokens.clear()
        self.viewers.clear()
        self.clients.clear()
