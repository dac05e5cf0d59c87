"""The contract of /v1/admin/tokens/{token_id} (service/api/admin/tokens.py)."""
from __future__ import annotations

from service.core.settings import Settings
from service.inputs.pages import TOKEN_ID_PATTERN

from ..common import ADMIN, ADMIN_ERRORS, DONE, Json, error, path_param


def schemas(s: Settings) -> Json:
    return {}


def paths(s: Settings) -> Json:
    token_id = path_param("token_id", {"type": "string", "pattern": TOKEN_ID_PATTERN},
                          "The token's id (the hex SHA-256 of the token).")
    return {
        "/v1/admin/tokens/{token_id}": {"delete": {
            "operationId": "revokeToken", "summary": "Revoke a token.", "security": ADMIN,
            "parameters": [token_id],
            "responses": {"204": DONE, "404": error("No such token."), **ADMIN_ERRORS}}},
    }
