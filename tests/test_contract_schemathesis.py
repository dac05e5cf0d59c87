"""The running app against its own OpenAPI document, with schemathesis over every endpoint:
zero 5xx responses, zero responses that break the schema."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import aiohttp


async def _examples(world, base_url: str) -> dict:
    """Real ids and cursors, so that the examples phase exercises 200 responses too."""
    a = await world.account("contract_author")
    chain = [await world.post(a, "root")]
    for i in range(8):
        chain.append(await world.post(a, f"level {i}", reply_to=chain[-1]))
    fan = [await world.post(a, f"fan {i}", reply_to=chain[0]) for i in range(12)]
    quoting = await world.post(a, "quoting", reply_to=fan[0], quote=chain[3])
    await world.post(a, "under deleted", reply_to=fan[1])
    await world.delete(fan[1])
    await world.delete(chain[2])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url}/v1/conversations/{chain[0]}?branching=3&depth=2") as r:
            view = await r.json()
        async with http.get(f"{base_url}/v1/conversations/{chain[8]}?ancestors=2") as r:
            deep = await r.json()
    return {"ids": [str(chain[0]), str(chain[8]), str(fan[0]), str(quoting)],
            "replies_cursor": view["focal"]["replies"]["more"]["cursor"],
            "ancestors_cursor": deep["ancestors"]["cursor"], "focal": str(chain[8])}


def _with_examples(spec: dict, ex: dict) -> dict:
    """Real ids for every post_id; a cursor only with the post id it was issued for (any other
    pairing is rightly a 400)."""
    paths = spec["paths"]
    bound = {"/v1/conversations/{post_id}/replies": [ex["ids"][0]],
             "/v1/conversations/{post_id}/ancestors": [ex["focal"]]}
    for path in paths:
        for param in paths[path]["get"].get("parameters", []):
            if param["name"] == "post_id":
                values = bound.get(path, ex["ids"])
                param["examples"] = {f"id{i}": {"value": v} for i, v in enumerate(values)}
    replies = paths["/v1/conversations/{post_id}/replies"]["get"]["parameters"]
    next(p for p in replies if p["name"] == "cursor")["examples"] = {
        "real": {"value": ex["replies_cursor"]}}
    ancestors = paths["/v1/conversations/{post_id}/ancestors"]["get"]["parameters"]
    next(p for p in ancestors if p["name"] == "cursor")["examples"] = {
        "real": {"value": ex["ancestors_cursor"]}}
    return spec


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(world, live_server, tmp_path):
    ex = await _examples(world, live_server)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live_server}/openapi.json") as r:
            spec = await r.json()
    spec_path = Path(tmp_path) / "openapi.json"
    spec_path.write_text(json.dumps(_with_examples(spec, ex)))
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or "st"
    proc = await asyncio.create_subprocess_exec(
        st, "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
        "run", str(spec_path), "--url", live_server,
        "--checks", "all",
        # No auth exists yet, and these need links between operations that the API lacks.
        "--exclude-checks", "ignored_auth,use_after_free,ensure_resource_availability",
        "--phases", "examples,coverage,fuzzing", "--max-examples", "60", "--workers", "2",
        "--request-timeout", "10", "--suppress-health-check", "all",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"})
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=500)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-8000:]
