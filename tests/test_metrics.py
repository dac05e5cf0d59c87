"""GET /metrics: Prometheus text with request, cache, breaker and admission figures."""
from __future__ import annotations


async def test_metrics_count_requests_and_show_the_read_path(client, world):
    a = await world.account()
    root = await world.post(a, "root")
    await client.get(f"/v1/conversations/{root}")
    await client.get("/v1/conversations/nope")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    assert ('arbor_http_requests_total{method="GET",route="/v1/conversations/{post_id}",'
            'status="200"}') in text
    assert 'status="400"' in text
    assert "arbor_http_request_duration_seconds_bucket" in text
    assert 'arbor_breaker_state{dependency="database"} 0.0' in text
    assert "arbor_render_cache_bytes" in text and 'arbor_render_cache_lookups_total{outcome="miss"}' in text
