"""The load test's pure parts: the SLO gate (loadtest/gate.py), the shapes, the cursors a
reader reads on from, the data file. No server: figures in, verdicts out."""
from __future__ import annotations

import pytest

from loadtest import data as data_file
from loadtest.gate import (MISSED, PASS, RUN_ERROR, Limits, RouteFigures, RunFigures, Slo,
                           SloFileError, evaluate, load_slo, parse_slo)
from loadtest.reading import ancestors_cursor, page_cursors, view_cursors
from loadtest.shapes import users_at

CONV = "GET /v1/conversations/{post_id}"
REPLIES = "GET /v1/conversations/{post_id}/replies"


def fig(route, requests=1000, failures=0, shed=0, p50=10.0, p95=50.0, p99=90.0, rps=50.0):
    return RouteFigures(route, requests, failures, shed, p50, p95, p99, rps)


def run(*routes: RouteFigures, exceptions: int = 0) -> RunFigures:
    total = RouteFigures("total", sum(r.requests for r in routes),
                         sum(r.failures for r in routes), sum(r.shed for r in routes),
                         10.0, max(r.p95_ms for r in routes), max(r.p99_ms for r in routes),
                         sum(r.rps for r in routes))
    return RunFigures(list(routes), total, exceptions)


def test_a_run_within_every_limit_passes():
    v = evaluate(Slo(), run(fig(CONV), fig(REPLIES)))
    assert v.exit_code == PASS and v.missed == []
    assert v.report.startswith("SLO gate: PASS (exit 0)")
    assert CONV in v.report and REPLIES in v.report


def test_a_missed_p99_names_the_route_and_the_figures():
    slo = Slo(default=Limits(p95_ms=100, p99_ms=80))
    v = evaluate(slo, run(fig(CONV, p99=90), fig(REPLIES, p99=70)))
    assert v.exit_code == MISSED
    assert v.missed == [f"p99 of {CONV} is 90 ms > 80 ms"]
    assert "missed:" in v.report and f"p99 of {CONV}" in v.report


def test_per_route_limits_override_the_default():
    slo = Slo(default=Limits(p95_ms=40, p99_ms=1000), routes={CONV: Limits(p95_ms=60)})
    v = evaluate(slo, run(fig(CONV, p95=50), fig(REPLIES, p95=45)))
    assert v.missed == [f"p95 of {REPLIES} is 45 ms > 40 ms"]


def test_a_route_with_too_few_requests_is_not_gated_on_latency():
    slo = Slo(default=Limits(p99_ms=10), min_requests=50)
    v = evaluate(slo, run(fig(CONV, requests=49, p99=500), fig(REPLIES, p99=5)))
    assert v.exit_code == PASS
    assert "too few requests" in v.report
    assert evaluate(Slo(default=Limits(p99_ms=10), min_requests=49),
                    run(fig(CONV, requests=49, p99=500))).exit_code == MISSED


def test_shed_and_limited_count_as_errors_unless_gated_apart():
    figures = run(fig(CONV, requests=1000, failures=30, shed=25))
    counted = evaluate(Slo(error_ratio=0.01), figures)
    assert counted.exit_code == MISSED
    assert counted.missed[0].startswith("error ratio is 3.00% > 1.00%")
    apart = evaluate(Slo(error_ratio=0.01, shed_ratio=0.05), figures)
    assert apart.exit_code == PASS          # 5 real errors in 1000, 2.5% shed
    too_much = evaluate(Slo(error_ratio=0.01, shed_ratio=0.02), figures)
    assert too_much.missed == ["shed/limited ratio is 2.50% > 2.00%"]


def test_minimum_throughput():
    v = evaluate(Slo(min_rps=120), run(fig(CONV, rps=50), fig(REPLIES, rps=60)))
    assert v.missed == ["throughput is 110.0 rps < 120 rps"]
    assert evaluate(Slo(min_rps=100), run(fig(CONV, rps=50), fig(REPLIES, rps=60))
                    ).exit_code == PASS


def test_per_route_error_ratio():
    slo = Slo(error_ratio=0.5, routes={CONV: Limits(error_ratio=0.001)})
    v = evaluate(slo, run(fig(CONV, failures=2), fig(REPLIES, failures=20)))
    assert v.missed == [f"error ratio of {CONV} is 0.20% > 0.10%"]


def test_no_request_or_a_crashing_load_test_is_a_run_error():
    empty = RunFigures([], fig("total", requests=0, rps=0))
    assert evaluate(Slo(), empty).exit_code == RUN_ERROR
    v = evaluate(Slo(), run(fig(CONV), exceptions=3))
    assert v.exit_code == RUN_ERROR and "raised 3 time(s)" in v.report


def test_slo_file_and_options(tmp_path):
    path = tmp_path / "slo.toml"
    path.write_text(f"""
[defaults]
p95_ms = 200
error_ratio = 0.05
min_rps = 7
min_requests = 10

[routes."{CONV}"]
p99_ms = 900
""")
    slo = load_slo(str(path))
    assert slo.default == Limits(p95_ms=200, p99_ms=Slo().default.p99_ms)
    assert slo.error_ratio == 0.05 and slo.min_rps == 7 and slo.min_requests == 10
    assert slo.limits_for(CONV) == Limits(p95_ms=200, p99_ms=900)
    assert slo.limits_for(REPLIES) == slo.default
    # an option is a limit for every route, over the file's per-route values
    forced = load_slo(str(path), p99_ms=0.001, error_ratio=0.2)
    assert forced.limits_for(CONV).p99_ms == 0.001 and forced.default.p99_ms == 0.001
    assert forced.error_ratio == 0.2 and forced.limits_for(CONV).p95_ms == 200


