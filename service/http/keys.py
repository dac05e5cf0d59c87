"""Every typed key for what the application and a request hold (aiohttp's AppKey and
RequestKey: no singletons, everything per app). One exception: ADMISSION is keyed beside its
state in admission_middleware.py.

May import only the types of the values (lower layers, storage) and aiohttp.
"""
from aiohttp import web

from storage.change_feed import ChangeFeed
from storage.db import Database
from storage.replicas import Replicas
from storage.rows import Viewer

from service.core.clients import Client
from service.core.metrics import Metrics
from service.core.ops_metrics import FoldStats, OpsMetrics
from service.core.request_ids import RequestContext
from service.core.settings import Settings
from service.pipeline.deps import Deps
from service.pipeline.viewer_cache import ViewerCache
from service.resilience.faults import Faults
from service.resilience.rate_limits import RateLimits
from service.resilience.render_cache import ReadPath

# The app's
SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
DB = web.AppKey("db", Database)
DEPS = web.AppKey("deps", Deps)
OPENAPI = web.AppKey("openapi", bytes)
VIEWERS = web.AppKey("viewers", ViewerCache)
FAULTS = web.AppKey("faults", Faults)
READS = web.AppKey("reads", ReadPath)
METRICS = web.AppKey("metrics", Metrics)
TRACER_PROVIDER = web.AppKey("tracer_provider", object)  # OpenTelemetry's, when tracing is on
OPS_METRICS = web.AppKey("ops_metrics", OpsMetrics)  # 503s and degraded answers by reason, pool
FOLDS = web.AppKey("folds", FoldStats)  # the reaction folder's rounds (reaction_folder.py)
RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
# The app's deny list (RateLimits.deny_accounts): an account on it whose token this process
# did not know yet is refused by service/http/auth.viewer_of, once resolved.
DENY_LIST = web.AppKey("deny_list", object)
# The HTML pages' per-app state (service/api/pages/home.py: the demo list it last read)
PAGES = web.AppKey("pages", dict)
# Other processes' writes, as notices (service/http/coherence.py)
CHANGE_FEED = web.AppKey("change_feed", ChangeFeed)
# Read replicas (service/http/replica_routing.py)
REPLICAS = web.AppKey("replicas", Replicas)

# A request's
VIEWER = web.RequestKey("viewer", Viewer)
CLIENT = web.RequestKey("client", Client)
DB_ROUND_TRIPS = web.RequestKey("db_round_trips", int)
# Its request id and trace context (service/http/request_ids.py)
REQUEST_CONTEXT = web.RequestKey("request_context", RequestContext)
# What a write changed, for invalidate_on_write: conversation ids, ("quotes", id)
CHANGED = web.RequestKey("changed", list)
# The body a read served, with its ETag, Link and compressed forms (http/conventions.py)
REPRESENTATION = web.RequestKey("representation", object)
