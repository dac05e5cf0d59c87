"""Typed keys for what the application holds."""
from aiohttp import web

from storage.db import Database

from service.core.settings import Settings
from service.pipeline.conversation import Deps
from service.pipeline.viewer_cache import ViewerCache
from service.resilience.faults import Faults
from service.resilience.render_cache import ReadPath

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
DB = web.AppKey("db", Database)
DEPS = web.AppKey("deps", Deps)
OPENAPI = web.AppKey("openapi", bytes)
VIEWERS = web.AppKey("viewers", ViewerCache)
FAULTS = web.AppKey("faults", Faults)
READS = web.AppKey("reads", ReadPath)