@pytest.mark.parametrize("doc, message", [
    ({"defaults": {"p95": 1}}, "unknown key(s) p95"),
    ({"limits": {}}, "unknown table(s) limits"),
    ({"defaults": {"p99_ms": "fast"}}, "p99_ms must be a number"),
    ({"defaults": {"error_ratio": -1}}, "error_ratio must be a number >= 0"),
    ({"routes": {"/v1/conversations/{post_id}": {"p95_ms": 1}}}, "METHOD /template"),
])
def test_slo_file_errors_name_the_problem(doc, message):
    with pytest.raises(SloFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_slo(doc)


def test_an_unreadable_slo_file_is_an_error(tmp_path):
    with pytest.raises(SloFileError):
        load_slo(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[defaults\n")
    with pytest.raises(SloFileError):
        load_slo(str(bad))


def test_shapes():
    assert users_at("constant", 5, 20, 4, 10) == (20, 4)
    assert users_at("constant", 10, 20, 4, 10) is None
    assert users_at("constant", 1e6, 20, 4, None) == (20, 4)     # no -t: until stopped
    steps = [users_at("step", t, 20, 1, 50)[0] for t in (0, 10, 20, 30, 40, 49.9)]
    assert steps == [4, 8, 12, 16, 20, 20]
    spike = [users_at("spike", t, 50, 1, 100)[0] for t in (0, 39, 40, 59, 60, 99)]
    assert spike == [10, 10, 50, 50, 10, 10]
    assert users_at("spike", 45, 50, 1, 100)[1] == 50            # all within a second
    assert users_at("soak", 1, 30, 1, 300) == (30, 1.0)           # 30 users over 30 s
    assert users_at("soak", 300, 30, 1, 300) is None
    assert users_at("step", 59, 10, 1, None) is not None          # shaped: 60 s default
    assert users_at("step", 60, 10, 1, None) is None
    with pytest.raises(ValueError, match="--shape"):
        users_at("ramp", 0, 1, 1, 1)


def replies(more=None, low=None, offensive=None, items=()):
    return {"items": list(items),
            "more": {"count": 5, "cursor": more} if more else None,
            "sections": {"low_quality": {"count": 1, "cursor": low} if low else None,
                         "offensive": {"count": 1, "cursor": offensive} if offensive else None}}


def test_cursors_of_a_view_by_kind():
    nested = {"type": "post", "id": "3", "replies": replies(more="n/1")}
    view = {"focal_id": "7", "ancestors": {"items": [], "omitted": 3, "cursor": "a+1"},
            "focal": {"type": "post", "id": "7",
                      "replies": replies(more="m1", low="l1", offensive="o1", items=[nested])}}
    found = view_cursors(view)
    assert [k for k, _ in found] == ["ancestors", "more", "sections", "sections", "nested"]
    paths = dict(zip(("a", "m", "l", "o", "n"), (p for _, p in found)))
    assert paths["a"] == "/v1/conversations/7/ancestors?cursor=a%2B1"
    assert paths["m"] == "/v1/conversations/7/replies?cursor=m1"
    assert paths["n"] == "/v1/conversations/7/replies?cursor=n%2F1"   # escaped
    assert view_cursors(view, limit=2) == found[:2]
    assert view_cursors({"error": {}}) == []


def test_cursors_of_pages():
    deep = {"type": "tombstone", "id": "9", "replies": replies(low="l9")}
    page = replies(more="m2", items=[{"type": "post", "id": "5",
                                      "replies": replies(items=[deep])}])
    assert page_cursors("7", page) == [("more", "/v1/conversations/7/replies?cursor=m2"),
                                       ("sections", "/v1/conversations/7/replies?cursor=l9")]
    # the walk is bounded: with one node to look at, the deep one is not reached
    assert page_cursors("7", page, max_nodes=1) == page_cursors("7", page)[:1]
    assert ancestors_cursor("7", {"items": [], "cursor": "c"}) == [
        ("ancestors", "/v1/conversations/7/ancestors?cursor=c")]
    assert ancestors_cursor("7", {"items": [], "cursor": None}) == []


def test_data_file(tmp_path):
    doc = {"preset": "bench", "huge_conversation": "2",
           "conversations": [{"name": "small", "root": "1", "replies": 10,
                              "levels": [["11", "12"], ["111"]]},
                             {"name": "huge", "root": "2", "replies": 10 ** 6,
                              "levels": [["21"]]}],
           "accounts": [{"id": "5", "handle": "bench_user1", "token": "arb_x"}]}
    data = data_file.parse(doc)
    assert data.huge.root == "2" and [c.root for c in data.conversations] == ["1"]
    assert data.conversations[0].posts() == ("11", "12", "111")
    assert data.conversations[0].posts(1) == ("111",)
    with pytest.raises(data_file.DataError, match="arbor seed --preset bench --export"):
        data_file.load(str(tmp_path / "none.json"))
    with pytest.raises(data_file.DataError, match="not an export"):
        data_file.parse({"conversations": [{"root": "1"}]})
