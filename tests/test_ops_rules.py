"""Issue 17 part 3: the alert and recording rules (ops/prometheus/) and the Grafana dashboard
(ops/grafana/) are valid (`promtool check rules`, `promtool test rules`), name only metrics a
real running app exports after some traffic (its /metrics is also `promtool check metrics`
clean), and every alert links a runbook section that exists."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.app import create_app

RULES = Path("ops/prometheus/arbor-rules.yml")
RULE_TESTS = Path("ops/prometheus/arbor-rules.test.yml")
DASHBOARD = Path("ops/grafana/arbor-dashboard.json")

def promtool() -> str:
    """promtool's path; a failure (not a skip) without it: `make test-deps` installs it."""
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    return path

# Series the rules may name that an app exports only when a feature is configured; each with
# why. Nothing else may be missing from the scrape.
CONDITIONAL = {
    # one gauge per read replica (issue 14 part 4); without replicas the alert stays silent
    "arbor_db_replica_lag_seconds": "exported per configured read replica",
}
_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "vector", "scalar", "abs", "clamp_min", "clamp_max", "label_values", "topk", "bottomk",
    "offset", "bool", "time", "absent", "delta", "deriv", "le",
}


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                     # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                    # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)                         # Grafana variables
    names = set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in _FUNCTIONS and not re.fullmatch(r"e\d*", n)}


def _rules() -> dict:
    return yaml.safe_load(RULES.read_text())


def _alerts() -> list[dict]:
    return [r for g in _rules()["groups"] for r in g["rules"] if "alert" in r]


def _recorded() -> set[str]:
    return {r["record"] for g in _rules()["groups"] for r in g["rules"] if "record" in r}


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"].replace("label_values(", "").rsplit(",", 1)[0]
              for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_metric_names_are_parsed_from_promql():
    assert metric_names('sum by (job, le) (rate(arbor_x_bucket{a="b",le="0.25"}[5m])) / '
                        'ignoring(le) arbor:y:ratio_rate1h > (14.4 * 0.001) or 0 * up') == \
        {"arbor_x_bucket", "arbor:y:ratio_rate1h", "up"}
    assert metric_names('histogram_quantile(0.99, sum by (route, le) (rate(a_b[$__rate_interval])))'
                        ) == {"a_b"}


@pytest.fixture
async def scrape(aiohttp_client, settings, world):
    """/metrics of a real app after traffic of each kind: renders, cache hits, 404s, 400s, a
    write, a rate-limited client, and admission on."""
    app = create_app(settings.replace(admission_enabled=True, render_cache_ttl_s=5,
                                      rate_limit_not_found="3/minute", rate_limit_exempt=""))
    client = await aiohttp_client(app)
    a = await world.account()
    root = await world.post(a, "root")
    await world.fan(a, root, 3)
    for _ in range(3):
        assert (await client.get(f"/v1/conversations/{root}")).status == 200
    await client.get(f"/v1/conversations/{root}/replies?cursor=bad")
    for _ in range(5):
        await client.get("/v1/conversations/999999999")
    assert (await client.get(f"/v1/conversations/{root}")).status == 429
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


def exported(text: str) -> set[str]:
    return set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, re.M))


def test_rules_pass_promtool_check_and_unit_tests():
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    unit = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True,
                          text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout + unit.stderr


async def test_real_metrics_pass_promtool_check_metrics(scrape):
    lint = subprocess.run([promtool(), "check", "metrics"], input=scrape, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "" and lint.stderr.strip() == "", lint.stdout + lint.stderr


async def test_rules_and_dashboard_name_only_exported_metrics(scrape):
    names = exported(scrape)
    assert "arbor_http_requests_total" in names and "process_cpu_seconds_total" in names
    recorded = _recorded()
    sources = [("rule " + (r.get("alert") or r.get("record")), r["expr"])
               for g in _rules()["groups"] for r in g["rules"]]
    sources += [("dashboard", e) for e in _dashboard_exprs()]
    used = set()
    for where, expr in sources:
        for name in metric_names(expr):
            used.add(name)
            assert name in names or name in recorded or name in CONDITIONAL, \
                f"{where}: {name} is not exported by the service (nor a recording rule)"
    # the conditional ones are used (else drop them), and every recording rule is read
    assert set(CONDITIONAL) <= used
    assert recorded <= used, recorded - used


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_alert_has_a_severity_summary_and_a_runbook_section_that_exists():
    alerts = _alerts()
    assert len(alerts) >= 10
    names = [a["alert"] for a in alerts]
    assert len(set(names)) == len(names)
    for alert in alerts:
        assert alert["labels"]["severity"] in ("page", "ticket"), alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.startswith("ops/") and path.endswith(".md") and anchor, url
        doc = Path(path)
        assert doc.exists(), f"{alert['alert']}: {path} does not exist"
        anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", doc.read_text(), re.M)}
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in {path}: {anchors}"
    # the alerts documented in ops/alerts.md are exactly these
    documented = set(re.findall(r"^### (Arbor\w+)", Path("ops/alerts.md").read_text(), re.M))
    assert documented == set(names)


def test_slo_alerts_are_multiwindow_multi_burn_rate():
    by_name = {a["alert"]: a for a in _alerts()}
    for sli in ("availability_errors", "latency_slow"):
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
            assert f"arbor:{sli}:ratio_rate{window}" in _recorded()
    fast = by_name["ArborAvailabilityBudgetBurnFast"]["expr"]
    assert "ratio_rate1h > (14.4 * 0.001) and" in fast and "ratio_rate6h > (6 * 0.001)" in fast
    slow = by_name["ArborLatencyBudgetBurnSlow"]["expr"]
    assert "ratio_rate1d > (3 * 0.01)" in slow and "ratio_rate3d > (1 * 0.01)" in slow


def test_dashboard_is_grafana_json_with_the_panels_an_sre_needs():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(set(ids)) == len(ids)
    text = " ".join(_dashboard_exprs())
    for needed in ("arbor_http_requests_total", "arbor_http_request_duration_seconds_bucket",
                   "arbor_rate_limited_requests_total", "arbor_unavailable_responses_total",
                   "arbor_render_cache_lookups_total", "arbor_breaker_state",
                   "arbor_event_loop_lag_seconds_bucket", "arbor_db_pool_in_use",
                   "arbor_db_pool_waits_total", "arbor_degraded_responses_total"):
        assert needed in text, needed
    for panel in dash["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
