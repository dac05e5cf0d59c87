"""The contract of /api/v1/accounts (service/api/mastodon/accounts.py)."""
from __future__ import annotations

from service.core.settings import Settings

from ..common import Json
from .common import ACCOUNT_ID, BAD_TOKEN, NOT_FOUND, OPTIONAL_VIEWER, UNAVAILABLE, VIEWER, ok


def schemas(s: Settings) -> Json:
    return {}


def paths(s: Settings) -> Json:
    return {
        "/api/v1/accounts/verify_credentials": {"get": {
            "operationId": "mastodonVerifyCredentials", "security": VIEWER,
            "summary": "The signed-in account, with its `source` and `role`.",
            "responses": {"200": ok("MastodonCredentialAccount", "The viewer's account."),
                          "401": BAD_TOKEN, "404": NOT_FOUND, "503": UNAVAILABLE}}},
        "/api/v1/accounts/{account_id}": {"get": {
            "operationId": "mastodonGetAccount", "security": OPTIONAL_VIEWER,
            "summary": "An account. One that is not active is the same 404 as none.",
            "parameters": [ACCOUNT_ID],
            "responses": {"200": ok("MastodonAccount", "The account."), "401": BAD_TOKEN,
                          "404": NOT_FOUND, "503": UNAVAILABLE}}},
    }
