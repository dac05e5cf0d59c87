"""The contract of /api/v1/instance and /api/v2/instance (service/api/mastodon/instance.py)."""
from __future__ import annotations

from service.core.settings import Settings

from ..common import Json
from .common import UNAVAILABLE, ok


def schemas(s: Settings) -> Json:
    return {}


def paths(s: Settings) -> Json:
    def instance(version: str, schema: str, slash: str = "") -> Json:
        return {"get": {
            "operationId": f"mastodonInstance{version.upper()}{'Slash' if slash else ''}",
            "security": [{}],
            "summary": f"Mastodon's Instance ({version}): `version` is \"4.5.0 (compatible; "
                       "Arbor x.y.z)\", what Mastodon clients decide features by."
                       + (" The same with the trailing slash Mastodon.py sends." if slash
                          else ""),
            "responses": {"200": ok(schema, "The instance."), "503": UNAVAILABLE}}}
    return {f"/api/{v}/instance{slash}": instance(v, f"MastodonInstance{v.upper()}", slash)
            for v in ("v1", "v2") for slash in ("", "/")}
