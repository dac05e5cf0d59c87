"""A request the client abandons is counted as status "499", never as a 500.

The app is served as `arbor serve` serves it (a real port, handler_cancellation on), its
database reached through a FaultProxy with latency so that a render is still running when
a real client (a TCP socket) sends its request and hangs up.
"""
from __future__ import annotations

import asyncio
import re

import aiohttp
from aiohttp import web

from service.app import create_app

from .conftest import PROXIED_APP_SETTINGS

ROUTE = 'route="/v1/conversations/{post_id}"'


def _count(text: str, status: str) -> float:
    m = re.search(r'arbor_http_requests_total\{method="GET",' + re.escape(ROUTE)
                  + r',status="' + status + r'"\} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


async def test_request_abandoned_mid_render_counts_as_499(settings, world, fault_proxy,
                                                          proxied_dsn):
    root = await world.post(await world.account(), "root")
    app = create_app(settings.replace(database_url=proxied_dsn,
                                      **{**PROXIED_APP_SETTINGS, "db_statement_timeout_ms": 5000,
                                         "db_command_timeout_s": 6.0}))
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/v1/conversations/{root}") as resp:
                assert resp.status == 200  # the path works; now make it slow
            fault_proxy.latency = 0.4  # every round trip waits: a render takes seconds
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /v1/conversations/{root} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.3)  # the handler is waiting on the database
            writer.close()  # the client hangs up mid-request
            await writer.wait_closed()
            text = ""
            for _ in range(100):
                await asyncio.sleep(0.05)
                fault_proxy.latency = 0.0
                async with session.get(f"{base}/metrics") as resp:
                    text = await resp.text()
                if _count(text, "499"):
                    break
            assert _count(text, "499") == 1, text
            assert _count(text, "500") == 0
            assert _count(text, "200") == 1
    finally:
        fault_proxy.heal()
        await fault_proxy.wait_listening()
        await runner.cleanup()
