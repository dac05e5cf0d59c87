"""Typed keys for what the application holds."""
from aiohttp import web

from storage.db import Database

from .conversation import Deps
from .render_cache import ReadPath
from .faults import Faults
from .settings import Settings
from .viewer_cache import ViewerCache

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
DB = web.AppKey("db", Database)
DEPS = web.AppKey("deps", Deps)
OPENAPI = web.AppKey("openapi", bytes)
VIEWERS = web.AppKey("viewers", ViewerCache)
FAULTS = web.AppKey("faults", Faults)
READS = web.AppKey("reads", ReadPath)
