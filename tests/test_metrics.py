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


async def test_event_loop_lag_is_sampled_and_shows_a_blocked_loop(client):
    import asyncio
    import re
    import time

    await asyncio.sleep(0.15)        # the sampler's timer is set
    time.sleep(0.3)                  # block the loop the app runs on (the test's own)
    await asyncio.sleep(0.25)        # the late timer is observed, then a few on time
    text = await (await client.get("/metrics")).text()
    count = float(re.search(r"^arbor_event_loop_lag_seconds_count (\S+)$", text, re.M).group(1))
    total = float(re.search(r"^arbor_event_loop_lag_seconds_sum (\S+)$", text, re.M).group(1))
    assert count >= 3
    assert total >= 0.2              # the 0.3 s block, less what was left of a 0.1 s timer
    assert re.search(r'^arbor_event_loop_lag_seconds_bucket\{le="0.25"\} (\S+)$', text, re.M)


async def test_loop_lag_sampler_observes_how_late_its_timer_fired():
    import asyncio
    import time

    from service.resilience import loop_lag

    seen: list[float] = []
    async with loop_lag.running(seen.append, interval_s=0.01):
        await asyncio.sleep(0.015)   # one on time
        time.sleep(0.05)
        await asyncio.sleep(0.03)
    assert max(seen) >= 0.03 and min(seen) < 0.01
    n = len(seen)
    await asyncio.sleep(0.03)
    assert len(seen) == n            # stopped with its context


async def test_involuntary_context_switches_are_exported_on_linux(client):
    import os

    text = await (await client.get("/metrics")).text()
    if os.path.exists("/proc/self/status"):
        assert "arbor_process_involuntary_context_switches_total" in text
    else:
        assert "arbor_process_involuntary_context_switches" not in text
